"""Config → plan: one small frozen task per output tensor, checked before any tensor is read.

A ``models`` config is one slice holding every layer of every model (mergekit's
normalisation). For each output slice, layer offset o of n gets the gradient
position t = o/(n − 1) (t = 1 for a one-layer slice); tensors outside the
layers get t = 0 and take their inputs from the first slice (embeddings) or the
last one (final norm, head). Each task records where its inputs are, the
resolved parameters and the output shape, so that the executor only reads,
calls the method and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.progress import info
from luminary.merge import params as P
from luminary.merge.config import MergeConfig, OutputSlice, torch_dtype
from luminary.merge.methods import METHODS, get_method
from luminary.merge.methods.base import MergeMethod
from luminary.merge.vocab import VocabMap, plan_vocab
from luminary.merge.zoo import ModelFolder

Source = tuple[str, str]  # (model path, tensor name)


@dataclass(frozen=True)
class TensorTask:
    name: str
    base: Source | None
    inputs: tuple[Source, ...]
    shared: dict[str, Any]
    per_model: tuple[dict[str, Any], ...]
    shape: tuple[int, ...]
    vocab: bool  # rows are tokens (gathered through the vocabulary map)
    out_dtype: torch.dtype | None = None  # this tensor's own dtype in the output (default: the plan's)


@dataclass
class MergePlan:
    method: MergeMethod
    models: dict[str, ModelFolder]
    tasks: list[TensorTask]
    reference: str  # config and tokenizer come from here
    num_layers: int
    vocab: VocabMap | None
    dtype: torch.dtype | None  # inputs are cast to this before merging
    out_dtype: torch.dtype
    seed: int
    device: str = "cpu"


def _is_pre(name: str) -> bool:
    return "embed" in name or name.split(".")[-2:-1] in (["wte"], ["wpe"])


def check_parameter_names(config: MergeConfig, method: MergeMethod) -> None:
    """Every parameter name must be one ``method`` reads: a typo ('wieght') would otherwise leave the
    default in force without a word. A name another method reads is only a warning, as mergekit
    configs often keep one when their method is changed."""
    models, slices, module_parameters = config.module_inputs()
    at = "modules.default." if config.modules else ""
    places = [("parameters", config.parameters), (f"{at}parameters", module_parameters)]
    places += [(f"{at}models[{i}].parameters", m.parameters) for i, m in enumerate(models or [])]
    for i, out in enumerate(slices or []):
        places.append((f"{at}slices[{i}].parameters", out.parameters))
        places += [(f"{at}slices[{i}].sources[{j}].parameters", s.parameters) for j, s in enumerate(out.sources)]
    own = [p.name for p in method.params]
    anywhere = {p.name for m in METHODS.values() for p in m.params}
    for where, values in places:
        for name in values or {}:
            if name in own:
                continue
            if name in anywhere:
                info(f"[yellow]warning:[/yellow] {where}.{name}: not read by merge_method '{method.name}'; ignored")
                continue
            close = get_close_matches(name, sorted(anywhere), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise LuminaryError(f"{where}.{name}: unknown parameter for merge_method '{method.name}' "
                                f"(it reads: {', '.join(own) or 'none'}){hint}")


def _refuse_duplicates(names: list[str], where: str) -> None:
    """A model given twice is refused, as mergekit refuses duplicate inputs (it would count it twice
    in every average; give it once with the weight wanted)."""
    seen = set()
    for name in names:
        if name in seen:
            raise LuminaryError(f"{where}: model '{name}' is listed twice (mergekit refuses duplicate inputs; "
                                "list it once with the weight wanted)")
        seen.add(name)


class _Planner:
    def __init__(self, config: MergeConfig, models: dict[str, ModelFolder], allow_crimes: bool = False):
        self.config, self.models, self.allow_crimes = config, models, allow_crimes
        self.method = get_method(config.merge_method)
        check_parameter_names(config, self.method)
        self.tasks: list[TensorTask] = []
        models_in, slices_in, self.module_parameters = config.module_inputs()
        self.slices = slices_in or [self._models_slice(config, models_in)]
        for i, out in enumerate(slices_in or []):
            _refuse_duplicates([s.model for s in out.sources], f"slices[{i}].sources")
        first = self.slices[0]
        self.reference = config.base_model or first.base_model or first.sources[0].model
        self._check_architectures()
        self.vocab = plan_vocab(models, self.reference, config.vocab_source,
                                true_base=config.base_model or first.base_model,
                                tokens=config.tokenizer.tokens if config.tokenizer else None)

    def _models_slice(self, config: MergeConfig, models_in) -> OutputSlice:
        names = [m.model for m in models_in]
        _refuse_duplicates(names, "models")
        sources = [dict(model=m.model, layer_range=(0, self._layers(m.model)), parameters=m.parameters)
                   for m in models_in]
        if config.base_model and config.base_model not in names:
            # mergekit adds an unlisted base as one more input, whatever the method: for linear it is
            # then averaged in with the weight of the top-level parameters
            sources.append(dict(model=config.base_model, layer_range=(0, self._layers(config.base_model))))
        counts = {s["layer_range"][1] for s in sources}
        if len(counts) > 1:
            listing = ", ".join(f"{s['model']}: {s['layer_range'][1]}" for s in sources)
            raise LuminaryError(f"models: different numbers of layers ({listing}); use slices to pick layer ranges")
        return OutputSlice.model_validate(dict(sources=sources))

    def _layers(self, name: str) -> int:
        n = self.models[name].num_layers
        if n == 0:
            raise LuminaryError(f"{name}: no numbered layers found among its tensors")
        return n

    def _check_architectures(self) -> None:
        ref = self.models[self.reference]
        for name, m in self.models.items():
            if m.architecture != ref.architecture:
                if self.allow_crimes:  # mergekit's --allow-crimes: names may differ, tensors are still checked
                    info(f"[yellow]warning:[/yellow] {name}: architecture {list(m.architecture)} differs from "
                         f"{self.reference}'s {list(ref.architecture)}; merging anyway (--allow-crimes)")
                    continue
                raise LuminaryError(f"{name}: architecture {list(m.architecture)} differs from {self.reference}'s "
                                    f"{list(ref.architecture)}; models of different architectures cannot be merged "
                                    "(--allow-crimes merges them anyway when their tensors match, as in mergekit)")

    # -- parameters ---------------------------------------------------------------------------------
    def _resolve(self, out: OutputSlice, inputs: list[Source], tensor: str, t: float):
        """Shared and per-model parameter values for one tensor, checked against the method."""
        shared_places = [out.parameters, self.module_parameters, self.config.parameters]
        shared = {}
        for p in self.method.params:
            if p.scope == "shared":
                shared[p.name] = p.check(P.resolve(p.name, shared_places, tensor, t), tensor)
        per_model = []
        for model, name in inputs:
            own = [s.parameters for s in out.sources if s.model == model]
            places = own + shared_places
            values = {}
            for p in self.method.params:
                if p.scope == "model":
                    values[p.name] = p.check(P.resolve(p.name, places, name, t), f"{model}: {name}")
            per_model.append(values)
        self.method.check_weights(shared, per_model, tensor)
        return shared, tuple(per_model)

    # -- tasks ----------------------------------------------------------------------------------------
    def _add(self, out: OutputSlice, out_name: str, names: dict[str, str], t: float) -> None:
        """One task: ``names`` maps each source model (base included) to its tensor name."""
        base_name = out.base_model or self.config.base_model
        if self.method.base == "required" or (self.method.base == "optional" and base_name):
            base = (base_name, names[base_name])
            inputs = [(m, n) for m, n in names.items() if m != base_name]
        else:
            base, inputs = None, [(m, n) for m, n in names.items() if m in {s.model for s in out.sources}]
        ref_model, ref_name = base or inputs[0]
        ref = self.models[ref_model]
        shape = ref.tensors.infos[ref_name].shape
        vocab = self.vocab is not None and ref.is_vocab_tensor(ref_name)
        for model, name in names.items():
            m = self.models[model]
            if name not in m.tensors:
                raise LuminaryError(f"{model}: has no tensor '{name}' (which {ref_model} has): different architectures?")
            other = m.tensors.infos[name].shape
            if vocab and m.is_vocab_tensor(name):
                continue
            if other != shape:
                raise LuminaryError(f"{model}: tensor '{name}' has shape {list(other)}, {ref_model} has {list(shape)}; "
                                    "models of different shapes cannot be merged")
        if vocab:
            shape = (self.vocab.size, *shape[1:])
        shared, per_model = self._resolve(out, inputs, out_name, t)
        self.tasks.append(TensorTask(out_name, base, tuple(inputs), shared, per_model, tuple(shape), vocab))

    def _slice_models(self, out: OutputSlice) -> tuple[list[str], str | None]:
        base = out.base_model or self.config.base_model
        models = [s.model for s in out.sources]
        if self.method.base == "required":
            if not base:
                raise LuminaryError(f"merge_method '{self.method.name}' needs base_model "
                                    "(its task vectors are θ − θ_base)")
            others = [m for m in models if m != base]
            self.method.check_models(len(others), True, "models")
            if base not in models:
                models.append(base)
        elif self.method.base == "optional" and base:
            self.method.check_models(len([m for m in models if m != base]), True, "models")
            if base not in models:
                models.append(base)
        else:
            self.method.check_models(len(models), False, "models")
        return models, base

    def _separate_base(self, base: str | None) -> bool:
        return self.method.base == "required" or (self.method.base == "optional" and base is not None)

    def outside(self, out: OutputSlice, pre: bool) -> None:
        models, base = self._slice_models(out)
        ref = self.models[base if self._separate_base(base) else models[0]]
        for name in ref.outside:
            if _is_pre(name) == pre:
                self._add(out, name, {m: name for m in models}, 0.0)

    def layers(self, out: OutputSlice, first_out_layer: int) -> int:
        models, base = self._slice_models(out)
        lengths = {s.layer_range[1] - s.layer_range[0] for s in out.sources}
        if len(lengths) > 1:
            raise LuminaryError("slices: all sources of a slice must span the same number of layers")
        n = lengths.pop()
        start = {s.model: s.layer_range[0] for s in out.sources}
        for s in out.sources:
            if s.layer_range[1] > self._layers(s.model):
                raise LuminaryError(f"slices: {s.model} has {self._layers(s.model)} layers, "
                                    f"layer_range {list(s.layer_range)} goes past them")
        ref_model = base if self._separate_base(base) else models[0]
        start.setdefault(ref_model, start[out.sources[0].model])
        for offset in range(n):
            t = offset / (n - 1) if n > 1 else 1.0
            ref = self.models[ref_model]
            for suffix in ref.layers[start[ref_model] + offset]:
                names = {m: self.models[m].layer_tensor(start.get(m, start[ref_model]) + offset, suffix) for m in models}
                self._add(out, self.models[ref_model].layer_tensor(first_out_layer + offset, suffix), names, t)
        return n

    def build(self) -> MergePlan:
        self.outside(self.slices[0], pre=True)
        total = 0
        for out in self.slices:
            total += self.layers(out, total)
        self.outside(self.slices[-1], pre=False)
        ref_dtype = next(iter(self.models[self.reference].tensors.infos.values())).dtype
        dtype = torch_dtype(self.config.dtype)
        out_dtype = torch_dtype(self.config.out_dtype) or dtype or ref_dtype
        if self.config.device == "cuda" and not torch.cuda.is_available():
            raise LuminaryError("device: cuda was asked for, but torch sees no CUDA device")
        return MergePlan(self.method, self.models, self.tasks, self.reference, total, self.vocab, dtype, out_dtype,
                         self.config.seed, self.config.device)


def build_plan(config: MergeConfig, models: dict[str, ModelFolder], allow_crimes: bool = False) -> MergePlan:
    """Check the config against the models and list the tensor tasks (no tensor is read).

    ``allow_crimes``: models whose ``architectures`` differ are merged when their tensors match."""
    return _Planner(config, models, allow_crimes).build()
