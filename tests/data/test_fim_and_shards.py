import numpy as np
import pytest
from tokenizers import Tokenizer

from luminary.data.fim import FimTokens, apply_fim, permute, unpermute
from luminary.data.shards import Shard, build_shard, token_dtype


@pytest.fixture(scope="module")
def codec(tokenizer_dir, tokenizer):
    raw = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    encode = lambda text: raw.encode(text, add_special_tokens=False).ids  # noqa: E731
    decode = lambda ids: raw.decode(np.asarray(ids).tolist(), skip_special_tokens=False)  # noqa: E731
    return FimTokens.from_tokenizer(tokenizer), encode, decode


def test_rearranging_a_fim_document_gives_the_original(codec, stdlib_texts):
    fim, encode, decode = codec
    rng = np.random.default_rng(0)
    for text in stdlib_texts[:10]:
        doc = np.asarray(encode(text[:600]), dtype=np.int64)
        for spm in (0.0, 1.0):
            out = permute(doc, rng, spm, fim, encode, decode, truncate=False)
            prefix, middle, suffix = unpermute(out, fim)
            assert decode(np.concatenate([prefix, middle, suffix])) == decode(doc)


def test_fim_keeps_the_sample_length_and_the_document_order(codec, stdlib_texts):
    fim, encode, decode = codec
    rng = np.random.default_rng(1)
    for text in stdlib_texts[:10]:
        doc = np.asarray(encode(text[:800]), dtype=np.int64)
        out = permute(doc, rng, 0.0, fim, encode, decode)  # PSM, truncated back to length
        assert len(out) == len(doc)
        if out is doc:  # the suffix was too short to cut: left unchanged, as the original does
            continue
        prefix, middle, suffix = unpermute(out, fim)
        rebuilt = decode(np.concatenate([prefix, middle, suffix]))
        original = decode(doc)
        # only the suffix's tail is cut: 3 sentinels plus what re-encoding the cut pieces adds
        assert original.startswith(rebuilt)
        assert len(encode(original[len(rebuilt):])) <= 3 + 4


def test_observed_fim_rate_matches(codec, stdlib_texts):
    fim, encode, decode = codec
    docs = [np.asarray(encode(t[:300]), dtype=np.int64) for t in stdlib_texts[:20]]
    sample = np.concatenate([np.concatenate([d, [fim.eos]]) for d in docs])
    rate, total, done = 0.3, 0, 0
    for i in range(60):
        out, n = apply_fim(sample, np.random.default_rng(i), rate, 0.5, fim, encode, decode, truncate="document")
        assert len(out) == len(sample)
        assert (out == fim.eos).sum() == (sample == fim.eos).sum()
        total += len(docs)
        done += n
    observed = done / total  # 1200 Bernoulli(0.3) draws: sd ≈ 0.013
    assert abs(observed - rate) < 0.045


class _Draws:
    """A generator stand-in that returns the draws a test chooses (FIM or not, split points, SPM)."""

    def __init__(self, uniforms, splits):
        self.uniforms, self.splits = list(uniforms), list(splits)

    def random(self):
        return self.uniforms.pop(0)

    def integers(self, low, high, size):
        lo, hi = self.splits.pop(0)
        return np.asarray([min(lo, high - 1), min(hi, high - 1)])


def test_chunk_mode_permutes_documents_whole_and_cuts_the_chunk_at_its_end(codec, stdlib_texts):
    """CrystalCoder's ``fim``: each document permuted whole (3 sentinels longer, or more), the
    concatenation cut at the sample's end; written out by hand from its definition."""
    fim, encode, decode = codec
    docs = [np.asarray(encode(t[:200]), dtype=np.int64) for t in stdlib_texts[:3]]
    sample = np.concatenate([np.concatenate([d, [fim.eos]]) for d in docs])
    # document 0 FIM'd as PSM at (5, 40); document 1 not; document 2 as SPM at (0, 10)
    out, done = apply_fim(sample, _Draws([0.1, 0.9, 0.95, 0.1, 0.1], [(5, 40), (0, 10)]), 0.5, 0.5, fim,
                          encode, decode, truncate="chunk")
    t0, t2 = decode(docs[0]), decode(docs[2])
    psm = [fim.prefix, *encode(t0[:5]), fim.suffix, *encode(t0[40:]), fim.middle, *encode(t0[5:40])]
    spm = [fim.prefix, fim.suffix, *encode(t2[10:]), fim.middle, *encode(t2[:0]), *encode(t2[0:10])]
    expected = np.asarray([*psm, fim.eos, *docs[1], fim.eos, *spm, fim.eos])[: len(sample)]
    assert done == 2 and len(out) == len(sample)
    np.testing.assert_array_equal(out, expected)
    assert fim.middle in out[: len(psm)]  # the first document keeps all of its parts
    # shorter than the window (a document that re-encodes shorter): padded at the chunk's end
    short = np.asarray([*docs[1], fim.eos])
    out, _ = apply_fim(short, _Draws([0.9], []), 0.5, 0.5, fim, encode, decode, truncate="chunk")
    np.testing.assert_array_equal(out, short)


def test_document_mode_leaves_a_document_unchanged_when_its_suffix_is_too_short(codec, stdlib_texts):
    fim, encode, decode = codec
    doc = np.asarray(encode(stdlib_texts[0][:300]), dtype=np.int64)
    n = len(decode(doc))
    # split at the very end: the suffix is empty and cannot absorb the 3 sentinels
    out = permute(doc, _Draws([0.1], [(n - 1, n)]), 0.0, fim, encode, decode, truncate=True)
    assert out is doc
    out, done = apply_fim(np.asarray([*doc, fim.eos]), _Draws([0.1, 0.1], [(n - 1, n)]), 1.0, 0.0, fim,
                          encode, decode, truncate="document")
    assert done == 0 and np.array_equal(out, [*doc, fim.eos])
    # a long suffix is cut back to the document's length instead
    out = permute(doc, _Draws([0.9], [(3, 10)]), 0.0, fim, encode, decode, truncate=True)
    assert len(out) == len(doc) and out[0] == fim.prefix


def test_shard_round_trip_and_reuse(tmp_path, tokenizer_dir, tokenizer, stdlib_texts):
    texts = stdlib_texts[:8]
    shard = build_shard(tmp_path / "code", "code", texts, "hash1", tokenizer_dir, tokenizer.eos_token_id,
                        len(tokenizer), workers=2, chunk=3)
    assert shard.tokens.dtype == np.uint16
    assert shard.meta["n_docs"] == 8
    for i, text in enumerate(texts):
        doc = shard.document(i)
        assert doc[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(doc[:-1].tolist()) == text
    stamp = (tmp_path / "code" / "tokens.bin").stat().st_mtime_ns
    again = build_shard(tmp_path / "code", "code", texts, "hash1", tokenizer_dir, tokenizer.eos_token_id,
                        len(tokenizer))
    assert (tmp_path / "code" / "tokens.bin").stat().st_mtime_ns == stamp  # not tokenized again
    assert np.array_equal(np.asarray(again.tokens), np.asarray(shard.tokens))
    changed = build_shard(tmp_path / "code", "code", texts[:4], "hash2", tokenizer_dir, tokenizer.eos_token_id,
                          len(tokenizer))
    assert changed.meta["n_docs"] == 4
    assert Shard.open(tmp_path / "code").meta["source_sha256"] == "hash2"


def test_token_dtype():
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
