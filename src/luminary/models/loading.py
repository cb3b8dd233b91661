"""Safe loading of model and tokenizer folders.

A model folder is a ``save_pretrained`` folder. luminary loads safetensors
weights; a folder with only pickle weights (``*.bin``, ``*.pt``) is refused
unless the caller opts in with ``allow_pickle=True``, and then the file is read
with ``torch.load(weights_only=True)``, which rebuilds tensors and plain
containers only. Remote code is never trusted on the user's behalf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from luminary.core.io import read_json, weight_index_files
from luminary.core.errors import LuminaryError
from luminary.core.runs import list_checkpoints
from luminary.models.registry import register_all

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder; a run folder stands for its latest complete checkpoint."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        found = list_checkpoints(path / "checkpoints")
        if found:
            return found[-1][1]
    return path


def _check_folder(path: Path, what: str = "model folder") -> None:
    if not path.exists():
        raise LuminaryError(f"{path}: {what} not found")
    if not path.is_dir():
        raise LuminaryError(f"{path}: not a folder (expected a {what} written by save_pretrained)")
    if not (path / "config.json").is_file():
        raise LuminaryError(f"{path}: no config.json (expected a {what} written by save_pretrained)")


def weight_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) in a model folder."""
    safe = sorted(path.glob("*.safetensors"))
    pickled = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    return safe, pickled


def pickle_weight_files(folder: Path, pickled: list[Path]) -> list[Path]:
    """The pickle files that hold the weights: the shards ``pytorch_model.bin.index.json`` names
    (each inside the folder), else ``pytorch_model.bin``, else every pickle file there. A Trainer's
    ``training_args.bin`` or ``optimizer.pt`` beside the weights is therefore never read as weights."""
    files = weight_index_files(folder, BIN_INDEX)
    if files is not None:
        return files
    if (folder / BIN).is_file():
        return [folder / BIN]
    return pickled


def read_shapes(files: list[Path]) -> dict[str, tuple[list[int], Path]]:
    """Each tensor's shape and file, from the safetensors headers alone; a damaged file is named."""
    from safetensors import safe_open

    shapes: dict[str, tuple[list[int], Path]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = (list(handle.get_slice(key).get_shape()), file)
        except Exception as exc:  # safetensors raises its own error type for a bad header
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LuminaryError(f"{file}: not a readable safetensors file ({first})") from None
    return shapes


def _shape_mismatch(shapes: dict[str, tuple[list[int], Path]], auto_class: Any, config: Any) -> str | None:
    """The first tensor whose stored shape differs from the one ``config.json`` gives it, as a sentence."""
    try:
        with torch.device("meta"):
            model = auto_class.from_config(config)
    except Exception:  # only for a better message; the caller has the original error
        return None
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "")
    for key, (shape, file) in shapes.items():
        for name in (key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")):
            if name in expected and expected[name] != shape:
                return f"{file}: {key} has shape {shape}, but config.json makes it {expected[name]}"
    return None


def load_config(path: str | Path, trust_remote_code: bool = False):
    register_all()  # normally done already, when the Auto classes were imported
    path = resolve_model_dir(path)
    _check_folder(path)
    raw = read_json(path / "config.json")
    if "auto_map" in raw and not trust_remote_code:
        model_type = raw.get("model_type", "?")
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING:
            raise LuminaryError(
                f"{path}: model_type '{model_type}' needs the folder's own Python code; "
                "luminary runs no remote code (the folder's own Python) unless the Python API is given "
                "trust_remote_code=True; no command does"
            )
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError) as exc:
        raise LuminaryError(f"{path}/config.json: {str(exc).splitlines()[0]}") from None


def load_model(
    path: str | Path,
    auto_class: Any = AutoModelForCausalLM,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a model folder (or a run's latest checkpoint) with ``auto_class``, refusing pickles unless allowed."""
    path = resolve_model_dir(path)
    config = kwargs.pop("config", None) or load_config(path, trust_remote_code=trust_remote_code)
    for key, value in kwargs.pop("config_overrides", {}).items():
        setattr(config, key, value)
    safe, pickled = weight_files(path)
    try:
        if safe:
            weight_index_files(path)  # an index may name only shards inside the folder
            try:
                model, info = auto_class.from_pretrained(
                    path, config=config, use_safetensors=True, trust_remote_code=trust_remote_code,
                    output_loading_info=True, **kwargs
                )
            except Exception:  # only on failure: name the damaged file or the mis-shaped tensor if that is it
                mismatch = _shape_mismatch(read_shapes(safe), auto_class, config)
                if mismatch:
                    raise LuminaryError(mismatch) from None
                raise
            _check_loaded(path, model, info)
            return model
        if not pickled:
            raise LuminaryError(f"{path}: no weights found (*.safetensors)")
        if not allow_pickle:
            raise LuminaryError(
                f"{pickled[0]}: pickle weights are refused; convert to safetensors, "
                "or pass --allow-pickle to read them with torch.load(weights_only=True)"
            )
        return _load_pickled(path, pickle_weight_files(path, pickled), auto_class, config, **kwargs)
    except LuminaryError:
        raise
    except (ValueError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LuminaryError(f"{path}: cannot load as {getattr(auto_class, '__name__', auto_class)}: {first}") from None


def _check_loaded(path: Path, model: PreTrainedModel, info: dict[str, Any]) -> None:
    """Refuse a folder whose weights gave the model none of its parameters: transformers would
    go on with every weight at random (a header with no tensors, a file of another model's names).
    Some missing keys are normal (a new task head on a backbone); none loaded is not."""
    missing = set(info.get("missing_keys") or ())
    names = [n for n, _ in model.named_parameters()]
    if names and all(n in missing for n in names):
        raise LuminaryError(f"{path}: its weights hold none of the model's {len(names)} parameters "
                            f"(e.g. {names[0]}); refused rather than run on random weights")


def _load_pickled(path: Path, files: list[Path], auto_class: Any, config: Any, **kwargs: Any) -> PreTrainedModel:
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            part = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # an UnpicklingError for anything but plain tensors
            raise LuminaryError(f"{file}: refused by torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None
        if not isinstance(part, dict):
            raise LuminaryError(f"{file}: expected a state dict of tensors")
        state.update(part)
    dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
    model = auto_class.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        problem = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise LuminaryError(f"{path}: weights do not fit {type(model).__name__}: {problem}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    path = resolve_model_dir(path)
    if not path.is_dir():
        raise LuminaryError(f"{path}: tokenizer folder not found")
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise LuminaryError(f"{path}: cannot load a tokenizer: {str(exc).splitlines()[0]}") from None
