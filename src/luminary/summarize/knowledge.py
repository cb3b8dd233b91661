"""Knowledge behind one interface: neighbours of a term, with weights, and a description text.

The paper (Tan et al., EMNLP 2020, "Summarizing Text on Any Aspects") takes
an aspect's neighbours from ConceptNet and its description from Wikipedia.
Neither can be downloaded here, so two sources sit behind one interface:

- :class:`WordNetKnowledge`: WordNet 3.0 (Debian's ``wordnet-base``) read
  through NLTK. Neighbours of a noun are its synonyms, hypernyms, hyponyms
  and meronyms over all its noun senses, weighted by relation and sense rank:

      w(n) = max over senses k (1-based) and relations r linking to n of  W_r / (k · m_kr)

  with W_r from :data:`WORDNET_WEIGHTS` and m_kr the number of lemmas sense k
  links to by r: each relation of a sense carries W_r / k in all, so the
  hundreds of hyponyms of ``tree`` do not outweigh its few synonyms. The description is the senses'
  glosses and examples (the stand-in for the Wikipedia page).
- :class:`ConceptNetKnowledge`: a ConceptNet 5 assertions CSV (``.csv`` or
  ``.csv.gz``: uri, relation, start, end, JSON info) streamed line by line,
  or a JSON file in the shape of ConceptNet's API (``{"edges": [...]}``).
  Only English-to-English edges are kept, none of :data:`BANNED_RELATIONS`
  (the paper's list), with a finite positive weight. Given ``terms``, only
  the edges touching them are held, so the 10 GB file never sits in memory.
  The description is the edges' surface texts (ConceptNet has no glosses).

:func:`open_knowledge` picks one from a string: ``wordnet``, ``wordnet:/folder``
or the path of a ConceptNet file.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol

from luminary.core.errors import LuminaryError

# the relations the paper's code drops (tanyuqian/aspect-based-summarization)
BANNED_RELATIONS = frozenset({
    "Antonym", "DistinctFrom", "NotCapableOf", "NotDesires", "NotHasProperty", "RelatedTo", "DerivedFrom",
    "EtymologicallyDerivedFrom", "EtymologicallyRelatedTo", "HasContext", "dbpedia",
})

# relation -> weight W_r of a WordNet neighbour (a synonym is closest, a part farthest)
WORDNET_WEIGHTS = {"Synonym": 1.0, "IsA": 0.8, "HasA": 0.5, "PartOf": 0.5, "Hyponym": 0.6}

WORDNET_ROOT = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "index.noun", "noun.exc", "data.verb", "index.verb", "data.adj", "index.adj",
                 "data.adv", "index.adv")

# WordNet 3.0's lexicographer files in their numbered order: NLTK needs them as a file named
# ``lexnames``, which Debian's wordnet-base does not ship
_LEXNAMES = (["adj.all 3", "adj.pert 3", "adv.all 4"]
             + [f"noun.{n} 1" for n in ("Tops act animal artifact attribute body cognition communication event "
                                         "feeling food group location motive object person phenomenon plant "
                                         "possession process quantity relation shape state substance time").split()]
             + [f"verb.{v} 2" for v in ("body change cognition communication competition consumption contact "
                                         "creation emotion motion perception possession social stative "
                                         "weather").split()]
             + ["adj.ppl 3"])
LEXNAMES = "".join(f"{i:02d}\t{name.replace(' ', chr(9))}\n" for i, name in enumerate(_LEXNAMES))


@dataclass(frozen=True)
class Neighbour:
    """A term linked to another by ``relation``, with the edge's ``weight`` (> 0)."""

    term: str
    relation: str
    weight: float


class Knowledge(Protocol):
    """What weak supervision and inference ask of a knowledge source."""

    name: str

    def has(self, term: str) -> bool:
        """Whether the source knows the term at all."""

    def neighbours(self, term: str) -> list[Neighbour]:
        """The term's neighbours, heaviest first (ties by term), each once."""

    def description(self, term: str) -> str:
        """Text about the term ('' when there is none)."""


def normalise(term: str) -> str:
    """Lowercase, single spaces: the form aspects and neighbours are compared in."""
    return " ".join(term.lower().replace("_", " ").split())


def _ranked(best: dict[str, Neighbour]) -> list[Neighbour]:
    return sorted(best.values(), key=lambda n: (-n.weight, n.term))


# --- WordNet -------------------------------------------------------------------------------------


def _wordnet_reader(root: Path):
    """NLTK's WordNet reader over ``root``, with the generated ``lexnames`` and no multilingual data."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):
        def open(self, file):  # noqa: A003 (NLTK's name)
            if file == "lexnames":
                return io.StringIO(LEXNAMES)
            return super().open(file)

        def map_wn(self, version="wordnet"):  # WordNet 3.0 itself: no mapping to another version
            return None

    resolved = str(root.resolve())
    if resolved not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(resolved)  # NLTK reads only below its data paths: authorise this folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": none are used
        return _Reader(resolved, None)


@functools.lru_cache(maxsize=4)
def _cached_reader(root: str):
    return _wordnet_reader(Path(root))


def check_wordnet(root: str | Path) -> Path:
    root = Path(root)
    missing = [f for f in WORDNET_FILES if not (root / f).is_file()]
    if missing:
        raise LuminaryError(f"{root}: WordNet 3.0 not found (no {missing[0]}); install it with "
                            "`apt-get install wordnet-base` or name its folder as wordnet:/path")
    return root


class WordNetKnowledge:
    """WordNet 3.0 nouns as a knowledge graph (see the module docstring for the weights)."""

    name = "wordnet"

    def __init__(self, root: str | Path = WORDNET_ROOT, max_senses: int = 3):
        self.root = check_wordnet(root)
        self.max_senses = max_senses
        self.reader = _cached_reader(str(self.root.resolve()))

    def _synsets(self, term: str):
        key = normalise(term).replace(" ", "_")
        return self.reader.synsets(key, pos="n")[: self.max_senses] if key else []

    def has(self, term: str) -> bool:
        return bool(self._synsets(term))

    def neighbours(self, term: str) -> list[Neighbour]:
        return list(self._neighbours(normalise(term)))

    @functools.lru_cache(maxsize=65536)
    def _neighbours(self, own: str) -> tuple[Neighbour, ...]:
        best: dict[str, Neighbour] = {}
        for rank, synset in enumerate(self._synsets(own), 1):
            linked = [("Synonym", [synset]), ("IsA", synset.hypernyms() + synset.instance_hypernyms()),
                      ("Hyponym", synset.hyponyms()),
                      ("HasA", synset.part_meronyms() + synset.member_meronyms() + synset.substance_meronyms()),
                      ("PartOf", synset.part_holonyms())]
            for relation, synsets in linked:
                words = [normalise(lemma) for other in synsets for lemma in other.lemma_names()]
                words = [w for w in dict.fromkeys(words) if w != own]
                for word in words:
                    weight = WORDNET_WEIGHTS[relation] / (rank * len(words))
                    if word not in best or best[word].weight < weight:
                        best[word] = Neighbour(word, relation, weight)
        return tuple(_ranked(best))

    def description(self, term: str) -> str:
        parts = []
        for synset in self._synsets(term):
            parts.append(synset.definition())
            parts.extend(synset.examples())
        return " ".join(parts)

    def is_noun(self, word: str) -> bool:
        """A noun WordNet knows, in any inflection (``modules`` is ``module``), and not a verb's
        past form (``chased``: WordNet also has the noun ``chase``)."""
        word = word.lower()
        if not self.reader.morphy(word, "n"):
            return False
        verb = self.reader.morphy(word, "v")
        return not (word.endswith("ed") and verb is not None and verb != word)


# --- ConceptNet ----------------------------------------------------------------------------------

_EN = re.compile(r"^/c/en/([^/]+)")


def concept_term(uri: str) -> str | None:
    """``/c/en/ice_cream/n`` -> ``ice cream``; None for another language."""
    match = _EN.match(uri or "")
    return normalise(match.group(1)) if match else None


@dataclass(frozen=True)
class Edge:
    start: str
    end: str
    relation: str
    weight: float
    surface: str


def _relation(uri: str) -> str:
    """``/r/IsA`` -> ``IsA``; ``/r/dbpedia/genre`` -> ``dbpedia``."""
    parts = (uri or "").strip("/").split("/")
    return parts[1] if len(parts) > 1 else (parts[0] if parts else "")


def _edge(relation_uri: str, start: str, end: str, weight: object, surface: str | None) -> Edge | None:
    """An edge kept by the paper's filter: English both ends, an allowed relation, a finite weight > 0."""
    a, b, rel = concept_term(start), concept_term(end), _relation(relation_uri)
    try:
        w = float(weight)
    except (TypeError, ValueError):
        return None
    if not a or not b or a == b or rel in BANNED_RELATIONS or not math.isfinite(w) or w <= 0:
        return None
    return Edge(a, b, rel, w, surface or "")


def stream_csv_edges(path: Path) -> Iterator[Edge]:
    """Edges of a ConceptNet assertions CSV (tab-separated, optionally gzipped), a line at a time."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                raise LuminaryError(f"{path}: line {number}: expected 5 tab-separated fields "
                                    "(uri, relation, start, end, info) of a ConceptNet assertions file")
            if "/c/en/" not in fields[2] or "/c/en/" not in fields[3]:
                continue  # most of the file: skip before parsing the JSON
            try:
                info = json.loads(fields[4]) if len(fields) > 4 and fields[4] else {}
            except json.JSONDecodeError:
                raise LuminaryError(f"{path}: line {number}: the info field is not valid JSON") from None
            edge = _edge(fields[1], fields[2], fields[3], info.get("weight", 1.0), info.get("surfaceText"))
            if edge is not None:
                yield edge


def json_edges(path: Path) -> Iterator[Edge]:
    """Edges of a JSON file in the shape of ConceptNet's API: ``{"edges": [{"rel", "start", "end", "weight"}]}``."""
    from luminary.core.io import read_json

    data = read_json(path)
    edges = data.get("edges") if isinstance(data, dict) else None
    if not isinstance(edges, list):
        raise LuminaryError(f"{path}: expected ConceptNet's shape, an object with a list 'edges'")
    for i, e in enumerate(edges, 1):
        if not isinstance(e, dict) or not all(k in e for k in ("rel", "start", "end")):
            raise LuminaryError(f"{path}: edge {i}: needs 'rel', 'start' and 'end'")
        uri = lambda node: node.get("@id", "") if isinstance(node, dict) else str(node)  # noqa: E731
        edge = _edge(uri(e["rel"]), uri(e["start"]), uri(e["end"]), e.get("weight", 1.0), e.get("surfaceText"))
        if edge is not None:
            yield edge


class ConceptNetKnowledge:
    """ConceptNet edges (undirected, the paper's filter), held only for ``terms`` when given."""

    name = "conceptnet"

    def __init__(self, path: str | Path, terms: Iterable[str] | None = None):
        path = Path(path)
        if not path.is_file():
            raise LuminaryError(f"{path}: ConceptNet file not found")
        wanted = None if terms is None else {normalise(t) for t in terms}
        self.path = path
        self._edges: dict[str, list[Edge]] = defaultdict(list)
        edges = json_edges(path) if path.suffix == ".json" else stream_csv_edges(path)
        for edge in edges:
            for term in (edge.start, edge.end):
                if wanted is None or term in wanted:
                    self._edges[term].append(edge)

    def has(self, term: str) -> bool:
        return normalise(term) in self._edges

    def neighbours(self, term: str) -> list[Neighbour]:
        own = normalise(term)
        best: dict[str, Neighbour] = {}
        for edge in self._edges.get(own, []):
            other = edge.end if edge.start == own else edge.start
            if other not in best or best[other].weight < edge.weight:
                best[other] = Neighbour(other, edge.relation, edge.weight)
        return _ranked(best)

    def description(self, term: str) -> str:
        edges = self._edges.get(normalise(term), [])
        texts = [re.sub(r"[\[\]]", "", e.surface) or f"{e.start} {e.relation} {e.end}" for e in edges]
        return " ".join(texts)


def open_knowledge(spec: str, terms: Iterable[str] | None = None) -> Knowledge:
    """``wordnet`` (Debian's folder), ``wordnet:/folder``, or a ConceptNet ``.csv``/``.csv.gz``/``.json`` file."""
    if spec == "wordnet":
        return WordNetKnowledge()
    if spec.startswith("wordnet:"):
        return WordNetKnowledge(spec.removeprefix("wordnet:"))
    if spec.endswith((".csv", ".csv.gz", ".json")):
        return ConceptNetKnowledge(spec, terms)
    raise LuminaryError(f"knowledge: {spec!r} is not 'wordnet', 'wordnet:/folder' or a ConceptNet "
                        ".csv, .csv.gz or .json file")
