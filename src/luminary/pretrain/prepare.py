"""From a recipe to a Mixture: sources, tokenizer, shards, and the lock file.

``recipe.lock.json`` records what the run is made of: every source with its
content sha256 and token counts, the tokenizer's sha256, and the phase table
(steps, samples and tokens per source, FIM, schedule). A run that is resumed
with changed sources or tokenizer is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, atomic_write_json
from luminary.core.progress import info
from luminary.data.fim import FimTokens
from luminary.data.mixture import Mixture, Phase, SourceSamples, blend_drift
from luminary.pretrain.recipe import Recipe, phase_steps
from luminary.data.shards import Shard, build_shard, tokenizer_hash
from luminary.data.sources import load_documents
from luminary.data.tokenizer import save_tokenizer, train_bpe
from luminary.models.presets import build_config

LOCK = "recipe.lock.json"


@dataclass
class PreparedData:
    tokenizer: Any  # PreTrainedTokenizerFast
    tokenizer_dir: Path
    shards: list[Shard]
    mixture: Mixture
    lock: dict[str, Any]


def _tokenizer(recipe: Recipe, run_dir: Path, documents: dict[str, list[str]]) -> Path:
    from transformers import AutoTokenizer

    if recipe.tokenizer.path:
        folder = Path(recipe.tokenizer.path)
        if not (folder / "tokenizer.json").is_file():
            raise LuminaryError(f"tokenizer.path: {folder} has no tokenizer.json")
        return folder
    folder = run_dir / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return folder
    rng = np.random.default_rng(recipe.deploy.seed)
    sample: list[str] = []
    for name in sorted(documents):
        docs = documents[name]
        take = rng.choice(len(docs), size=min(recipe.tokenizer.sample_docs, len(docs)), replace=False)
        sample.extend(docs[i] for i in sorted(take))
    info(f"training a {recipe.tokenizer.vocab_size}-token byte-level BPE on {len(sample)} documents")
    tok = train_bpe(sample, recipe.tokenizer.vocab_size, recipe.tokenizer.min_frequency)
    context = getattr(build_config(recipe.model.preset, recipe.model.vocab_size or len(tok),
                                   **recipe.model.overrides), "max_position_embeddings", None)
    with atomic_dir(folder, overwrite=True) as tmp:
        save_tokenizer(tok, tmp, context)
    AutoTokenizer.from_pretrained(str(folder))  # loads back
    return folder


def prepare(recipe: Recipe, run_dir: Path, workers: int | None = None) -> PreparedData:
    """Load sources, train or take the tokenizer, build shards, and the mixture."""
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    documents, hashes = {}, {}
    for name, source in recipe.sources.items():
        documents[name], hashes[name] = load_documents(name, source)
    tok_dir = _tokenizer(recipe, run_dir, documents)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    if tokenizer.eos_token_id is None:
        raise LuminaryError(f"tokenizer: {tok_dir} has no EOS token")
    fim_needed = any(rate > 0 for p in recipe.phases for rate in p.fim.rates(recipe.sources).values())
    fim_tokens = None
    if fim_needed:
        try:
            fim_tokens = FimTokens.from_tokenizer(tokenizer)
        except ValueError:
            raise LuminaryError(f"tokenizer: {tok_dir} lacks the FIM tokens that phases with fim.rate > 0 need") from None
    data_dir = Path(recipe.data_dir) if recipe.data_dir else run_dir / "data"
    shards = [
        build_shard(data_dir / name, name, documents[name], hashes[name], tok_dir, tokenizer.eos_token_id,
                    len(tokenizer), workers)
        for name in recipe.sources
    ]
    names = list(recipe.sources)
    seq_len = recipe.train.seq_len
    try:
        samples = [SourceSamples(s, seq_len, recipe.validation.samples_per_source, recipe.deploy.seed) for s in shards]
    except ValueError as exc:
        raise LuminaryError(f"sources: {exc}") from None
    phases, start = [], 0
    for cfg, steps in zip(recipe.phases, phase_steps(recipe)):
        weights = tuple(float(cfg.weights.get(n, 0.0)) for n in names)
        rates = cfg.fim.rates(recipe.sources)
        phases.append(Phase(cfg.name, start, steps, weights, cfg.fim.rate, cfg.fim.spm,
                            tuple(rates[n] for n in names), cfg.fim.truncate))
        start += steps
    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    mixture = Mixture(
        samples, phases, recipe.train.global_batch, recipe.deploy.seed, fim_tokens,
        encode=lambda text: raw.encode(text, add_special_tokens=False).ids,
        decode=lambda ids: raw.decode(np.asarray(ids).tolist(), skip_special_tokens=False), blend=recipe.blend,
    )
    lock = build_lock(recipe, mixture, shards, hashes, tok_dir, len(tokenizer))
    return PreparedData(tokenizer, tok_dir, shards, mixture, lock)


def build_lock(recipe: Recipe, mixture: Mixture, shards: list[Shard], hashes: dict[str, str], tok_dir: Path,
               vocab: int) -> dict[str, Any]:
    seq_len = recipe.train.seq_len
    phases = []
    for p, phase in enumerate(mixture.phases):
        counts = mixture.phase_counts(p)
        total = float(sum(phase.weights))
        phases.append({
            "name": phase.name,
            "start_step": phase.start_step,
            "steps": phase.steps,
            "samples": phase.steps * mixture.global_batch,
            "weights": {n: w / total for n, w in zip(mixture.names, phase.weights)},
            "samples_per_source": dict(zip(mixture.names, counts.tolist())),
            "tokens_per_source": {n: int(c) * seq_len for n, c in zip(mixture.names, counts)},
            "blend_drift": round(blend_drift(np.asarray(phase.weights), mixture.blend(p)[0]), 4),
            "fim": {"rate": phase.fim_rate, "spm": phase.fim_spm, "truncate": phase.fim_truncate,
                    "sources": dict(zip(mixture.names, (phase.fim_rate_of(d) for d in range(len(mixture.names)))))},
            "schedule": recipe.phases[p].schedule.model_dump(mode="json"),
        })
    return {
        "recipe": recipe.name,
        "seed": recipe.deploy.seed,
        "global_batch": recipe.train.global_batch,
        "seq_len": seq_len,
        "total_steps": mixture.total_steps,
        "blend": mixture.blend_rule,
        "sources": {
            s.name: {
                "type": recipe.sources[s.name].type,
                "sha256": hashes[s.name],
                "tokens_sha256": s.meta["tokens_sha256"],
                "documents": s.meta["n_docs"],
                "tokens": s.n_tokens,
                "train_samples": mix.n_train,
                "validation_samples": len(mix.validation_windows),
            }
            for s, mix in zip(shards, mixture.sources)
        },
        "tokenizer": {"path": str(tok_dir), "sha256": tokenizer_hash(tok_dir), "vocab_size": vocab},
        "phases": phases,
    }


def check_lock(run_dir: Path, lock: dict[str, Any]) -> None:
    """Refuse to resume a run whose data changed; write the lock for a new run."""
    path = Path(run_dir) / LOCK
    if path.is_file():
        old = json.loads(path.read_text())
        for name, entry in lock["sources"].items():
            before = old.get("sources", {}).get(name, {}).get("sha256")
            if before is not None and before != entry["sha256"]:
                raise LuminaryError(f"sources.{name}: content changed since this run started "
                                    f"(sha256 {before[:12]}… now {entry['sha256'][:12]}…)")
        if old.get("tokenizer", {}).get("sha256") not in (None, lock["tokenizer"]["sha256"]):
            raise LuminaryError("tokenizer: changed since this run started")
        if old.get("phases") != lock["phases"]:
            raise LuminaryError(f"{path}: the phase table changed since this run started")
    atomic_write_json(path, lock)
