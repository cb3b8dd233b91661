"""Relation sets: a prompt with entity slots ``<ENT0>``, ``<ENT1>``, ... and seed tuples.

Two file formats are read:

* luminary's own (YAML or JSON)::

      relations:
        - name: capable_of
          prompt: "<ENT0> can <ENT1> ."
          seeds: [["bird", "fly"], ["fish", "swim"]]
          prompts: ["<ENT0> is able to <ENT1> ."]   # optional paraphrases of one's own
          truth: [["bird", "fly"], ["cow", "moo"]]  # optional ground truth -> precision@n
                                                    # (or a file: truth: truth.tsv, relative to this one)

* BertNet's ``relation_info.json``: ``{rel: {"init_prompts": [...],
  "seed_ent_tuples": [[...], ...], "prompts": [...]}}`` (the first init prompt is
  the prompt, the others and ``prompts`` are paraphrases).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from luminary.core.config import Config, read_yaml, validate
from luminary.core.errors import LuminaryError

SLOT = re.compile(r"<ENT(\d+)>")


def slots(prompt: str) -> list[int]:
    """The slot indices of ``prompt`` in order of appearance."""
    return [int(m) for m in SLOT.findall(prompt)]


def check_prompt(prompt: str, arity: int) -> str | None:
    """Why ``prompt`` does not fit tuples of ``arity`` entities (each slot exactly once), or None."""
    found = slots(prompt)
    if sorted(found) != list(range(arity)):
        want = ", ".join(f"<ENT{i}>" for i in range(arity))
        return f"prompt {prompt!r} has slots {found}, but the seed tuples have {arity} entities ({want}, each once)"
    return None


class Relation(Config):
    name: str = Field(min_length=1)
    prompt: str
    seeds: list[list[str]] = Field(min_length=2)
    prompts: list[str] = []
    truth: list[list[str]] | str | None = None  # tuples, or a file of them (resolved by load_relations)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value.startswith("."):
            raise ValueError("a relation name is letters, digits, '_', '-' or '.' (it names a folder)")
        return value

    @model_validator(mode="after")
    def _arity(self) -> "Relation":
        arities = {len(seed) for seed in self.seeds}
        if len(arities) != 1 or 0 in arities:
            raise ValueError(f"relation {self.name}: every seed tuple needs the same number (>0) of entities")
        arity = arities.pop()
        for prompt in [self.prompt, *self.prompts]:
            problem = check_prompt(prompt, arity)
            if problem:
                raise ValueError(f"relation {self.name}: {problem}")
        for seed in self.seeds:
            if any(not e.strip() for e in seed):
                raise ValueError(f"relation {self.name}: seed {seed} has an empty entity")
        if isinstance(self.truth, list):
            for tup in self.truth:
                if len(tup) != arity:
                    raise ValueError(f"relation {self.name}: truth tuple {tup} has {len(tup)} entities, not {arity}")
        return self

    @property
    def arity(self) -> int:
        return len(self.seeds[0])


class RelationSet(Config):
    relations: list[Relation] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "RelationSet":
        names = [r.name for r in self.relations]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"relation names must be unique: {dup[0]} repeats")
        return self


def from_bertnet(data: dict) -> dict:
    """BertNet's relation_info mapping as luminary's ``{"relations": [...]}``."""
    relations = []
    for name, info in data.items():
        if not isinstance(info, dict) or "init_prompts" not in info or "seed_ent_tuples" not in info:
            raise LuminaryError(f"relation {name}: BertNet format needs init_prompts and seed_ent_tuples")
        init = list(info["init_prompts"])
        if not init:
            raise LuminaryError(f"relation {name}: init_prompts is empty")
        extra = [p for p in init[1:] + list(info.get("prompts", [])) if p != init[0]]
        relations.append({"name": name, "prompt": init[0], "seeds": info["seed_ent_tuples"],
                          "prompts": list(dict.fromkeys(extra))})
    return {"relations": relations}


def read_truth(path: Path, arity: int, relation: str) -> list[list[str]]:
    """Ground-truth tuples from a file: YAML/JSON (a list of tuples) or text (one tuple a line, tab-separated)."""
    if not path.is_file():
        raise LuminaryError(f"relation {relation}: truth file {path} not found")
    if path.suffix in (".yaml", ".yml", ".json"):
        data = read_yaml(path)
    else:
        data = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not isinstance(data, list) or any(not isinstance(t, list) or len(t) != arity for t in data):
        raise LuminaryError(f"relation {relation}: truth file {path} must hold tuples of {arity} entities")
    return [[str(e) for e in t] for t in data]


def load_relations(path: str | Path) -> RelationSet:
    """A relation set from YAML/JSON in either format; a problem is one line naming the file and field.

    A ``truth`` given as a file name is read here (relative to the relation file), so every
    loaded relation holds its ground truth as tuples, or None.
    """
    data = read_yaml(path)  # JSON is YAML
    if "relations" not in data and data and all(isinstance(v, dict) and "init_prompts" in v for v in data.values()):
        data = from_bertnet(data)
    relation_set = validate(RelationSet, data, str(path))
    for relation in relation_set.relations:
        if isinstance(relation.truth, str):
            relation.truth = read_truth(Path(path).parent / relation.truth, relation.arity, relation.name)
    return relation_set
