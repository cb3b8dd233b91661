"""Chat and instruction data: rendered with the model's chat template, loss on the responses only.

A JSONL row holds ``messages`` (``[{"role", "content"}, ...]``) or a
``prompt``/``response`` pair (read as one user turn and one assistant turn).
The conversation is rendered with ``tokenizer.apply_chat_template``; the
labels are the input ids on every assistant turn and ``-100`` everywhere else
(system, user, the template's own markup before each reply), so the loss is
the cross-entropy of the responses alone.

An assistant turn i spans the text between the rendering of turns ``< i``
with the generation prompt and the rendering of turns ``<= i``: that is what
the model writes at inference after the template's prompt. A tokenizer
without a template is refused unless ``data.chat_template: chatml`` asks for
the ChatML default below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.train.labels import IGNORE

# ChatML (the template of Qwen and many others), used only when the config asks for it
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def read_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    """Conversations from a JSONL of ``messages`` rows or ``prompt``/``response`` rows."""
    path = Path(path)
    if not path.is_file():
        raise LuminaryError(f"data.path: {path} is not a file")
    out = []
    for n, row in enumerate(read_jsonl(path), 1):
        if "messages" in row:
            messages = row["messages"]
            if not isinstance(messages, list) or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages):
                raise LuminaryError(f"{path}:{n}: messages must be a list of {{role, content}} strings")
        elif "prompt" in row and "response" in row:
            messages = [{"role": "user", "content": str(row["prompt"])},
                        {"role": "assistant", "content": str(row["response"])}]
        else:
            raise LuminaryError(f"{path}:{n}: a chat row needs 'messages' or 'prompt' and 'response'")
        if not any(m["role"] == "assistant" for m in messages):
            raise LuminaryError(f"{path}:{n}: no assistant turn to learn from")
        out.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not out:
        raise LuminaryError(f"data.path: {path} holds no conversations")
    return out


def use_template(tokenizer: Any, choice: str) -> None:
    """Check the tokenizer has a chat template, or give it ChatML when ``choice`` is ``chatml``."""
    if getattr(tokenizer, "chat_template", None):
        return
    if choice != "chatml":
        raise LuminaryError("data.chat_template: the tokenizer has no chat template; "
                            "set data.chat_template: chatml to use the ChatML default")
    tokenizer.chat_template = CHATML


def _text(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """``input_ids`` of the rendered conversation, ``labels`` = ids on assistant turns, ``-100`` elsewhere.

    The spans are found in characters and mapped to tokens by their offsets, so a token that a
    byte-level BPE merges across the template's edge (``"\\n" + "    return"`` as ``"\\n   "``) is
    a response token: it holds response text.
    """
    text = _text(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix, upto = _text(tokenizer, messages[:i], generation_prompt=True), _text(tokenizer, messages[: i + 1])
        if not (text.startswith(upto) and upto.startswith(prefix)):
            raise LuminaryError("data.chat_template: the template does not render a conversation as the "
                                "concatenation of its turns; responses cannot be masked")
        inside = (offsets[:, 1] > len(prefix)) & (offsets[:, 0] < len(upto))  # overlaps [prefix, upto)
        labels[inside] = np.asarray(ids, dtype=np.int64)[inside]
    return {"input_ids": np.asarray(ids, dtype=np.int64), "labels": labels}


def chat_examples(path: str | Path, tokenizer: Any, seq_len: int, chat_template: str = "model"
                  ) -> list[dict[str, np.ndarray]]:
    """Every conversation encoded, cut to ``seq_len`` tokens; those left with no response token dropped."""
    use_template(tokenizer, chat_template)
    out = []
    for messages in read_conversations(path):
        ex = encode_conversation(tokenizer, messages)
        ex = {k: v[:seq_len] for k, v in ex.items()}
        if (ex["labels"][1:] != IGNORE).any():
            out.append(ex)
    if not out:
        raise LuminaryError(f"data.seq_len: {seq_len} cuts every response off; raise it")
    return out
