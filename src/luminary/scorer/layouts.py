"""The weight layouts a scorer folder may come in besides safetensors: PyTorch ``.bin`` and Flax ``msgpack``.

The released Cappy folder (``btan2/cappy-large``) carries a
``pytorch_model.bin`` and a ``flax_model.msgpack``. What transformers'
``from_pretrained`` reads from a folder, and luminary with it:

- ``pytorch_model.bin``, or the shards named by ``pytorch_model.bin.index.json``
  (``weight_map``: tensor → file); other ``.bin`` files of the folder
  (``training_args.bin`` beside a Trainer's checkpoint) are no weights and are
  not read. Each file goes through ``torch.load(weights_only=True)`` only.
- ``flax_model.msgpack``: flax's ``serialization.to_bytes`` of the parameter
  tree, msgpack with arrays as extension type 1 (shape, dtype name, bytes),
  a format of data only. It is read with the ``msgpack`` package (installed
  with flax; flax itself is not needed) and renamed as transformers 4's
  ``load_flax_weights_in_pytorch_model`` did: the tree's path joined by dots;
  a ``kernel`` becomes ``weight`` transposed (a 4-D one permuted (3, 2, 0, 1));
  ``embedding`` and ``scale`` become ``weight``; bf16 is read as fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from luminary.core.errors import LuminaryError

FLAX = "flax_model.msgpack"


def _ext_hook(code: int, data: bytes) -> Any:
    """flax.serialization's extension types: 1 an ndarray, 2 a numpy scalar, 3 a complex number."""
    import msgpack

    if code == 1:
        shape, dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape)
    if code == 2:
        shape, dtype, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape)[()]
    if code == 3:
        real, imag = msgpack.unpackb(data, raw=False)
        return complex(real, imag)
    return msgpack.ExtType(code, data)


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":  # numpy has none: read the 16 bits as the top half of a float32
        return np.dtype("<u2")
    return np.dtype(name)


def read_flax_tree(path: Path) -> dict[str, Any]:
    """The nested parameter tree of a ``flax_model.msgpack``."""
    try:
        import msgpack
    except ImportError:
        raise LuminaryError(f"{path}: reading Flax weights needs the msgpack package (installed with flax): "
                            "pip install msgpack") from None
    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=_ext_hook, raw=False)
    except Exception as exc:  # msgpack raises several types for damaged data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LuminaryError(f"{path}: not a readable Flax msgpack file ({first})") from None
    if not isinstance(tree, dict):
        raise LuminaryError(f"{path}: not a Flax parameter tree (expected a mapping at the top)")
    return tree.get("params", tree) if isinstance(tree.get("params"), dict) else tree


def flatten(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def flax_to_torch(path: Path) -> dict[str, torch.Tensor]:
    """A Flax msgpack's parameters under PyTorch names (transformers 4's Flax → PyTorch renaming)."""
    state: dict[str, torch.Tensor] = {}
    for key, value in flatten(read_flax_tree(path)).items():
        array = np.asarray(value)
        if array.dtype == np.dtype("<u2"):  # bfloat16 bits
            array = (array.astype(np.uint32) << 16).view(np.float32)
        *head, leaf = key
        if leaf == "kernel" and array.ndim == 4:
            array, leaf = np.transpose(array, (3, 2, 0, 1)), "weight"
        elif leaf == "kernel":
            array, leaf = array.T, "weight"
        elif leaf in ("embedding", "scale"):
            leaf = "weight"
        elif leaf == "mean":
            leaf = "running_mean"
        elif leaf == "var":
            leaf = "running_var"
        state[".".join((*head, leaf))] = torch.from_numpy(np.ascontiguousarray(array).copy())
    return state


def fit_prefix(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Add or remove the base model's prefix where the tree's names need it (as transformers did)."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    expected = set(model.state_dict())
    out = {}
    for key, value in state.items():
        for name in (key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")):
            if name in expected:
                out[name] = value
                break
        else:
            out[key] = value
    return out
