"""E: alignment by greedy matching of contextual token embeddings.

CTC's embedding aligner (ctc_score ``BERTAligner``, built on BERTScore, Zhang
et al. 2020): embed input a and context b with one encoder layer, L2
normalise every token vector, drop the special tokens ([CLS], [SEP], <s>, …)
and score each token of a by its best match in b:

    s_i = max_j cos(h_i, c_j)

Options users of BERTScore ask for: idf weights for aggregation
(w = log((M + 1) / (df + 1)) over M documents, bert-score's formula), and
baseline rescaling s' = (s − b) / (1 − b) with a baseline b measured on
unrelated pairs of the user's own texts (:func:`estimate_baseline`).

Which layer: ctc_score's E runs bert_score with its default layer per model
(``E_MODEL_CONFIGS``: bert-base-uncased → 9, roberta-large → 17) except
roberta-large-mnli, set to 9. :data:`E_PRESETS` holds these; a folder whose
config matches one (model type, layer count, hidden size; an MNLI head tells
roberta-large-mnli from roberta-large) gets its layer, ``preset=`` names one
(and checks the folder is of that family), ``layer=`` overrides both, and
any other encoder uses its last layer.

``match_specials=True`` lets input tokens also match the context's special
tokens, which is what bert-score's precision does; with it the token scores
equal bert-score's greedy-matching components (``benchmarks/ctc_vs_bertscore.py``).

Many pairs at once: the distinct texts of a chunk of pairs are tokenized
together, sorted by length and encoded in batches filled up to a token budget,
then pairs are matched in padded batches (one ``bmm``).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.base import Alignment
from luminary.ctc.aligners.batching import default_device, length_batches, pad, token_budget


@dataclass(frozen=True)
class EncoderPreset:
    """The layer CTC's E uses for an encoder family, and how to recognise a folder of it."""

    model_type: str
    num_hidden_layers: int
    hidden_size: int
    layer: int
    mnli: bool  # an entailment head (3 labels) tells roberta-large-mnli apart
    source: str
    bert_score_model: str  # the model_type ctc_score gives bert_score: names its baseline file (see ctc.rescale)


# name -> preset; ctc_score configs.py E_MODEL_CONFIGS, bert_score's model2layers for the defaults
E_PRESETS: dict[str, EncoderPreset] = {
    "bert-base": EncoderPreset("bert", 12, 768, 9, False, "ctc_score E-bert: bert-base-uncased, bert_score's layer 9",
                               "bert-base-uncased"),
    "roberta-large": EncoderPreset("roberta", 24, 1024, 17, False,
                                   "ctc_score E-roberta: roberta-large, bert_score's layer 17", "roberta-large"),
    "roberta-large-mnli": EncoderPreset("roberta", 24, 1024, 9, True,
                                        "ctc_score E-roberta-mnli: roberta-large-mnli, num_layers=9",
                                        "roberta-large-mnli"),
}


def is_mnli(config: Any) -> bool:
    """A 3-way entailment classifier's config (roberta-large-mnli's id2label: CONTRADICTION, NEUTRAL, ENTAILMENT)."""
    labels = {str(v).lower() for v in (getattr(config, "id2label", None) or {}).values()}
    return "entailment" in labels and "contradiction" in labels


def fits_preset(config: Any, preset: EncoderPreset) -> bool:
    return (getattr(config, "model_type", None), getattr(config, "num_hidden_layers", None),
            getattr(config, "hidden_size", None)) == (preset.model_type, preset.num_hidden_layers, preset.hidden_size)


def match_preset(config: Any) -> str | None:
    """The preset a config is of, or None."""
    for name, preset in E_PRESETS.items():
        if fits_preset(config, preset) and preset.mnli == is_mnli(config):
            return name
    return None


def pick_layer(config: Any, layer: int | None = None, preset: str | None = None) -> int:
    """``layer`` if given; else the named or matching preset's layer; else the encoder's last layer."""
    if preset is not None:
        if preset not in E_PRESETS:
            raise LuminaryError(f"unknown E preset {preset!r}: choose one of {', '.join(E_PRESETS)}")
        want = E_PRESETS[preset]
        if not fits_preset(config, want):
            found = (getattr(config, "model_type", None), getattr(config, "num_hidden_layers", None),
                     getattr(config, "hidden_size", None))
            raise LuminaryError(f"preset {preset} is for a {want.model_type} encoder with {want.num_hidden_layers} "
                                f"layers of size {want.hidden_size}; this folder is {found[0]} with {found[1]} "
                                f"layers of size {found[2]} (give layer= instead)")
        if layer is not None and layer != want.layer:
            raise LuminaryError(f"preset {preset} means layer {want.layer}; give layer={layer} or the preset, not both")
        return want.layer
    if layer is not None:
        return layer
    matched = match_preset(config)
    return E_PRESETS[matched].layer if matched else config.num_hidden_layers


def keep_layers(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """Cut an encoder to its first ``layer`` blocks (its output is then that layer's hidden state)."""
    total = model.config.num_hidden_layers
    if not 0 <= layer <= total:
        raise LuminaryError(f"layer must be between 0 and {total} for this encoder, got {layer}")
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == total:
                setattr(module, name, torch.nn.ModuleList(list(child)[:layer]))
                return model
    raise LuminaryError(f"cannot find the {total} layers of {type(model).__name__} to keep {layer} of them")


def idf_weights(texts: Sequence[str], tokenizer) -> defaultdict[int, float]:
    """Inverse document frequency of each token id over M texts: log((M + 1) / (df + 1)) (bert-score).

    An id seen in no text gets log(M + 1).
    """
    counts: Counter[int] = Counter()
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        counts.update(set(ids))
    m = len(texts)
    weights = defaultdict(partial(float, math.log(m + 1)))
    weights.update({token: math.log((m + 1) / (df + 1)) for token, df in counts.items()})
    return weights


class EmbeddingAligner:
    """align(a → b) = per token of a, its greatest cosine with a token of b.

    Args:
        model: a Hugging Face encoder folder (``save_pretrained``, with its tokenizer).
        layer: which hidden layer to match (default: a matching preset's, else the last).
        preset: a name in :data:`E_PRESETS` (bert-base, roberta-large, roberta-large-mnli): CTC's layer.
        idf: token id → weight for aggregation, from :func:`idf_weights`.
        baseline: rescale each token score as (s − b) / (1 − b) (luminary's option; ctc_score rescales
            the final preservation score instead, see :mod:`luminary.ctc.rescale`).
        match_specials: let tokens also match the context's special tokens (bert-score's precision).
        max_tokens: token budget of one encoder batch (default: :func:`token_budget`); pairs are
            processed ``chunk`` at a time.
    """

    kind = "E"

    def __init__(
        self,
        model: str | Path,
        layer: int | None = None,
        device: str | None = None,
        preset: str | None = None,
        idf: Mapping[int, float] | None = None,
        baseline: float | None = None,
        match_specials: bool = False,
        max_length: int | None = None,
        max_tokens: int | None = None,
        chunk: int = 4096,
        allow_pickle: bool = False,
    ):
        from transformers import AutoModel

        from luminary.models.loading import load_model, load_tokenizer

        if baseline is not None and not baseline < 1:
            raise LuminaryError(f"baseline must be below 1, got {baseline}")
        encoder = load_model(model, AutoModel, allow_pickle=allow_pickle)
        self.tokenizer = load_tokenizer(model)
        self.layer = pick_layer(encoder.config, layer, preset)
        family = preset or match_preset(encoder.config)
        self.baseline_model = E_PRESETS[family].bert_score_model if family else None  # see ctc.rescale
        self.device = default_device(device)
        self.model = keep_layers(encoder, self.layer).to(self.device).eval()
        limit = getattr(encoder.config, "max_position_embeddings", 512)
        self.max_length = min(max_length or limit, limit, self.tokenizer.model_max_length)
        self.idf, self.baseline, self.match_specials = idf, baseline, match_specials
        self.max_tokens, self.chunk = token_budget(encoder.config, self.device, max_tokens), chunk
        self._strings: dict[int, str] = {}

    # --- encoding ----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """(ids, special-token mask) per text, truncated to ``max_length``."""
        enc = self.tokenizer([t.strip() for t in texts], truncation=True, max_length=self.max_length,
                             return_special_tokens_mask=True)
        return list(zip(enc["input_ids"], enc["special_tokens_mask"]))

    @torch.inference_mode()
    def embed(self, ids: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """L2-normalised hidden states of ``layer``, one (T_i, d) tensor per id list."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        pad_id = self.tokenizer.pad_token_id or 0
        for batch in length_batches([len(r) for r in ids], self.max_tokens):
            input_ids, mask = pad([ids[i] for i in batch], pad_id)
            hidden = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))[0]
            hidden = F.normalize(hidden.float(), dim=-1)  # (B, T, d)
            for row, i in enumerate(batch):
                out[i] = hidden[row, : len(ids[i])]
        return out

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        for i in ids:
            if i not in self._strings:
                self._strings[i] = self.tokenizer.decode([i])
        return [self._strings[i] for i in ids]

    # --- matching ----------------------------------------------------------------
    @staticmethod
    def token_scores(inputs: Sequence[torch.Tensor], contexts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """max_j cos(h_i, c_j) for every row i of each input over the rows j of its context (0 if none)."""
        scores = []
        for start in range(0, len(inputs), 64):
            a = torch.nn.utils.rnn.pad_sequence(list(inputs[start : start + 64]), batch_first=True)
            c = torch.nn.utils.rnn.pad_sequence(list(contexts[start : start + 64]), batch_first=True)
            lengths = torch.tensor([len(x) for x in contexts[start : start + 64]], device=c.device)
            if c.shape[1] == 0:  # no context has a token to match
                best = a.new_zeros(a.shape[:2])
            else:
                sim = torch.bmm(a, c.transpose(1, 2))  # (B, Ta, Tc)
                padding = torch.arange(c.shape[1], device=c.device)[None, :] >= lengths[:, None]  # (B, Tc)
                best = sim.masked_fill(padding[:, None, :], float("-inf")).max(dim=2).values
                best = best.masked_fill(lengths[:, None] == 0, 0.0)  # an empty context
            scores.extend(best[b, : len(x)] for b, x in enumerate(inputs[start : start + 64]))
        return scores

    def align(self, inputs: Sequence[str], contexts: Sequence[str]) -> list[Alignment]:
        if len(inputs) != len(contexts):
            raise LuminaryError(f"{len(inputs)} inputs but {len(contexts)} contexts")
        out: list[Alignment] = []
        for start in range(0, len(inputs), self.chunk):
            out.extend(self._align_chunk(inputs[start : start + self.chunk], contexts[start : start + self.chunk]))
        return out

    def _align_chunk(self, inputs: Sequence[str], contexts: Sequence[str]) -> list[Alignment]:
        texts = list(dict.fromkeys([*inputs, *contexts]))
        index = {t: i for i, t in enumerate(texts)}
        tokens = self.tokenize(texts)
        embeddings = self.embed([ids for ids, _ in tokens])
        plain = [without_specials(emb, special) for emb, (_, special) in zip(embeddings, tokens)]
        a = [plain[index[t]] for t in inputs]
        c = [(embeddings if self.match_specials else plain)[index[t]] for t in contexts]
        result = []
        for text, scores in zip(inputs, self.token_scores(a, c)):
            ids, special = tokens[index[text]]
            ids = [i for i, s in zip(ids, special) if not s]
            if self.baseline is not None:
                scores = (scores - self.baseline) / (1 - self.baseline)
            weights = [float(self.idf[i]) for i in ids] if self.idf is not None else None
            result.append(Alignment(self.token_strings(ids), scores.tolist(), weights))
        return result


def without_specials(embedding: torch.Tensor, special: Sequence[int]) -> torch.Tensor:
    """The rows of non-special tokens (a view when they are contiguous, as [CLS] … [SEP] leaves them)."""
    kept = [i for i, s in enumerate(special) if not s]
    if kept and kept[-1] - kept[0] + 1 == len(kept):
        return embedding[kept[0] : kept[-1] + 1]
    return embedding[torch.as_tensor(kept, dtype=torch.long, device=embedding.device)]


def estimate_baseline(aligner: EmbeddingAligner, texts: Sequence[str], pairs: int = 1000, seed: int = 0) -> float:
    """Mean token score of unrelated pairs (text i against a random text j ≠ i): BERTScore's baseline b."""
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        raise LuminaryError("a baseline needs at least two non-empty texts")
    rng = random.Random(seed)
    inputs, contexts = [], []
    for _ in range(pairs):
        i, j = rng.sample(range(len(texts)), 2)
        inputs.append(texts[i])
        contexts.append(texts[j])
    saved, aligner.baseline = aligner.baseline, None
    try:
        scores = [s for a in aligner.align(inputs, contexts) for s in a.scores]
    finally:
        aligner.baseline = saved
    return float(sum(scores) / max(len(scores), 1))
