"""The offline demonstration: stdlib ground truth, a tiny BERT trained with MLM through luminary.train."""

from __future__ import annotations

import json

import yaml

from luminary.harvest.stdlib_demo import definitions, exception_bases, relations, train_mlm


def test_ground_truth_comes_from_the_interpreter():
    bases = exception_bases()
    assert ["KeyError", "LookupError"] in bases and ["FileNotFoundError", "OSError"] in bases
    assert all(b != "BaseException" or e in ("Exception", "GeneratorExit", "KeyboardInterrupt", "SystemExit",
                                             "BaseExceptionGroup") for e, b in bases)
    functions, methods = definitions({"m": "def spam(x):\n    pass\n\ndef _hidden():\n    pass\n\n"
                                           "class Egg:\n    def fry(self):\n        pass\n    def __init__(self):\n"
                                           "        pass\n"})
    assert functions == [] and methods == [["Egg", "fry"]]  # "m" is too short a module name; dunders left out
    functions, _ = definitions({"heapq": "def heappush(h, x):\n    pass\n"})
    assert functions == [["heapq", "heappush"]]


def test_a_tiny_bert_trained_with_mlm_is_harvested_over_its_checkpoints(tmp_path, tokenizer, stdlib_texts):
    from luminary.core.runs import read_metrics
    from luminary.harvest.over_training import harvest_checkpoints
    from luminary.harvest.run import HarvestConfig

    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.add_special_tokens({"mask_token": "<mask>"})
    from luminary.harvest.stdlib_demo import module_texts

    rel = relations(tok, module_texts(), k=4)
    assert {"module_function", "class_method"} <= {r["name"] for r in rel["relations"]}
    for r in rel["relations"]:
        assert len(r["seeds"]) >= 2 and all(s in r["truth"] for s in r["seeds"])
        assert all(len(tok.encode(" " + e, add_special_tokens=False)) <= 4 for t in r["truth"] for e in t)
    rel["relations"] = [{"name": "self_returns", "prompt": "<ENT0> returns <ENT1> .",
                         "seeds": [["self", "value"], ["return", "file"], ["def", "None"]],
                         "truth": [["self", "value"], ["file", "None"]]}]
    path = tmp_path / "relations.yaml"
    path.write_text(yaml.safe_dump(rel))
    run = train_mlm(stdlib_texts[:3], tok, tmp_path / "mlm", steps=8, seq_len=32, batch=8, every=4,
                    hidden=32, layers=1)
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert len(losses) == 8 and losses[-1] < losses[0]
    summary = harvest_checkpoints(path, run, cfg=HarvestConfig(n=3, max_ent_tokens=1, precision_at=2))
    assert [c["step"] for c in summary["checkpoints"]] == [4, 8]
    assert json.loads((run / "analysis" / "harvest" / "config.json").read_text())["release"] is False
    assert all(0.0 <= p <= 1.0 for p in summary["relations"]["self_returns"]["precision"])


def test_exception_classes_follow_bases_defined_later_in_the_module():
    from luminary.harvest.stdlib_demo import exception_classes

    source = ("class Late(Early):\n    pass\n\n"
              "class Early(ValueError):\n    '''doc'''\n    code = 1\n    more = 2\n    extra = 3\n\n"
              "class Plain(object):\n    pass\n\n"
              "class _Hidden(Early):\n    pass\n")
    pairs, blocks = exception_classes({"m": source})
    assert pairs == [["Late", "Early"], ["Early", "ValueError"]]  # Late's base is known only once Early is
    # every exception class is training text (a private one too), each cut to its first 4 lines
    assert blocks == ["class Late(Early):\n    pass\n", "class Early(ValueError):\n    '''doc'''\n    code = 1\n"
                      "    more = 2\n", "class _Hidden(Early):\n    pass\n"]


def test_chunks_start_with_bos_and_keep_a_long_enough_tail():
    from luminary.harvest.stdlib_demo import chunks
    from tests.harvest.conftest import WORDS, word_tokenizer

    tok = word_tokenizer()
    ids = tok.encode(" ".join(WORDS), add_special_tokens=False)  # 8 tokens
    bos = tok.bos_token_id
    assert chunks([" ".join(WORDS)], tok, 4, start=[bos]) == [[bos, *ids[0:3]], [bos, *ids[3:6]], [bos, *ids[6:8]]]
    assert chunks([" ".join(WORDS)], tok, 6) == [ids[0:6]]  # a tail of 2 < 6 / 2 tokens is dropped
    assert chunks(["alpha"], tok, 6, start=[bos]) == [[bos, ids[0]]]  # a short text is one example
