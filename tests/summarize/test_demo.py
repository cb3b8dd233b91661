from __future__ import annotations

import json
from pathlib import Path

import pytest

from luminary.core.config import load_config
from luminary.summarize.demo import DemoConfig, DemoTraining, lead, member_pairs, module_pair, run_demo, stdlib_pairs
from luminary.summarize.generate import GenerationSettings
from luminary.summarize.knowledge import WORDNET_ROOT
from luminary.summarize.train import SummarizeTrainConfig, TinyModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MODULE = '''"""Tools for brewing and serving tea.

Tea is brewed in a pot. The pot must be warm.
"""


def brew(leaves):
    """Brew the leaves in hot water until the colour is deep and the smell is strong.

    More detail.
    """


def _hidden():
    """Not public."""
'''


def test_a_module_gives_its_first_paragraph_as_summary_and_the_rest_as_document(tmp_path):
    path = tmp_path / "tea.py"
    path.write_text(MODULE)
    assert module_pair(path, "tea", 2000) is None  # a document under 200 characters is too thin
    long = MODULE.replace("The pot must be warm.", "The pot must be warm. " * 10)
    path.write_text(long)
    pair = module_pair(path, "tea", 2000)
    assert pair["summary"] == "Tools for brewing and serving tea." and "Tools" not in pair["document"]
    assert pair["document"].endswith("until the colour is deep and the smell is strong.")
    assert "Not public" not in pair["document"]
    assert lead("One. Two. Three.", 2) == "One. Two."


MEMBERS = '''"""Tools for brewing and serving tea."""


def brew(leaves):
    """Brew the leaves in hot water until the colour is deep.

    More detail on brewing.
    """


class Pot:
    """A pot that keeps the tea warm for an hour"""

    def pour(self):
        """Pour one cup of tea from the pot."""

    def _clean(self):
        """Not public."""


def serve(cup):
    """Serve the cup with milk and sugar on the side."""


def short():
    """Too short."""
'''


def test_members_give_documents_of_a_few_members_with_their_first_sentences_as_summary(tmp_path):
    path = tmp_path / "tea.py"
    path.write_text(MEMBERS)
    pairs = member_pairs(path, "tea", members_per_document=3, member_chars=60)
    assert [p["id"] for p in pairs] == ["tea#0"] and pairs[0]["group"] == "tea"  # the last group of one is dropped
    pair = pairs[0]
    assert pair["summary"] == ("Brew the leaves in hot water until the colour is deep. "
                               "A pot that keeps the tea warm for an hour. Pour one cup of tea from the pot.")
    assert pair["document"].startswith("Tools for brewing and serving tea. Brew the leaves in hot water until the colour is deep. More A pot")  # cut at 60, never inside the first sentence
    assert all(sentence in pair["document"] for sentence in pair["summary"].split(". "))  # extractive
    assert "Not public" not in pair["document"] and "Too short" not in pair["document"]
    assert [p["id"] for p in member_pairs(path, "tea", members_per_document=2)] == ["tea#0", "tea#1"]


def test_members_corpus_counts_modules_and_keeps_each_module_in_one_group():
    pairs = stdlib_pairs(limit=5, corpus="members", members_per_document=3)
    assert len({p["group"] for p in pairs}) == 5 and len({p["id"] for p in pairs}) == len(pairs)
    assert all(p["id"].startswith(p["group"] + "#") for p in pairs)


def test_stdlib_pairs_come_in_path_order_with_the_summary_outside_the_document():
    pairs = stdlib_pairs(limit=20)
    assert len(pairs) == 20 and len({p["id"] for p in pairs}) == 20
    assert all(p["summary"] not in p["document"] for p in pairs)


def test_every_shipped_example_config_loads():
    configs = {"summarize-tiny.yaml": SummarizeTrainConfig, "summarize-demo.yaml": DemoConfig,
               "summarize-demo-small.yaml": DemoConfig, "summarize-demo-members.yaml": DemoConfig}
    for name, cls in configs.items():
        assert isinstance(load_config(EXAMPLES / name, cls), cls)
    assert sorted(p.name for p in EXAMPLES.glob("summarize-*.yaml")) == sorted(configs)


@pytest.mark.skipif(not (WORDNET_ROOT / "data.noun").is_file(), reason="needs apt-get install wordnet-base")
def test_a_small_demonstration_writes_the_results_layout(tmp_path):
    config = DemoConfig(max_modules=14, max_eval=3, consistency=False, heldout=0.3,
                        train=DemoTraining(tiny=TinyModel(d_model=32, layers=1, heads=2, ffn=64, vocab_size=400,
                                                          max_position=128), max_source=96, max_target=32,
                                           per_device_batch_size=16, n_epochs=1),
                        generation=GenerationSettings(num_beams=2, min_length=2, max_length=12, batch_size=8))
    report = run_demo(config, tmp_path)
    assert list(report["systems"]) == ["lead-1", "aspect-blind", "aspect"]
    assert all(set(m) == {"rouge1", "rouge2", "rougeL"} for m in report["systems"].values())
    assert report["systems"]["lead-1"]["rouge1"] > 0
    rows = [json.loads(line) for line in (tmp_path / "results" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == report["examples"] == 3
    assert all(set(r["summaries"]) == set(report["systems"]) and r["aspect"] in r["id"] for r in rows)
    train_docs = {json.loads(line)["doc_id"] for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()}
    assert not train_docs & {r["id"].split(":")[0] for r in rows}  # held out by module
    assert "| system | R-1 | R-2 | R-L |" in (tmp_path / "results" / "results.md").read_text()


def test_scored_rows_are_the_first_by_id_or_a_seeded_draw_across_documents():
    from luminary.summarize.demo import scored_rows

    rows = [{"id": f"doc{d}:aspect{a}"} for d in range(10) for a in range(10)]
    assert [r["id"] for r in scored_rows(rows[::-1], 12)] == [r["id"] for r in rows[:12]]  # two documents
    drawn = scored_rows(rows[::-1], 12, "sample", seed=0)
    assert drawn == scored_rows(rows, 12, "sample", seed=0)  # the file's order does not matter
    assert drawn != scored_rows(rows, 12, "sample", seed=1) and len(drawn) == 12
    assert [r["id"] for r in drawn] == sorted(r["id"] for r in drawn)
    assert len({r["id"].split(":")[0] for r in drawn}) > 2
    assert scored_rows(rows, None, "sample") == rows and len(scored_rows(rows, 500, "sample")) == 100


def test_lead_k_takes_a_list_of_distinct_positive_counts():
    from luminary.core.errors import LuminaryError

    assert DemoConfig().lead_ks == [1] and DemoConfig(lead_k=[1, 3]).lead_ks == [1, 3]
    for bad in ([], [0], [2, 2], 0):
        with pytest.raises((ValueError, LuminaryError)):
            DemoConfig(lead_k=bad)
