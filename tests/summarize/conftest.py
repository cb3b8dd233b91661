"""Small knowledge files in ConceptNet's two shapes and a few (document, summary) pairs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

# (relation, start, end, weight): English edges, one of each kind the filter drops
EDGES = [
    ("/r/IsA", "/c/en/dog/n", "/c/en/animal", 2.0),
    ("/r/IsA", "/c/en/cat", "/c/en/animal", 2.0),
    ("/r/Synonym", "/c/en/dog", "/c/en/hound", 1.0),
    ("/r/CapableOf", "/c/en/dog", "/c/en/bark", 3.0),
    ("/r/AtLocation", "/c/en/cat", "/c/en/house", 1.0),
    ("/r/IsA", "/c/en/tree", "/c/en/plant", 2.0),
    ("/r/HasA", "/c/en/tree", "/c/en/branch", 1.0),
    ("/r/IsA", "/c/en/budget", "/c/en/plan", 1.0),
    ("/r/IsA", "/c/en/teacher", "/c/en/educator", 1.0),
    ("/r/RelatedTo", "/c/en/dog", "/c/en/leash", 5.0),        # banned relation
    ("/r/Antonym", "/c/en/cat", "/c/en/dog", 5.0),            # banned relation
    ("/r/dbpedia/genre", "/c/en/dog", "/c/en/film", 5.0),     # banned (dbpedia)
    ("/r/IsA", "/c/fr/chien", "/c/en/dog", 5.0),              # not English
    ("/r/IsA", "/c/en/dog", "/c/en/wolf", float("inf")),      # not a finite weight
]

PAIRS = [
    {"document": "The dog chased the cat across the garden. Dogs are loyal animals kept as pets. "
                 "The cat climbed a tree to escape the dog.",
     "summary": "A dog chased a cat. The cat escaped up a tree. Every animal was safe."},
    {"document": "The city council approved a new budget for schools. Teachers will get higher salaries. "
                 "Parents welcomed the plan.",
     "summary": "The council approved a school budget. Teachers get a raise."},
    {"document": "A big tree fell on a house in the storm. Its branches broke the roof. Nobody was hurt.",
     "summary": "A tree fell on a house. A branch broke the roof."},
]


def edge_json(rel, start, end, weight):
    return {"rel": {"@id": rel}, "start": {"@id": start}, "end": {"@id": end}, "weight": weight,
            "surfaceText": f"[[{start.split('/')[3]}]] {rel.split('/')[2]} [[{end.split('/')[3]}]]"}


@pytest.fixture(scope="session")
def conceptnet_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("conceptnet") / "edges.json"
    path.write_text(json.dumps({"edges": [edge_json(*e) for e in EDGES]}))
    return path


@pytest.fixture(scope="session")
def conceptnet_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("conceptnet") / "assertions.csv.gz"
    lines = []
    for rel, start, end, weight in EDGES:
        info = edge_json(rel, start, end, weight)
        lines.append("\t".join([f"/a/[{rel},{start},{end}]", rel, start, end,
                                json.dumps({"weight": weight, "surfaceText": info["surfaceText"]})]))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path
