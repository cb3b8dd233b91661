"""Byte-level BPE tokenizers trained with the ``tokenizers`` library.

Special tokens: ``<s>`` (BOS), ``</s>`` (EOS), ``<pad>``, and Crystal's FIM
tokens from StarCoder (``<fim_prefix>``, ``<fim_middle>``, ``<fim_suffix>``,
``<fim_pad>``) plus ``<filename>``. The result is saved as a
``PreTrainedTokenizerFast`` folder that ``AutoTokenizer`` loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"
SPECIAL_TOKENS = [BOS, EOS, PAD, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, "<filename>"]


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (specials included) on ``texts``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )


PLACEHOLDER_MAX_LENGTH = int(1e29)  # transformers' VERY_LARGE_INTEGER (1e30) means "no limit given"


def save_tokenizer(tokenizer, folder: str | Path, model_max_length: int | None = None) -> None:
    """``save_pretrained``, with a ``tokenizer_config.json`` that transformers 4.4x reads as 5.x does.

    transformers 5 writes ``tokenizer_class: TokenizersBackend`` and the specials beyond BOS/EOS/pad
    as an ``extra_special_tokens`` list; 4.x knows neither. Both versions read the older spelling,
    ``PreTrainedTokenizerFast`` and ``additional_special_tokens``, to the same tokenizer. With
    ``model_max_length`` (the model's context), that replaces the 1e30 placeholder.
    """
    tokenizer.save_pretrained(str(folder))
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(config.get("extra_special_tokens"), list):
        config["additional_special_tokens"] = config.pop("extra_special_tokens")
    if model_max_length:
        config["model_max_length"] = int(model_max_length)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids as lm-evaluation-harness splits them (``LM._encode_pair``).

    Trailing whitespace of the context moves to the continuation; the two are
    encoded whole and the continuation is what follows the context's own
    tokens, so a token that spans the boundary is scored as the model reads
    it. An empty context is the end-of-text token, as lm-eval conditions
    on ``prefix_token_id``.
    """
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    if not context:
        prefix = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        return [prefix], encode(continuation)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole, head = encode(context + continuation), encode(context)
    return whole[:len(head)], whole[len(head):]
