"""Harvest one relation, or a relation set into an output folder (BertNet, specs/bertnet.md).

Per relation: paraphrase the prompt (:mod:`prompts`), weigh the prompts on the
seeds and their corruptions (:mod:`weights`), search the LM (:mod:`search`),
then rescore every found tuple with every weighted prompt,

    final(tuple) = Σ_p w_p · score(p, tuple)                    (spec step 5)

trying each entity as found and title-cased (all 2^n combinations, BertNet's
``update_ent_tuples``; the best variant is kept, ``case_variants=False``
turns it off), sort, let each word appear in at most 5 tuples, and keep the
top n. The output
folder holds, per relation, ``prompts.json`` (with weights), ``ent_tuples.json``
(tuples with scores), ``triples.csv`` and ``triples.jsonl``, plus ``config.json``
and a sha256 manifest; it appears whole or not at all.

    luminary harvest relations.yaml --model runs/bert-tiny --out kg --n 1000
"""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Literal, Sequence

from pydantic import Field

from luminary.core.config import Config, dump_config
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, atomic_write_json, atomic_write_text, write_jsonl, write_manifest
from luminary.core.locks import locked
from luminary.harvest.filters import cap_word_repeats, prompt_words
from luminary.harvest.precision import precision_at
from luminary.harvest.prompts import Generator, hf_paraphraser, paraphrase_prompts
from luminary.harvest.relations import Relation, RelationSet, load_relations
from luminary.harvest.scoring import (LanguageModel, Template, decode_entity, encode_entity, encode_template,
                                      score_pairs)
from luminary.harvest.search import SearchSpace, SearchStats, allowed_tokens, run_search
from luminary.harvest.weights import negative_tuples, normalise, raw_weight


class HarvestConfig(Config):
    n: int = Field(1000, ge=1, description="tuples to keep per relation")
    search: Literal["dfs", "beam"] = "dfs"
    max_ent_tokens: int = Field(2, ge=1, le=4, description="K: an entity is 1..K subword tokens")
    batch_size: int = Field(64, ge=1)
    max_prompts: int = Field(10, ge=1)
    temperature: float = Field(2.0, gt=0)
    seed: int = 0
    paraphraser: str | None = None
    device: str = "cpu"
    precision_at: int = Field(10, ge=1, description="n of precision@n against a relation's truth")
    case_variants: bool = Field(True, description="rescore each entity as found and title-cased, keep the best")
    causal_boundary: bool = Field(False, description="causal LMs: score the prompt's token after each entity too "
                                                     "(luminary's, off as in BertNet; tells a name from its prefix, "
                                                     "but can make the exact DFS slow: see docs/harvest.md)")


def detect_kind(path: str | Path) -> str:
    """"masked" or "causal" from a model folder's config; anything else is one line."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    from luminary.models.loading import load_config

    config = load_config(path)
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "masked"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if not archs and config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    if not archs and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    what = archs[0] if archs else f"model_type {config.model_type}"
    raise LuminaryError(f"{path}: {what} is neither a masked LM nor a causal LM (harvest needs one of them)")


def load_lm(path: str | Path, batch_size: int = 64, device: str = "cpu", allow_pickle: bool = False,
            tokenizer: str | Path | None = None) -> LanguageModel:
    """The LM of a model folder; its tokenizer from ``tokenizer`` (a folder) when given, else from the folder."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from luminary.models.loading import load_model, load_tokenizer

    kind = detect_kind(path)
    auto = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    model = load_model(path, auto, allow_pickle=allow_pickle).to(device).eval()
    return LanguageModel(model, load_tokenizer(tokenizer or path), kind, batch_size=batch_size, device=device)


def vocab_size(lm: LanguageModel) -> int:
    """The width of the model's output (may exceed the tokenizer's length)."""
    probe = lm.row([lm.pad_id], [(0, None)])
    return int(lm.run([probe])[0][0].numel())


def check_seeds(lm: LanguageModel, relation: Relation, max_ent_tokens: int) -> None:
    """Every seed entity is known to the tokenizer and 1..K tokens in each of the relation's prompts,
    written as each prompt writes its slot (after a space, or glued to the text before it)."""
    templates = [encode_template(lm.tokenizer, p) for p in [relation.prompt, *relation.prompts]]
    for seed in relation.seeds:
        for slot, entity in enumerate(seed):
            for glued in sorted({t.attached.get(slot, False) for t in templates}):
                ids = encode_entity(lm.tokenizer, entity, space=not glued)
                if lm.tokenizer.unk_token_id is not None and lm.tokenizer.unk_token_id in ids:
                    raise LuminaryError(f"relation {relation.name}: seed entity {entity!r} has characters this "
                                        "tokenizer cannot represent (it becomes the unknown token)")
                if not 1 <= len(ids) <= max_ent_tokens:
                    raise LuminaryError(f"relation {relation.name}: seed entity {entity!r} is {len(ids)} tokens for "
                                        f"this tokenizer; entities must be 1 to --max-ent-tokens {max_ent_tokens}")


def weigh_prompts(lm: LanguageModel, prompts: list[str], seeds: list[list[str]], temperature: float = 2.0,
                  seed: int = 0, boundary: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """(raw weight per prompt, normalised weights of the kept prompts), spec step 3."""
    templates = [encode_template(lm.tokenizer, p) for p in prompts]
    negatives = negative_tuples(seeds, seed=seed)
    tuples = [list(s) for s in seeds] + negatives
    scores = score_pairs(lm, [(t, t.encode(lm.tokenizer, e)) for t in templates for e in tuples], boundary=boundary)
    raw = {}
    for i, prompt in enumerate(prompts):
        row = scores[i * len(tuples):(i + 1) * len(tuples)]
        raw[prompt] = raw_weight(row[:len(seeds)], row[len(seeds):], temperature)
    return raw, normalise(raw)


def case_variants(entities: Sequence[str]) -> list[tuple[str, ...]]:
    """Each entity as it is or title-cased, every combination (BertNet's rescoring), duplicates dropped."""
    return list(dict.fromkeys(itertools.product(*[dict.fromkeys((e, e.title())) for e in entities])))


def rescore(lm: LanguageModel, templates: list[Template], weights: list[float], found: list[tuple[str, ...]],
            variants: bool = True, boundary: bool = False) -> dict[tuple[str, ...], float]:
    """final = Σ_p w_p · score(p, tuple) of each found tuple (its best case variant when ``variants``),
    the entities encoded from their text as each prompt writes them; the best score per tuple text."""
    candidates = [case_variants(t) if variants else [tuple(t)] for t in found]
    flat = [v for vs in candidates for v in vs]
    pairs = [(template, template.encode(lm.tokenizer, v)) for v in flat for template in templates]
    scores = score_pairs(lm, pairs, boundary=boundary)
    best: dict[tuple[str, ...], float] = {}
    k = 0
    for vs in candidates:
        finals = []
        for v in vs:
            finals.append((sum(w * scores[k * len(templates) + i] for i, w in enumerate(weights)), v))
            k += 1
        final, pick = max(finals, key=lambda fv: fv[0])  # the first variant (as found) wins a tie
        best[pick] = max(final, best.get(pick, float("-inf")))
    return best


def harvest_relation(lm: LanguageModel, relation: Relation, cfg: HarvestConfig,
                     generator: Generator | None = None) -> dict:
    """Prompts with weights, tuples with scores, and search statistics for one relation."""
    check_seeds(lm, relation, cfg.max_ent_tokens)
    prompts = paraphrase_prompts(relation.prompt, relation.seeds, relation.prompts, generator, cfg.max_prompts)
    boundary = cfg.causal_boundary and lm.kind == "causal"
    raw, weights = weigh_prompts(lm, prompts, relation.seeds, cfg.temperature, cfg.seed, boundary)
    weighted = list(weights)
    templates = {p: encode_template(lm.tokenizer, p) for p in weighted}
    order, spacing = templates[weighted[0]].order, templates[weighted[0]].spacing()
    # the search fills the same ids into every prompt it reads: their slots must be spaced alike
    searched = [p for p in weighted if (lm.kind == "masked" or templates[p].order == order)
                and templates[p].spacing() == spacing]
    total = sum(weights[p] for p in searched)
    space = SearchSpace(lm, [templates[p] for p in searched], [weights[p] / total for p in searched],
                        relation.arity, order, allowed_tokens(lm.tokenizer, vocab_size(lm)),
                        prompt_words(prompts), cfg.max_ent_tokens, boundary)
    stats = SearchStats()
    found = run_search(cfg.search, space, cfg.n, stats)
    names = [tuple(decode_entity(lm.tokenizer, e) for e in ents) for *_v, ents in found]
    best = rescore(lm, [templates[p] for p in weighted], [weights[p] for p in weighted], names,
                   cfg.case_variants, boundary)
    ranked = sorted(([list(k), v] for k, v in best.items()), key=lambda kv: -kv[1])
    tuples = cap_word_repeats([(e, s) for e, s in ranked])[:cfg.n]
    return {
        "relation": relation.name,
        "prompts": [{"prompt": p, "weight": weights.get(p, 0.0), "raw_weight": raw[p]} for p in
                    sorted(prompts, key=lambda p: -raw[p])],
        "tuples": [{"entities": e, "score": s} for e, s in tuples],
        "stats": {"nodes_visited": stats.nodes_visited, "complete": stats.complete, "found": len(found)},
    }


def write_relation(folder: Path, result: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "prompts.json", result["prompts"])
    atomic_write_json(folder / "ent_tuples.json", result["tuples"])
    width = max((len(t["entities"]) for t in result["tuples"]), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["relation", *[f"ent{i}" for i in range(width)], "score"])
    rel = result["relation"]
    for t in result["tuples"]:
        writer.writerow([rel, *t["entities"], f"{t['score']:.6f}"])
    atomic_write_text(folder / "triples.csv", buffer.getvalue())
    write_jsonl(folder / "triples.jsonl", [{"relation": rel, "entities": t["entities"], "score": t["score"]}
                                          for t in result["tuples"]])


def harvest_into(folder: Path, relation_set: RelationSet, lm: LanguageModel, cfg: HarvestConfig,
                 generator: Generator | None = None) -> list[dict]:
    """Harvest every relation into ``folder/<relation>/``; one summary row per relation (with
    ``precision`` = precision@n when the relation has ground truth)."""
    summary = []
    for relation in relation_set.relations:
        result = harvest_relation(lm, relation, cfg, generator)
        write_relation(folder / relation.name, result)
        top = result["tuples"][0] if result["tuples"] else None
        row = {"relation": relation.name, "prompts": sum(p["weight"] > 0 for p in result["prompts"]),
               "tuples": len(result["tuples"]), "top": top["entities"] if top else None,
               "top_score": top["score"] if top else None, **result["stats"]}
        if relation.truth is not None:
            row["precision"] = precision_at([t["entities"] for t in result["tuples"]], relation.truth,
                                            cfg.precision_at, relation.seeds)
        summary.append(row)
    return summary


def harvest(relations: str | Path, model: str | Path, out: str | Path, cfg: HarvestConfig | None = None,
            overwrite: bool = False, allow_pickle: bool = False, html: bool = False) -> list[dict]:
    """Harvest every relation of a relation file from ``model`` into ``out``; one summary row per relation."""
    cfg = cfg or HarvestConfig()
    relation_set = load_relations(relations)
    lm = load_lm(model, cfg.batch_size, cfg.device, allow_pickle)
    for relation in relation_set.relations:
        check_seeds(lm, relation, cfg.max_ent_tokens)
    generator = hf_paraphraser(cfg.paraphraser, seed=cfg.seed, allow_pickle=allow_pickle) if cfg.paraphraser else None
    out = Path(out)
    with locked(out), atomic_dir(out, overwrite=overwrite) as tmp:
        summary = harvest_into(tmp, relation_set, lm, cfg, generator)
        atomic_write_json(tmp / "config.json", {"model": str(model), "kind": lm.kind, "relations": str(relations),
                                                "harvest": dump_config(cfg)})
        atomic_write_json(tmp / "summary.json", summary)
        if html:
            from luminary.harvest.page import write_page

            write_page(tmp, {r.name: r.truth for r in relation_set.relations if r.truth is not None},
                       title=str(out))
        write_manifest(tmp)
    return summary
