"""Convert the released ctc_score D and R checkpoints into luminary aligner folders.

ctc_score downloads its trained aligners as single ``.ckpt`` files
(``~/.cache/ctc_score_models/<align>/<aligner_name>.ckpt``, ``scorer.py``);
each is a ``torch.save`` of a state dict:

- **D** (``models/discriminative_aligner.py``): the ``nn.Module`` state of
  ``DiscriminativeAligner``, i.e. ``_roberta.*`` (a ``RobertaModel`` of
  roberta-large, pooler included; files saved with older transformers also
  hold the buffer ``_roberta.embeddings.position_ids``) or ``_model.*`` (the
  ALBERT of ``D-mix-albert``), and ``_classifier.weight`` (2, H),
  ``_classifier.bias`` (2). Its forward is softmax(_classifier(Σ_{t ∈ w}
  h_t))[0] per word w of the input, h the backbone's last hidden states
  over (input, context): a token classifier with two labels whose word
  features are summed. The training code's Lightning checkpoint (the same
  keys under ``"state_dict"``, ``train/reformat_ckpt.py``) is read too.
- **R** (``models/bleurt_aligner_pt.py``): BLEURT converted from TensorFlow,
  ``bert.*`` (a ``BertModel`` of ``BertConfig()``, i.e. bert-base) and
  ``dense.weight`` (1, H), ``dense.bias`` (1); score = dense(pooler output)
  over (context, input): a sequence regressor with one output.

A checkpoint holds no config and no tokenizer; ``base`` is the folder of the
backbone it was trained from (roberta-large, tals/albert-xlarge-vitaminc-mnli
or bert-base-uncased: config.json and tokenizer), as ctc_score takes them
from the hub. The state dict is read with ``torch.load(weights_only=True)``,
its keys renamed (``_roberta.``/``_model.`` → the model's backbone prefix,
``_classifier.``/``dense.`` → ``classifier.``), the D pooler (which a token
classifier has not, and which the original's forward never uses) and stale
buffers dropped, every remaining tensor required to fit, and the result
written as a ``save_pretrained`` folder (safetensors, tokenizer,
``ctc_aligner.json`` with ``word_features: sum``, MANIFEST.sha256) that
``build_aligner("D" | "R", OUT)`` loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, sha256_file, write_manifest
from luminary.core.locks import locked

D_BACKBONES = ("_roberta.", "_model.")  # roberta-large; the ALBERT of D-mix-albert
D_HEAD = "_classifier."
R_BACKBONE, R_HEAD = "bert.", "dense."


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A ctc_score checkpoint's state dict (a Lightning file's ``state_dict``), by ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise LuminaryError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an UnpicklingError for anything but tensors and plain containers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LuminaryError(f"{path}: refused by torch.load(weights_only=True): {first}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise LuminaryError(f"{path}: not a state dict of tensors (a ctc_score .ckpt is one)")
    return state


def checkpoint_kind(state: dict[str, torch.Tensor], where: str | Path) -> str:
    """D or R, from the key names and the head's shape."""
    head = state.get(D_HEAD + "weight")
    if head is not None and any(k.startswith(D_BACKBONES) for k in state):
        if head.dim() != 2 or head.shape[0] != 2:
            raise LuminaryError(f"{where}: _classifier.weight has shape {list(head.shape)}; a D aligner's is (2, hidden)")
        return "D"
    head = state.get(R_HEAD + "weight")
    if head is not None and any(k.startswith(R_BACKBONE) for k in state):
        if head.dim() != 2 or head.shape[0] != 1:
            raise LuminaryError(f"{where}: dense.weight has shape {list(head.shape)}; an R aligner's is (1, hidden)")
        return "R"
    raise LuminaryError(f"{where}: not a ctc_score D or R checkpoint (expected _roberta.* or _model.* with "
                        f"_classifier.*, or bert.* with dense.*; found e.g. {sorted(state)[:3]})")


def rename(state: dict[str, torch.Tensor], kind: str, prefix: str) -> dict[str, torch.Tensor]:
    """ctc_score's key names → a transformers token classifier's (D) or sequence classifier's (R)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if kind == "D":
            backbone = next((p for p in D_BACKBONES if key.startswith(p)), None)
            if backbone is not None:
                rest = key[len(backbone):]
                if rest.startswith("pooler."):  # a token classifier has no pooler; D's forward never used it
                    continue
                out[f"{prefix}.{rest}"] = value
            elif key.startswith(D_HEAD):
                out["classifier." + key[len(D_HEAD):]] = value
            else:
                out[key] = value  # reported as unexpected
        elif key.startswith(R_BACKBONE):
            out[f"{prefix}.{key[len(R_BACKBONE):]}"] = value
        elif key.startswith(R_HEAD):
            out["classifier." + key[len(R_HEAD):]] = value
        else:
            out[key] = value
    return out


def build_model(state: dict[str, torch.Tensor], kind: str, base: Path, where: Path) -> Any:
    """The transformers model of ``base``'s config with the checkpoint's weights; every tensor must fit."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from luminary.models.loading import load_config

    config = load_config(base)
    config.num_labels = 2 if kind == "D" else 1
    config.problem_type = None if kind == "D" else "regression"
    auto = AutoModelForTokenClassification if kind == "D" else AutoModelForSequenceClassification
    try:
        model = auto.from_config(config)
    except ValueError as exc:
        raise LuminaryError(f"{base}: a {kind} aligner cannot be built on this config: {str(exc).splitlines()[0]}") from None
    renamed = rename(state, kind, model.base_model_prefix)
    stale = {name for name, _ in model.named_buffers()} - set(model.state_dict())  # e.g. position_ids
    renamed = {k: v for k, v in renamed.items() if k not in stale}
    expected = model.state_dict()
    for key, value in renamed.items():
        if key in expected and list(expected[key].shape) != list(value.shape):
            raise LuminaryError(f"{where}: {key} has shape {list(value.shape)}, but {base}/config.json makes it "
                                f"{list(expected[key].shape)} (is --base the backbone it was trained from?)")
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        problem = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise LuminaryError(f"{where}: weights do not fit {type(model).__name__} on {base}: {problem}")
    return model.eval()


def convert_checkpoint(src: str | Path, out: str | Path, base: str | Path, overwrite: bool = False) -> dict:
    """Write the ctc_score checkpoint ``src`` as a luminary D or R aligner folder ``out``."""
    from luminary.models.loading import load_model, load_tokenizer

    src, out, base = Path(src), Path(out), Path(base)
    state = read_checkpoint(src)
    kind = checkpoint_kind(state, src)
    tokenizer = load_tokenizer(base)
    if not getattr(tokenizer, "is_fast", False):
        raise LuminaryError(f"{base}: D and R aligners need a fast tokenizer (tokenizer.json) for character offsets")
    model = build_model(state, kind, base, src)
    record = {"kind": kind, "source": "ctc_score checkpoint", "converted_from": src.name,
              "checkpoint_sha256": sha256_file(src), "word_features": "sum" if kind == "D" else None}
    record = {k: v for k, v in record.items() if v is not None}
    with locked(out, "aligner folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "ctc_aligner.json").write_text(json.dumps(record, indent=2) + "\n")
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        load_model(tmp, AutoModelForTokenClassification if kind == "D" else AutoModelForSequenceClassification)
        write_manifest(tmp)
    return {"kind": kind, "out": str(out), "tensors": len(model.state_dict()), **record}
