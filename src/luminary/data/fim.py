"""Fill-in-the-middle (FIM) as CrystalCoder applies it (``specs/crystal.md``).

Per document, at sample time: split the document's text at two uniformly random
character positions into prefix, middle and suffix; with probability ``spm``
emit SPM ``<fim_prefix><fim_suffix> suffix <fim_middle> prefix middle``,
otherwise PSM ``<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle``.

Within a packed sample, the "documents" are the segments between EOS tokens
(a document cut by the window's edge is transformed as the part that is there).
Two ways back to the sample's length (``truncate``):

- ``"chunk"`` (CrystalCoder's data preparation, the default): every document is
  permuted whole and the concatenated sample is cut at its end, or padded there
  with ``<fim_pad>``, back to its length;
- ``"document"`` (bigcode's Megatron ``truncate_or_pad=True``): each document is
  brought back to its own token length by cutting or padding its suffix; a
  document whose suffix is too short to absorb the growth is left unchanged,
  as in the original's ``permute``.

One difference from CrystalCoder's code is kept on purpose: it drops the EOS of
an empty segment (two EOS in a row, or an EOS at the window's first position);
here every EOS stays, so document boundaries survive the transformation.
Every random draw comes from a generator seeded by the global sample index, in
the original's order (FIM or not, the two split points, SPM or not), so the
transformation is a pure function of (seed, sample index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FimTokens:
    prefix: int
    middle: int
    suffix: int
    pad: int
    eos: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "FimTokens":
        from luminary.data.tokenizer import FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX

        ids = tokenizer.convert_tokens_to_ids([FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD])
        unk = tokenizer.unk_token_id
        if any(i is None or (unk is not None and i == unk) for i in ids):
            raise ValueError("tokenizer has no FIM special tokens")
        return cls(*ids, eos=tokenizer.eos_token_id)


TRUNCATE = ("chunk", "document")


def permute(
    tokens: np.ndarray, rng: np.random.Generator, spm_rate: float, fim: FimTokens, encode, decode,
    truncate: bool = True,
) -> np.ndarray:
    """One document segment in FIM form (PSM or SPM); kept at its length when ``truncate``.

    With ``truncate``, the growth diff = |prefix| + |middle| + |suffix| + 3 − |tokens| is cut from
    the suffix's end (or ``<fim_pad>`` added there when negative); when the suffix holds no more
    than diff tokens the document is returned unchanged (bigcode/CrystalCoder ``permute``).
    """
    text = decode(tokens)
    lo, hi = sorted(rng.integers(0, len(text) + 1, size=2))
    prefix, middle, suffix = (np.asarray(encode(t), dtype=np.int64) for t in (text[:lo], text[lo:hi], text[hi:]))
    if truncate:
        diff = len(prefix) + len(middle) + len(suffix) + 3 - len(tokens)
        if diff > 0:
            if len(suffix) <= diff:
                return tokens
            suffix = suffix[: len(suffix) - diff]
        elif diff < 0:
            suffix = np.concatenate([suffix, np.full(-diff, fim.pad, dtype=np.int64)])
    if rng.random() < spm_rate:
        parts = [[fim.prefix, fim.suffix], suffix, [fim.middle], prefix, middle]
    else:
        parts = [[fim.prefix], prefix, [fim.suffix], suffix, [fim.middle], middle]
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def apply_fim(
    sample: np.ndarray, rng: np.random.Generator, rate: float, spm_rate: float, fim: FimTokens, encode, decode,
    truncate: str = "chunk",
) -> tuple[np.ndarray, int]:
    """Apply FIM with probability ``rate`` to each EOS-separated segment of a sample.

    Returns the new sample (same length) and how many segments were transformed.
    """
    if truncate not in TRUNCATE:
        raise ValueError(f"truncate must be one of {TRUNCATE}, got {truncate!r}")
    if rate <= 0:
        return sample, 0
    ends = np.flatnonzero(sample == fim.eos)
    bounds = [0, *(ends + 1).tolist()]
    if bounds[-1] != len(sample):
        bounds.append(len(sample))
    pieces, done = [], 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = sample[a:b]
        body, tail = (seg[:-1], seg[-1:]) if len(seg) and seg[-1] == fim.eos else (seg, seg[:0])
        if len(body) > 0 and rng.random() < rate:
            new = permute(body, rng, spm_rate, fim, encode, decode, truncate=truncate == "document")
            done += new is not body
            body = new
        pieces.extend([body, tail])
    out = np.concatenate(pieces).astype(np.int64)
    if len(out) > len(sample):  # "chunk": the whole sample is cut at its end ...
        out = out[: len(sample)]
    elif len(out) < len(sample):  # ... or padded there
        out = np.concatenate([out, np.full(len(sample) - len(out), fim.pad, dtype=np.int64)])
    return out, done


def unpermute(tokens: np.ndarray, fim: FimTokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefix, middle, suffix) token arrays of a FIM segment (pads dropped); inverse of :func:`permute`."""
    t = tokens[tokens != fim.pad]
    assert t[0] == fim.prefix
    mid = int(np.flatnonzero(t == fim.middle)[0])
    if t[1] == fim.suffix:  # SPM: <pre><suf> suffix <mid> prefix middle (prefix/middle boundary is lost)
        return np.asarray([], dtype=np.int64), t[mid + 1 :], t[2:mid]
    suf = int(np.flatnonzero(t == fim.suffix)[0])
    return t[1:suf], t[mid + 1 :], t[suf + 1 : mid]


def describe(fim: dict) -> str:
    """A lock's FIM entry in words: ``0.9 on code`` (the sources that get it), ``0`` when none does."""
    sources = fim.get("sources")
    if sources is None:  # a lock an older luminary wrote: the rate applied to every source
        return str(fim["rate"])
    applied = {name: rate for name, rate in sources.items() if rate > 0}
    if not applied:
        return "0"
    if len(set(applied.values())) == 1:
        return f"{next(iter(applied.values()))} on {', '.join(applied)}"
    return ", ".join(f"{name} {rate}" for name, rate in applied.items())
