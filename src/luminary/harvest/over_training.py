"""Knowledge over training: harvest every checkpoint of a release or a run (specs/bertnet.md, "going beyond").

BertNet calls a harvested graph a vehicle to interpret its source LM; over the
checkpoints of one pretraining run the graphs show what the model learned
when. Each checkpoint is harvested with the same relations and settings into
``OUT/ckpt_NNN/<relation>/`` (the files of a one-model harvest), and
``OUT/summary.json`` holds, per relation, the tuples each checkpoint yields
and, where the relation has ground truth, precision@n per checkpoint.
``OUT`` defaults to ``FOLDER/analysis/harvest`` (a release keeps derived
analyses there, outside its manifest), which is where ``luminary report``
looks for it.

    luminary harvest relations.yaml --release releases/tiny --n 100 --html
    luminary harvest relations.yaml --release runs/tiny --out kg-over-training
"""

from __future__ import annotations

from pathlib import Path

from luminary.analysis.over_checkpoints import checkpoints_of, is_release
from luminary.core.config import dump_config
from luminary.core.io import atomic_dir, atomic_write_json, write_manifest
from luminary.core.locks import locked
from luminary.harvest.prompts import hf_paraphraser
from luminary.harvest.relations import load_relations
from luminary.harvest.run import HarvestConfig, check_seeds, harvest_into, load_lm

SUMMARY = "summary.json"


def default_out(folder: str | Path) -> Path:
    return Path(folder) / "analysis" / "harvest"


def tokenizer_of(folder: Path, checkpoint: Path) -> Path:
    """A checkpoint's own tokenizer, else the release's (``tokenizer/``)."""
    return checkpoint if (checkpoint / "tokenizer.json").is_file() else folder / "tokenizer"


def over_checkpoints(relation_names: list[str], has_truth: dict[str, bool], checkpoints: list[dict],
                     rows: list[list[dict]], precision_n: int) -> dict:
    """The summary over checkpoints from each checkpoint's summary rows (one list per checkpoint)."""
    relations = {}
    for name in relation_names:
        per = [next(r for r in ckpt_rows if r["relation"] == name) for ckpt_rows in rows]
        entry = {"tuples": [r["tuples"] for r in per], "top": [r["top"] for r in per]}
        if has_truth[name]:
            entry["precision"] = [r["precision"]["precision"] for r in per]
            entry["hits"] = [r["precision"]["hits"] for r in per]
        relations[name] = entry
    return {"kind": "checkpoints", "precision_at": precision_n, "checkpoints": checkpoints, "relations": relations}


def harvest_checkpoints(relations: str | Path, folder: str | Path, out: str | Path | None = None,
                        cfg: HarvestConfig | None = None, overwrite: bool = False, allow_pickle: bool = False,
                        html: bool = False) -> dict:
    """Harvest every checkpoint of a release or run folder into ``out``; returns the summary over checkpoints."""
    cfg = cfg or HarvestConfig()
    folder = Path(folder)
    refs = checkpoints_of(folder)
    relation_set = load_relations(relations)
    out = Path(out) if out is not None else default_out(folder)
    generator = hf_paraphraser(cfg.paraphraser, seed=cfg.seed, allow_pickle=allow_pickle) if cfg.paraphraser else None
    checkpoints, rows = [], []
    with locked(out), atomic_dir(out, overwrite=overwrite) as tmp:
        for ref in refs:
            name = f"ckpt_{ref.index:03d}"
            lm = load_lm(ref.path, cfg.batch_size, cfg.device, allow_pickle, tokenizer_of(folder, ref.path))
            for relation in relation_set.relations:
                check_seeds(lm, relation, cfg.max_ent_tokens)
            (tmp / name).mkdir()
            rows.append(harvest_into(tmp / name, relation_set, lm, cfg, generator))
            atomic_write_json(tmp / name / SUMMARY, rows[-1])
            checkpoints.append({"name": name, "step": ref.step, "path": str(ref.path)})
            del lm
        summary = over_checkpoints([r.name for r in relation_set.relations],
                                   {r.name: r.truth is not None for r in relation_set.relations},
                                   checkpoints, rows, cfg.precision_at)
        atomic_write_json(tmp / SUMMARY, summary)
        atomic_write_json(tmp / "config.json", {"source": str(folder), "release": is_release(folder),
                                                "relations": str(relations), "harvest": dump_config(cfg)})
        if html:
            from luminary.harvest.page import write_page

            write_page(tmp, {r.name: r.truth for r in relation_set.relations if r.truth is not None},
                       title=str(out))
        write_manifest(tmp)
    return summary
