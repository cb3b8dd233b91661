"""Where a model's weights come from, and how it is made on any number of processes.

A :class:`ModelSource` is a config and a class, plus a folder of weights or a
seed. It makes a model in three moves, torchtitan's and torchtune's order
(STYLE.md, take 10), so that no process ever holds more of it than its own
part and one unit in flight:

1. :meth:`ModelSource.skeleton`: the model with its parameters on the meta
   device (no memory) and its buffers real (rotary tables, position ids);
2. whoever runs it shards the skeleton (``luminary.parallel``: tensor
   parallel, FSDP2), which on the meta device costs nothing;
3. :meth:`ModelSource.materialize`: one unit at a time (each block, then the
   rest), every parameter gets its whole value, read from the folder's
   safetensors or initialised, and each process copies in the part it holds.

A fresh unit is initialised by the model's own ``_init_weights``, module by
module in transformers' order (children first), with the RNG seeded by
(seed, unit name). So a fresh model is the same in one process and under any
mesh, and the same whatever the order in which units are made.

A folder's tensor names are matched to the model's directly or with the base
model's prefix added or removed (a ``BertModel`` checkpoint into
``BertForSequenceClassification``); parameters the folder does not have
(a new head) are initialised. Where the names need transformers' own
conversions (renamed or fused tensors), the folder is loaded whole through
``from_pretrained`` instead, and said so.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from luminary.core.io import weight_index_files
from luminary.core.errors import LuminaryError
from luminary.core.modules import list_blocks
from luminary.core.progress import info
from luminary.core.seed import derive_seed

TWIN_DEPTH = 2  # blocks kept in the twin that plans are derived on


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside keep their parameters on the meta device and their buffers where they are.

    The approach of accelerate's ``init_empty_weights(include_buffers=False)``:
    ``register_parameter`` moves each new parameter to ``meta``. Buffers stay
    real, since they are small and computed at construction (a rotary
    table), which ``to_empty`` would otherwise leave as garbage.
    """
    register = nn.Module.register_parameter

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = to_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _post_order(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Children before their parent, in declaration order: transformers' ``smart_apply`` order."""
    for name, child in module.named_children():
        yield from _post_order(child, f"{prefix}.{name}" if prefix else name)
    yield prefix, module


def init_units(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """(unit name, its modules in post-order): each block, then everything else ("")."""
    blocks = list_blocks(model)
    in_block = lambda name: any(name == b or name.startswith(b + ".") for b in blocks)  # noqa: E731
    units = [(b, [(f"{b}.{n}" if n else b, m) for n, m in _post_order(model.get_submodule(b))]) for b in blocks]
    units.append(("", [(n, m) for n, m in _post_order(model) if not in_block(n)]))
    return units


def _owners(model: nn.Module) -> dict[str, Any]:
    """Each module's nearest enclosing ``PreTrainedModel`` (whose ``_init_weights`` applies to it)."""
    from transformers import PreTrainedModel

    owners: dict[str, Any] = {}

    def walk(module: nn.Module, prefix: str, owner: Any) -> None:
        owner = module if isinstance(module, PreTrainedModel) else owner
        owners[prefix] = owner
        for name, child in module.named_children():
            walk(child, f"{prefix}.{name}" if prefix else name, owner)

    walk(model, "", None)
    return owners


def place(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy ``full`` into the part of it that ``param`` holds here (all of it, or a DTensor's local shard)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        part = distribute_tensor(full.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
        param.to_local().copy_(part.to_local())
    else:
        param.copy_(full)


class FolderWeights:
    """The tensors of a model folder's weight files, by the model's parameter names.

    Safetensors files are read a tensor at a time; a shard index may name only
    files inside the folder. Pickle files (``*.bin``) are read whole, and only
    when allowed, with ``torch.load(weights_only=True)``.
    """

    def __init__(self, folder: Path, allow_pickle: bool = False):
        from luminary.models.loading import pickle_weight_files, weight_files

        self.folder = folder
        safe, pickled = weight_files(folder)
        self._handles: dict[str, Any] = {}
        self._tensors: dict[str, torch.Tensor] = {}
        self._stack = contextlib.ExitStack()
        if safe:
            self._open_safetensors(self._contained(safe))
        elif pickled:
            if not allow_pickle:
                raise LuminaryError(f"{pickled[0]}: pickle weights are refused; convert to safetensors, "
                                    "or pass --allow-pickle to read them with torch.load(weights_only=True)")
            for file in pickle_weight_files(folder, pickled):
                try:
                    part = torch.load(file, map_location="cpu", weights_only=True)
                except Exception as exc:  # an UnpicklingError for anything but plain tensors
                    raise LuminaryError(f"{file}: refused by torch.load(weights_only=True): "
                                        f"{str(exc).splitlines()[0]}") from None
                if not isinstance(part, dict):
                    raise LuminaryError(f"{file}: expected a state dict of tensors")
                self._tensors.update(part)
        else:
            raise LuminaryError(f"{folder}: no weights found (*.safetensors)")
        self.keys = sorted(set(self._handles) | set(self._tensors))

    def _contained(self, files: list[Path]) -> list[Path]:
        """The files to read: those an index names (each must lie inside the folder), else all of them."""
        named = weight_index_files(self.folder)
        return files if named is None else named

    def _open_safetensors(self, files: list[Path]) -> None:
        from safetensors import safe_open

        for file in files:
            try:
                handle = self._stack.enter_context(safe_open(str(file), framework="pt"))
            except Exception as exc:  # safetensors raises its own error type for a bad header
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise LuminaryError(f"{file}: not a readable safetensors file ({first})") from None
            for key in handle.keys():
                self._handles[key] = (handle, file)

    def shape(self, key: str) -> list[int]:
        if key in self._tensors:
            return list(self._tensors[key].shape)
        handle, _ = self._handles[key]
        return list(handle.get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        if key in self._tensors:
            return self._tensors[key]
        handle, file = self._handles[key]
        try:
            return handle.get_tensor(key)
        except Exception as exc:
            raise LuminaryError(f"{file}: cannot read tensor {key} ({str(exc).splitlines()[0]})") from None

    def file_of(self, key: str) -> Path:
        return self._handles[key][1] if key in self._handles else self.folder

    def close(self) -> None:
        self._stack.close()


def map_names(model: nn.Module, keys: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(model name -> file key, model names the files lack, file keys no model name takes).

    A name matches as it is, with the base model's prefix added (a base
    model's checkpoint into a model with a head), or with it removed.
    """
    prefix = getattr(model, "base_model_prefix", "") or ""
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in _persistent_buffers(model)]
    available = set(keys)
    mapping: dict[str, str] = {}
    for name in names:
        for key in (name, f"{prefix}.{name}", name.removeprefix(f"{prefix}.")):
            if key in available:
                mapping[name] = key
                break
    missing = [n for n in names if n not in mapping and not _is_buffer(model, n)]
    unused = sorted(available - set(mapping.values()))
    return mapping, missing, unused


def _persistent_buffers(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    persistent = set(model.state_dict(keep_vars=True))
    return [(n, b) for n, b in model.named_buffers() if n in persistent]


def _is_buffer(model: nn.Module, name: str) -> bool:
    return name in dict(model.named_buffers())


def _needs_transformers(model: nn.Module, missing: list[str], unused: list[str]) -> bool:
    """Whether the simple name match is not enough and transformers' conversions are needed.

    A file tensor left over whose module the model has (a renamed parameter),
    or a parameter missing inside a block (new heads sit outside the blocks),
    means the folder's names are not the model's.
    """
    modules = {n for n, _ in model.named_modules()}
    prefix = getattr(model, "base_model_prefix", "") or ""
    buffers = {n.rsplit(".", 1)[-1] for n, _ in model.named_buffers()} | {"position_ids"}
    for key in unused:
        owner, _, leaf = key.rpartition(".")
        if leaf in buffers:
            continue  # a buffer older transformers saved (position ids), harmless
        if owner in modules or f"{prefix}.{owner}" in modules or owner.removeprefix(f"{prefix}.") in modules:
            return True
    blocks = list_blocks(model)
    return any(any(n.startswith(b + ".") for b in blocks) for n in missing)


def reduced_depth(config: Any, depth: int = TWIN_DEPTH) -> Any:
    """A copy of ``config`` with at most ``depth`` blocks in each stack (layer counts and per-layer lists cut)."""
    config = copy.deepcopy(config)
    counts = {k: v for k, v in config.to_dict().items()
              if isinstance(v, int) and not isinstance(v, bool) and v > depth
              and (k.endswith("layers") or k in ("n_layer", "num_layers", "num_decoder_layers", "n_layers"))}
    for key in counts:
        setattr(config, key, depth)
    for key, value in config.to_dict().items():  # per-layer lists (layer_types, ...) follow the count
        if isinstance(value, list) and value and len(value) in counts.values() and key.startswith("layer"):
            setattr(config, key, value[:depth])
    return config


class ModelSource:
    """A config and a model class, plus the folder the weights come from (or none: a fresh model).

    Args:
        config: a transformers config.
        model_class: a ``PreTrainedModel`` class, or an Auto class (``AutoModelForCausalLM``, ...).
        folder: a ``save_pretrained`` folder whose weights to load; None: every weight is initialised.
        seed: seeds the initialisation of what the folder does not hold (all of a fresh model).
        where: the config field that named it, for error messages.
    """

    def __init__(self, config: Any, model_class: Any, folder: str | Path | None = None, seed: int = 0,
                 where: str = "model", allow_pickle: bool = False):
        self.config = config
        self.model_class = model_class
        self.folder = Path(folder) if folder is not None else None
        self.seed = seed
        self.where = where
        self.allow_pickle = allow_pickle
        self.adjust: list[Callable[[nn.Module], Any]] = []  # applied to every skeleton (freeze a part, ...)

    # --- making them -----------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str, vocab_size: int, seed: int = 0, **overrides: Any) -> "ModelSource":
        """A fresh causal LM of a luminary preset or family (``crystal-tiny``, ``llama``)."""
        from luminary.models.presets import FAMILIES, build_config

        config = build_config(preset, vocab_size, **overrides)
        return cls(config, FAMILIES[config.model_type][1], seed=seed)

    @classmethod
    def from_folder(cls, path: str | Path, auto_class: Any = None, seed: int = 0, where: str = "model",
                    allow_pickle: bool = False, config_overrides: dict[str, Any] | None = None) -> "ModelSource":
        """A model folder (or a run folder's latest checkpoint) read through ``auto_class``."""
        from transformers import AutoModelForCausalLM

        from luminary.models.loading import load_config, resolve_model_dir

        folder = resolve_model_dir(path)
        config = load_config(folder)
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        return cls(config, auto_class or AutoModelForCausalLM, folder, seed, where, allow_pickle)

    def _construct(self, config: Any) -> nn.Module:
        if hasattr(self.model_class, "from_config"):  # an Auto class
            return self.model_class.from_config(config)
        return self.model_class(config)

    def skeleton(self) -> nn.Module:
        """The model with its parameters on the meta device and its buffers real."""
        from luminary.models.registry import register_all

        register_all()
        with parameters_on_meta():
            try:
                model = self._construct(self.config)
            except (ValueError, TypeError, KeyError) as exc:
                raise LuminaryError(f"{self.where}: cannot build {getattr(self.model_class, '__name__', '')} "
                                    f"from its config: {str(exc).splitlines()[0]}") from None
        for change in self.adjust:
            change(model)
        return model

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The whole model in this process (what ``build_model`` returns)."""
        with torch.device("cpu"):  # a skeleton's buffers are made on the CPU, whatever the ambient device
            model = self.skeleton()
        buffers = snapshot_buffers(model)
        self.materialize(model, device, buffers)
        return model

    def twin(self) -> nn.Module:
        """A real model like this one with at most two blocks per stack and seeded random weights.

        Plans are derived and checked on it: a tensor-parallel plan depends on
        the architecture and the widths, not on the depth or the values.
        """
        from luminary.models.registry import register_all

        register_all()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("twin", self.seed))
            return self._construct(reduced_depth(self.config)).eval()

    # --- filling a skeleton ----------------------------------------------------------------
    def materialize(self, model: nn.Module, device: str | torch.device, buffers: dict[str, torch.Tensor]) -> None:
        """Allocate ``model``'s (possibly sharded) parameters on ``device`` and fill them.

        ``buffers``: the skeleton's buffers as built (:func:`snapshot_buffers`),
        restored after allocation.
        """
        weights = FolderWeights(self.folder, self.allow_pickle) if self.folder is not None else None
        try:
            mapping: dict[str, str] = {}
            if weights is not None:
                mapping, missing, unused = map_names(model, weights.keys)
                if _needs_transformers(model, missing, unused):
                    weights.close()
                    weights, mapping = self._through_transformers(model), None
                elif missing:
                    shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
                    info(f"{self.where}: {len(missing)} parameters not in {self.folder} are initialised "
                         f"(seed {self.seed}): {shown}")
            ties = _shared_parameters(model)
            model.to_empty(device=device)
            for uses in ties:  # to_empty allocates each use of a shared parameter apart: share one again
                first_module, first_key = uses[0]
                for module, key in uses[1:]:
                    module._parameters[key] = first_module._parameters[first_key]
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    if name in buffers:
                        buffer.copy_(buffers[name])
                self._fill(model, weights, mapping)
        finally:
            if isinstance(weights, FolderWeights):
                weights.close()

    def _through_transformers(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The folder loaded whole by transformers, as a state dict (names need its conversions)."""
        from luminary.models.loading import load_model

        info(f"{self.where}: {self.folder}'s tensor names need transformers' conversions; "
             "loading it whole in each process")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("init", self.seed, "transformers"))
            loaded = load_model(self.folder, self.model_class, allow_pickle=self.allow_pickle, config=self.config)
        return {k: v.detach() for k, v in loaded.state_dict().items()}

    def _fill(self, model: nn.Module, weights: Any, mapping: dict[str, str] | None) -> None:
        """Every unit: whole values (read, or initialised), then each process's part copied in."""
        owners = _owners(model)
        name_of = {id(p): n for n, p in model.named_parameters()}
        for unit, modules in init_units(model):
            slots: dict[int, tuple[torch.Tensor, list[tuple[nn.Module, str, bool]]]] = {}
            for module_name, module in modules:
                for key, p in module._parameters.items():
                    if p is not None and id(p) in name_of:
                        own = name_of[id(p)] == (f"{module_name}.{key}" if module_name else key)
                        slots.setdefault(id(p), (p, []))[1].append((module, key, own))
            if not slots:
                continue
            whole = {pid: nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=False)
                     for pid, (p, _) in slots.items()}
            for pid, (p, uses) in slots.items():  # stand-ins: the unit's parameters, whole, on the CPU
                for module, key, own in uses:
                    # a tied weight is initialised by the module it is named after (the embedding, as
                    # transformers' tie_weights copies it onto the head); the others write to meta
                    module._parameters[key] = whole[pid] if own else nn.Parameter(
                        torch.empty(p.shape, dtype=p.dtype, device="meta"), requires_grad=False)
            try:
                self._init_unit(unit, modules, owners)
                for pid, (p, _) in slots.items():
                    value = self._read(name_of[pid], weights, mapping)
                    if value is not None:
                        if list(value.shape) != list(p.shape):
                            raise LuminaryError(f"{self._file(name_of[pid], weights, mapping)}: {name_of[pid]} "
                                                f"has shape {list(value.shape)}, but config.json makes it "
                                                f"{list(p.shape)}")
                        whole[pid].copy_(value.to(whole[pid].dtype))
            finally:
                for pid, (p, uses) in slots.items():
                    for module, key, _ in uses:
                        module._parameters[key] = p
            for pid, (p, _) in slots.items():
                place(p, whole[pid])
        if weights is not None:  # persistent buffers the folder holds (running statistics, ...)
            for name, buffer in _persistent_buffers(model):
                value = self._read(name, weights, mapping)
                if value is not None and list(value.shape) == list(buffer.shape):
                    buffer.copy_(value.to(buffer.dtype))

    def _init_unit(self, unit: str, modules: list[tuple[str, nn.Module]], owners: dict[str, Any]) -> None:
        """The model's own ``_init_weights`` over the unit's modules, children first, seeded by (seed, unit)."""
        from transformers import initialization as hf_init

        guard = getattr(hf_init, "guard_torch_init_functions", contextlib.nullcontext)
        with torch.random.fork_rng(devices=[]), guard():
            torch.manual_seed(derive_seed("init", self.seed, unit))
            for name, module in modules:
                owner = owners.get(name)
                if owner is not None:
                    owner._init_weights(module)

    @staticmethod
    def _read(name: str, weights: Any, mapping: dict[str, str] | None) -> torch.Tensor | None:
        if weights is None:
            return None
        if mapping is None:  # a state dict from transformers, by the model's own names
            return weights.get(name)
        return weights.get(mapping[name]) if name in mapping else None

    def _file(self, name: str, weights: Any, mapping: dict[str, str] | None) -> Path | str:
        if isinstance(weights, FolderWeights) and mapping and name in mapping:
            return weights.file_of(mapping[name])
        return self.folder or self.where


def _shared_parameters(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """(module, attribute) uses of every parameter that more than one module holds (tied weights)."""
    uses: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for key, p in module._parameters.items():
            if p is not None:
                uses.setdefault(id(p), []).append((module, key))
    return [u for u in uses.values() if len(u) > 1]


def snapshot_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """A skeleton's buffers as built, to restore after its parameters are allocated."""
    return {name: b.detach().clone() for name, b in model.named_buffers() if b.device.type != "meta"}


def build_model(preset: str, vocab_size: int, seed: int | None = None, **overrides: Any) -> nn.Module:
    """A causal LM with fresh weights: each block, then the rest, initialised by the model's own
    ``_init_weights`` with the RNG seeded by (seed, unit) (``luminary.models.source``), so the
    same seed gives the same model in one process and under any mesh. Without a seed, one is
    drawn from torch's global RNG. Made on torch's default device (``with torch.device("cuda"):``);
    under ``torch.device("meta")``, a skeleton with no values."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), device="cpu"))
    source = ModelSource.from_preset(preset, vocab_size, seed=seed, **overrides)
    device = torch.get_default_device()
    return source.skeleton() if device.type == "meta" else source.build(device)
