"""Knowledge grows over training: a tiny Crystal model trained through luminary.train on the standard
library's exception classes, harvested at its first and last checkpoint, scored against ground truth
that ``ast``/``inspect`` read from the interpreter (docs/harvest.md, "Demonstration")."""

from __future__ import annotations

import json

import pytest
import yaml

from luminary.harvest.stdlib_demo import demo_tokenizer, exception_classes, module_texts, relations, train_causal

STEPS, FIRST = 120, 10


@pytest.fixture(scope="session")
def knowledge_over_training(tmp_path_factory):
    from luminary.harvest.over_training import harvest_checkpoints
    from luminary.harvest.run import HarvestConfig

    root = tmp_path_factory.mktemp("stdlib-knowledge")
    texts = module_texts()
    _pairs, blocks = exception_classes(texts)
    tokenizer = demo_tokenizer(blocks, vocab_size=1024)
    rel = relations(tokenizer, texts, k=2)
    rel["relations"] = [r for r in rel["relations"] if r["name"] == "exception_base"]
    path = root / "relations.yaml"
    path.write_text(yaml.safe_dump(rel))
    run = train_causal(blocks, tokenizer, root / "crystal", STEPS, seq_len=48, every=STEPS, at=[FIRST], seed=0)
    summary = harvest_checkpoints(path, run, root / "kg", HarvestConfig(n=20, max_ent_tokens=2, precision_at=10,
                                                                           causal_boundary=True))
    return rel["relations"][0], summary, root / "kg"


def test_precision_at_the_final_checkpoint_beats_the_first(knowledge_over_training):
    relation, summary, kg = knowledge_over_training
    assert [c["step"] for c in summary["checkpoints"]] == [FIRST, STEPS]
    precision = summary["relations"]["exception_base"]["precision"]
    print(json.dumps({"precision@10": precision, "truth": len(relation["truth"])}))
    assert precision[-1] > precision[0]
    # the hits are tuples of the truth, recounted from the files the harvest wrote
    truth = {tuple(e.lower() for e in t) for t in relation["truth"]}
    seeds = {tuple(e.lower() for e in t) for t in relation["seeds"]}
    tuples = json.loads((kg / "ckpt_001" / "exception_base" / "ent_tuples.json").read_text())
    ranked = [tuple(e.lower() for e in t["entities"]) for t in tuples]
    ranked = [t for t in ranked if t not in seeds][:10]
    assert sum(t in truth for t in ranked) / 10 == precision[-1]
