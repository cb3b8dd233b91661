r"""Harvest on real data, offline: relations whose ground truth the standard library gives.

Relations (ground truth read from the interpreter, not written by hand):

* ``exception_base``: (exception class, its direct base): the built-in ones via
  ``inspect`` over ``builtins``, and every class the modules define whose base is
  an exception (a built-in one, or one the module defines), via ``ast``;
* ``module_function``: (module, a public function it defines at top level), via ``ast``;
* ``class_method``: (class, a public method it defines), via ``ast``.

Names with ``_`` are left out of the truth (the harvest's filters reject
punctuation in an entity), as are names longer than ``--max-ent-tokens``
tokens. The models, trained here through ``luminary.train`` on the same
standard-library text (``--text modules``: the 36 modules' source;
``--text exceptions``: the focused slice of it that holds the relation, the
first lines of each exception class the modules define): a tiny BERT with
BERT's masked-LM objective (:func:`luminary.train.losses.masked_lm_loss`),
and (``--causal-steps``) a ``crystal-debug`` Crystal model with the causal
one; or (``--causal R``) the checkpoints of any causal release or run. Each is
harvested checkpoint by checkpoint (:func:`harvest_checkpoints`) and scored
precision@n against the truth.

    python -m luminary.harvest.stdlib_demo --out /tmp/demo --steps 300        # one CPU, a few minutes
    python -m luminary.harvest.stdlib_demo --out /tmp/demo --text exceptions --steps 400 --causal-steps 200 \
        --k 2 --n 20 --search beam                                   # docs/harvest.md's table, ~3 min
    python -m luminary.harvest.stdlib_demo --out /tmp/demo --causal releases/tiny
"""

from __future__ import annotations

import argparse
import ast
import builtins
import inspect
import json
import sysconfig
from functools import partial
from pathlib import Path

import yaml

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ("argparse", "base64", "bisect", "calendar", "codecs", "copy", "csv", "difflib", "fractions", "gettext",
           "glob", "gzip", "heapq", "hmac", "json/__init__", "locale", "mimetypes", "operator", "optparse", "platform",
           "pprint", "random", "secrets", "shlex", "shutil", "socket", "statistics", "string", "tarfile", "tempfile",
           "textwrap", "threading", "tokenize", "uuid", "warnings", "zipfile")


def public(name: str) -> bool:
    return name.isidentifier() and "_" not in name and len(name) > 2


def builtin_exceptions() -> set[str]:
    return {name for name, obj in vars(builtins).items() if inspect.isclass(obj) and issubclass(obj, BaseException)}


def exception_bases() -> list[list[str]]:
    """(exception, direct base) of every built-in exception class."""
    pairs = []
    for name, obj in sorted(vars(builtins).items()):
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj is not BaseException:
            base = obj.__bases__[0].__name__
            if public(name) and public(base):
                pairs.append([name, base])
    return pairs


def module_texts(modules=MODULES) -> dict[str, str]:
    return {m.split("/")[0]: (STDLIB / f"{m}.py").read_text(encoding="utf-8", errors="ignore") for m in modules
            if (STDLIB / f"{m}.py").is_file()}


def exception_classes(texts: dict[str, str], lines: int = 4) -> tuple[list[list[str]], list[str]]:
    """(exception class, its first base) of the top-level classes the modules define, and the first
    ``lines`` lines of each such class's source (the focused training text). A class is an exception
    when a base is a built-in exception or an exception class of the same module (to a fixed point)."""
    known = builtin_exceptions()
    pairs, blocks = [], []
    for text in texts.values():
        classes = [node for node in ast.parse(text).body if isinstance(node, ast.ClassDef)]
        found: set[str] = set()
        grew = True
        while grew:
            grew = False
            for node in classes:
                if node.name not in found and any(isinstance(b, ast.Name) and (b.id in known or b.id in found)
                                                  for b in node.bases):
                    found.add(node.name)
                    grew = True
        for node in classes:
            if node.name in found and isinstance(node.bases[0], ast.Name):
                blocks.append("\n".join(ast.get_source_segment(text, node).splitlines()[:lines]) + "\n")
                if public(node.name) and public(node.bases[0].id):
                    pairs.append([node.name, node.bases[0].id])
    return pairs, blocks


def definitions(texts: dict[str, str]) -> tuple[list[list[str]], list[list[str]]]:
    """(module, top-level function) and (class, method) pairs defined in the modules' source."""
    functions, methods = [], []
    for module, text in texts.items():
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and public(node.name) and public(module):
                functions.append([module, node.name])
            if isinstance(node, ast.ClassDef) and public(node.name):
                methods.extend([node.name, item.name] for item in node.body
                               if isinstance(item, ast.FunctionDef) and public(item.name))
    return [list(t) for t in dict.fromkeys(map(tuple, functions))], [list(t) for t in dict.fromkeys(map(tuple, methods))]


def fits(tokenizer, prompts: list[str], entities, k: int) -> bool:
    """Each entity is 1..k tokens as each prompt writes it (glued to "(", or after a space)."""
    from luminary.harvest.scoring import encode_template

    return all(1 <= len(ids) <= k for p in prompts for ids in encode_template(tokenizer, p).encode(tokenizer, entities))


def relations(tokenizer, texts: dict[str, str], k: int = 2, seeds: int = 4) -> dict:
    """The three relations, truth filtered to tuples the tokenizer writes in ≤ k tokens per entity;
    a relation left with fewer than 2 seeds that fit is dropped (a coarse tokenizer may leave none)."""
    functions, methods = definitions(texts)
    exceptions = list(dict.fromkeys(map(tuple, exception_bases() + exception_classes(texts)[0])))
    specs = [
        ("exception_base", "class <ENT0>(<ENT1>):", ["<ENT0> is a subclass of <ENT1> ."], exceptions),
        ("module_function", "from <ENT0> import <ENT1>", ["<ENT1> is defined in the <ENT0> module ."], functions),
        ("class_method", "class <ENT0>:\n    def <ENT1>(self", ["<ENT1> is a method of <ENT0> ."], methods),
    ]
    out = []
    for name, prompt, prompts, truth in specs:
        kept = [list(t) for t in truth if fits(tokenizer, [prompt, *prompts], t, k) and t[0].lower() != t[1].lower()]
        # seeds: evenly spread over the truth, no repeated first entity
        spread, firsts = [], set()
        for t in kept[:: max(1, len(kept) // (seeds * 2))]:
            if t[0] not in firsts and len(spread) < seeds:
                spread.append(t)
                firsts.add(t[0])
        if len(spread) >= 2:
            out.append({"name": name, "prompt": prompt, "prompts": prompts, "seeds": spread, "truth": kept})
    return {"relations": out}


def chunks(texts: list[str], tokenizer, seq_len: int, start: list[int] = ()) -> list[list[int]]:
    """Each text's tokens cut into examples of ``seq_len`` (``start`` first: a causal LM's BOS, which the
    harvest puts before a prompt); a text shorter than that is one example of its own, and a text's tail
    of at most half that is dropped."""
    width = seq_len - len(start)
    out = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        out.extend(list(start) + ids[i:i + width] for i in range(0, max(1, len(ids) - width // 2), width))
    return out


def train_mlm(texts: list[str], tokenizer, out: Path, steps: int, seq_len: int = 64, batch: int = 16,
              every: int | None = None, seed: int = 0, lr: float = 3e-3, hidden: int = 128, layers: int = 2,
              at: list[int] = (), dupe: int = 10) -> Path:
    """A tiny BERT trained with BERT's masking on ``texts``; checkpoints in ``out/checkpoints``
    (every ``every`` steps, a quarter of the run by default, and at the steps ``at``).

    Each example is there ``dupe`` times with a different mask seed, BERT's ``dupe_factor``
    (10 in its ``create_pretraining_data.py``): the masks are a function of the example and
    its seed, so without copies every epoch would mask the same tokens."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from luminary.core.deploy import CheckpointPolicy
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import masked_lm_collate, masked_lm_loss

    examples = [{"input_ids": ids, "seed": copy * 1_000_003 + i}
                for i, ids in enumerate(chunks(texts, tokenizer, seq_len)) for copy in range(dupe)]
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=128))
    collate = partial(masked_lm_collate, mask_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                      pad_id=tokenizer.pad_token_id or 0, special_ids=set(tokenizer.all_special_ids), seed=seed)
    deployer = Deployer(out, seed=seed, precision="fp32", verbose=False)
    trainer = Trainer(deployer, collate, masked_lm_loss, model, OptimizerConfig(lr=lr), tokenizer=tokenizer)
    trainer.fit(examples, batch, max_steps=steps,
                checkpoint=CheckpointPolicy(every=every or max(1, steps // 4), steps=list(at)))
    return out


def train_causal(texts: list[str], tokenizer, out: Path, steps: int, seq_len: int = 64, batch: int = 16,
                 every: int | None = None, seed: int = 0, lr: float = 3e-3, preset: str = "crystal-debug",
                 at: list[int] = ()) -> Path:
    """A tiny Crystal model (``preset``) trained on ``texts`` with the causal LM loss through
    ``luminary.train``; each example starts with BOS; checkpoints as :func:`train_mlm`'s."""
    from luminary.core.deploy import CheckpointPolicy
    from luminary.models import build_model
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    examples = chunks(texts, tokenizer, seq_len, start=[tokenizer.bos_token_id])
    model = build_model(preset, len(tokenizer), seed=seed)
    deployer = Deployer(out, seed=seed, precision="fp32", verbose=False)
    trainer = Trainer(deployer, partial(causal_lm_collate, pad_id=tokenizer.pad_token_id), causal_lm_loss, model,
                      OptimizerConfig(lr=lr), tokenizer=tokenizer)
    trainer.fit(examples, batch, max_steps=steps,
                checkpoint=CheckpointPolicy(every=every or max(1, steps // 4), steps=list(at)))
    return out


def demo_tokenizer(texts: list[str], vocab_size: int = 2048):
    from luminary.data.tokenizer import train_bpe

    tokenizer = train_bpe(texts, vocab_size=vocab_size)
    if tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return tokenizer


def main(argv=None) -> None:
    from luminary.harvest.over_training import harvest_checkpoints
    from luminary.harvest.run import HarvestConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--text", choices=["modules", "exceptions"], default="modules",
                    help="train on the modules' source, or on its exception classes only")
    ap.add_argument("--steps", type=int, default=300, help="MLM training steps (0: no masked model)")
    ap.add_argument("--causal-steps", type=int, default=0, help="train a crystal-debug causal LM too, this many steps")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--k", type=int, default=3, help="--max-ent-tokens for the demo's tokenizer")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--search", choices=["dfs", "beam"], default="dfs",
                    help="beam bounds the work per step; dfs is exact but slow on a weak model")
    ap.add_argument("--precision-at", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--causal", type=Path, help="a causal release or run folder to harvest as well")
    ap.add_argument("--causal-k", type=int, default=3, help="--max-ent-tokens for the causal one's tokenizer")
    args = ap.parse_args(argv)
    texts = module_texts()
    train_texts = list(texts.values()) if args.text == "modules" else exception_classes(texts)[1]
    tokenizer = demo_tokenizer(list(texts.values()), args.vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    rel_path = args.out / "relations.yaml"
    rel_path.write_text(yaml.safe_dump(relations(tokenizer, texts, k=args.k), sort_keys=False))
    cfg = HarvestConfig(n=args.n, precision_at=args.precision_at, seed=args.seed, max_ent_tokens=args.k,
                        search=args.search, causal_boundary=True)  # the end-of-entity step: what the demo needs
    results = {}
    if args.steps:
        mlm = train_mlm(train_texts, tokenizer, args.out / "mlm", args.steps, seed=args.seed)
        results["mlm"] = harvest_checkpoints(rel_path, mlm, args.out / "kg-mlm", cfg, html=True)
    if args.causal_steps:
        crystal = train_causal(train_texts, tokenizer, args.out / "crystal", args.causal_steps, seed=args.seed)
        results["crystal"] = harvest_checkpoints(rel_path, crystal, args.out / "kg-crystal", cfg, html=True)
    if args.causal:
        from luminary.harvest.over_training import tokenizer_of
        from luminary.analysis.over_checkpoints import checkpoints_of
        from luminary.models.loading import load_tokenizer

        causal_tok = load_tokenizer(tokenizer_of(args.causal, checkpoints_of(args.causal)[0].path))
        causal_rel = args.out / "relations-causal.yaml"
        causal_rel.write_text(yaml.safe_dump(relations(causal_tok, texts, k=args.causal_k), sort_keys=False))
        causal_cfg = cfg.model_copy(update={"max_ent_tokens": args.causal_k})
        results["causal"] = harvest_checkpoints(causal_rel, args.causal, args.out / "kg-causal", causal_cfg, html=True)
    for model, summary in results.items():
        for name, rel in summary["relations"].items():
            steps = [c["step"] for c in summary["checkpoints"]]
            print(json.dumps({"model": model, "relation": name, "steps": steps, "tuples": rel["tuples"],
                              f"precision@{summary['precision_at']}": rel.get("precision")}))


if __name__ == "__main__":
    main()
