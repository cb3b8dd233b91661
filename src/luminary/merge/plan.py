"""Config → plan: one small frozen task per output tensor, checked before any tensor is read.

A ``models`` config is one slice holding every layer of every model (mergekit's
normalisation). For each output slice, layer offset o of n gets the gradient
position t = o/(n − 1) (t = 1 for a one-layer slice); tensors outside the
layers get t = 0 and take their inputs from the first slice (embeddings) or the
last one (final norm, head). Each task records where its inputs are, the
resolved parameters and the output shape, so that the executor only reads,
calls the method and writes.

A multi-module model (``luminary.merge.architectures``: a vision-language
model's text decoder, vision tower and projector) is planned module by module,
in the config's order, each module's tensors from its own ``models`` or
``slices`` with its own parameters, as mergekit plans it; a top-level ``models``
is given to every module.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.progress import info
from luminary.merge import params as P
from luminary.merge.architectures import LAYOUTS, module_layouts
from luminary.merge.config import InputSlice, MergeConfig, OutputModule, OutputSlice, torch_dtype
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
    method: MergeMethod | None = None  # this tensor's module's own method (default: the plan's)


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
    # a multi-module output's layer count per config key (None: one module, ``num_hidden_layers``)
    layer_counts: dict[str, int] | None = None


def check_parameter_names(config: MergeConfig, method: MergeMethod, module: str = "default",
                          group: OutputModule | None = None) -> None:
    """Every parameter name must be one ``method`` reads: a typo ('wieght') would otherwise leave the
    default in force without a word. A name another method reads is only a warning, as mergekit
    configs often keep one when their method is changed. ``module``: the entry of ``modules`` whose
    parameters are checked (with the top level's)."""
    group = group or config.module_groups()[module]
    at = f"modules.{module}." if config.modules else ""
    places = [("parameters", config.parameters), (f"{at}parameters", group.parameters)]
    places += [(f"{at}models[{i}].parameters", m.parameters) for i, m in enumerate(group.models or [])]
    for i, out in enumerate(group.slices or []):
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


def _reference(config: MergeConfig, group: OutputModule) -> str:
    """The model whose config and tokenizer the output takes: the base, else the first input."""
    if config.base_model:
        return config.base_model
    if group.slices:
        return group.slices[0].base_model or group.slices[0].sources[0].model
    return group.models[0].model


def _check_architectures(models: dict[str, ModelFolder], reference: str, allow_crimes: bool) -> None:
    ref = models[reference]
    for name, m in models.items():
        if m.architecture != ref.architecture:
            if allow_crimes:  # mergekit's --allow-crimes: names may differ, tensors are still checked
                info(f"[yellow]warning:[/yellow] {name}: architecture {list(m.architecture)} differs from "
                     f"{reference}'s {list(ref.architecture)}; merging anyway (--allow-crimes)")
                continue
            raise LuminaryError(f"{name}: architecture {list(m.architecture)} differs from {reference}'s "
                                f"{list(ref.architecture)}; models of different architectures cannot be merged "
                                "(--allow-crimes merges them anyway when their tensors match, as in mergekit)")


class _Planner:
    """The tasks of one module: ``models`` are the folders seen as that module (``ModelFolder.module_view``)
    or whole, for the one module ``default``."""

    def __init__(self, config: MergeConfig, models: dict[str, ModelFolder], module: str, group: OutputModule,
                 modular: bool = False, check: bool = True):
        self.config, self.models, self.modular = config, models, modular
        self.at = f"modules.{module}." if config.modules else ""
        self.method = get_method(group.merge_method or config.merge_method)
        self.own_method = self.method if group.merge_method else None
        if check:  # once for a top-level ``models`` that every module shares
            check_parameter_names(config, self.method, module, group)
        self.tasks: list[TensorTask] = []
        self.vocab: VocabMap | None = None  # set by build_plan, one for all modules
        self.module_parameters = group.parameters
        self.slices = group.slices or [self._models_slice(config, group.models)]
        for i, out in enumerate(group.slices or []):
            _refuse_duplicates([s.model for s in out.sources], f"{self.at}slices[{i}].sources")
        self.reference = _reference(config, group)

    def _models_slice(self, config: MergeConfig, models_in) -> OutputSlice:
        names = [m.model for m in models_in]
        _refuse_duplicates(names, f"{self.at}models")
        sources = [(m.model, m.parameters) for m in models_in]
        if config.base_model and config.base_model not in names:
            # mergekit adds an unlisted base as one more input, whatever the method: for linear it is
            # then averaged in with the weight of the top-level parameters
            sources.append((config.base_model, None))
        # constructed, not validated: a module without layers (a projector) has the range [0, 0)
        sources = [InputSlice.model_construct(model=m, layer_range=(0, self._layers(m)), parameters=p)
                   for m, p in sources]
        counts = {s.layer_range[1] for s in sources}
        if len(counts) > 1:
            listing = ", ".join(f"{s.model}: {s.layer_range[1]}" for s in sources)
            raise LuminaryError(f"{self.at}models: different numbers of layers ({listing}); "
                                "use slices to pick layer ranges")
        return OutputSlice.model_construct(sources=sources, base_model=None, residual_weight=None, parameters=None)

    def _layers(self, name: str) -> int:
        n = self.models[name].num_layers
        if n == 0 and not self.modular:
            raise LuminaryError(f"{name}: no numbered layers found among its tensors")
        return n

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
        self.tasks.append(TensorTask(out_name, base, tuple(inputs), shared, per_model, tuple(shape), vocab,
                                     method=self.own_method))

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
            if ref.is_pre(name) == pre:
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
                raise LuminaryError(f"{self.at}slices: {s.model} has {self._layers(s.model)} layers, "
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

    def build(self) -> int:
        """Plan the module's tasks; returns its number of output layers."""
        self.outside(self.slices[0], pre=True)
        total = 0
        for out in self.slices:
            total += self.layers(out, total)
        self.outside(self.slices[-1], pre=False)
        return total


def _planners(config: MergeConfig, models: dict[str, ModelFolder]) -> list[tuple[_Planner, str | None]]:
    """One planner per module of the config, with the config key of its layer count (None: the
    one module ``default``, whose count is the config's ``num_hidden_layers``)."""
    groups = config.module_groups()
    architecture = models[_reference(config, next(iter(groups.values())))].architecture
    layouts = module_layouts(architecture)
    if layouts is None:
        if list(groups) != ["default"]:
            known = ", ".join(sorted(LAYOUTS))
            raise LuminaryError(f"modules: {', '.join(map(repr, groups))}: {architecture[0]} has one module, "
                                f"which mergekit names 'default' (luminary knows the modules of: {known})")
        return [(_Planner(config, models, "default", groups["default"]), None)]
    if not config.modules:
        if config.slices:
            raise LuminaryError(f"slices: {architecture[0]} has several modules ({', '.join(layouts)}); "
                                "give the slices of each under 'modules' (as mergekit requires)")
        groups = {name: groups["default"] for name in layouts}
    for name in groups:
        if name not in layouts:
            raise LuminaryError(f"modules.{name}: {architecture[0]} has no module '{name}' "
                                f"(its modules: {', '.join(layouts)})")
    left = [name for name in layouts if name not in groups]
    if left:
        info(f"[yellow]warning:[/yellow] modules: {', '.join(left)} not listed; their tensors are left out "
             "of the output, as mergekit leaves them")
    planners = []
    for i, (name, group) in enumerate(groups.items()):
        views = {path: folder.module_view(layouts[name]) for path, folder in models.items()}
        planner = _Planner(config, views, name, group, modular=True, check=bool(config.modules) or i == 0)
        planners.append((planner, layouts[name].layers_key))
    return planners


def build_plan(config: MergeConfig, models: dict[str, ModelFolder], allow_crimes: bool = False) -> MergePlan:
    """Check the config against the models and list the tensor tasks (no tensor is read).

    ``allow_crimes``: models whose ``architectures`` differ are merged when their tensors match."""
    first = _reference(config, next(iter(config.module_groups().values())))
    _check_architectures(models, first, allow_crimes)
    planners = _planners(config, models)
    lead = planners[0][0]
    vocab = plan_vocab(models, lead.reference, config.vocab_source,
                       true_base=config.base_model or lead.slices[0].base_model,
                       tokens=config.tokenizer.tokens if config.tokenizer else None,
                       pad_to_multiple_of=config.tokenizer.pad_to_multiple_of if config.tokenizer else None)
    tasks, total = [], 0
    counts: dict[str, int] | None = {} if lead.modular else None
    for planner, key in planners:
        planner.vocab = vocab
        n = planner.build()
        tasks += planner.tasks
        total += n
        if key and counts is not None:
            counts[key] = n
    if len({task.name for task in tasks}) != len(tasks):
        # a projector's repeated "layers" give one tensor several tasks: the last (t = 1) is written
        last = {task.name: i for i, task in enumerate(tasks)}
        tasks = [task for i, task in enumerate(tasks) if last[task.name] == i]
    ref_dtype = next(iter(models[lead.reference].tensors.infos.values())).dtype
    dtype = torch_dtype(config.dtype)
    out_dtype = torch_dtype(config.out_dtype) or dtype or ref_dtype
    if config.device == "cuda" and not torch.cuda.is_available():
        raise LuminaryError("device: cuda was asked for, but torch sees no CUDA device")
    return MergePlan(get_method(config.merge_method), models, tasks, lead.reference, total, vocab, dtype,
                     out_dtype, config.seed, config.device, counts)
