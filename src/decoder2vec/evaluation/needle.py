"""Needle in a haystack, encoder style: can one vector of a long document still find one fact in it?

Every document is `length` tokens of real text (Wikipedia articles by default) with one planted
sentence, "The secret code of the blue lighthouse is 4821.", each document about a different
subject. Each query asks for one subject ("What is the secret code of the blue lighthouse?") and
must retrieve, among the documents of the same length, the one that holds its needle. Scores:
accuracy@1 and MRR per length and per needle position (start / middle / end of the document);
the main score is the MRR over everything. Random vectors score about 1/n_documents.

Every document carries a needle, so an encoder cannot win by spotting "a document with a secret
code in it"; it has to keep the subject of one sentence among thousands of tokens.

The probe is deterministic (fixed seed) and long inputs are its point: it declares the token
length its documents need, and the runner raises the model's max_length to it for those texts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..data.manpages import manpages
from ..data.sources import wikipedia_en_articles
from ..errors import Decoder2VecError
from .task import Task, Texts

SUBJECTS = {
    "en": ["blue lighthouse", "red barn", "old observatory", "silver train", "green submarine",
           "stone bridge", "golden clock tower", "wooden windmill", "frozen harbour", "copper kettle",
           "paper lantern", "iron gate", "glass greenhouse", "velvet theatre", "marble fountain",
           "hidden library"],
    "da": ["det blå fyrtårn", "den røde lade", "det gamle observatorium", "sølvtoget", "den grønne ubåd",
           "stenbroen", "det gyldne klokketårn", "træmøllen", "den frosne havn", "kobberkedlen",
           "papirlygten", "jernlågen", "glasdrivhuset", "fløjlsteatret", "marmorspringvandet",
           "det skjulte bibliotek"],
    "de": ["des blauen Leuchtturms", "der roten Scheune", "der alten Sternwarte", "des silbernen Zuges",
           "des grünen U-Boots", "der Steinbrücke", "des goldenen Uhrturms", "der hölzernen Windmühle",
           "des gefrorenen Hafens", "des Kupferkessels", "der Papierlaterne", "des eisernen Tores",
           "des Glasgewächshauses", "des Samttheaters", "des Marmorbrunnens", "der verborgenen Bibliothek"],
}
TEMPLATES = {
    # (needle, query); {subject} and {code} are filled in.
    "en": ("The secret code of the {subject} is {code}.", "What is the secret code of the {subject}?"),
    "da": ("Den hemmelige kode til {subject} er {code}.", "Hvad er den hemmelige kode til {subject}?"),
    "de": ("Der geheime Code {subject} lautet {code}.", "Wie lautet der geheime Code {subject}?"),
}
QUERY_INSTRUCTION = {
    "en": "Given a question, retrieve the document that contains the answer",
    "da": "Givet et spørgsmål, find det dokument, der indeholder svaret",
    "de": "Finde zu einer Frage das Dokument, das die Antwort enthält",
}


@dataclass
class Haystack:
    """One document set: documents[i] holds the needle that queries[i] asks for."""

    length: int
    documents: list[str]
    queries: list[str]
    positions: list[float]  # requested needle position of each document (fraction of its tokens)
    needle_offsets: list[int] = field(default_factory=list)  # tokens before each needle
    token_lengths: list[int] = field(default_factory=list)


def _token_offsets(tokenizer, text: str) -> np.ndarray:
    """End character offset of every token of `text` (no special tokens)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return np.array([end for _, end in enc["offset_mapping"]], dtype=np.int64)


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _cut(text: str, ends: np.ndarray, n_tokens: int) -> str:
    """The prefix of `text` made of its first n_tokens tokens."""
    if n_tokens <= 0:
        return ""
    return text[: ends[min(n_tokens, len(ends)) - 1]]


def _sentence_start(text: str, at: int, floor: int) -> int:
    """The closest sentence boundary in text[floor:at] (so a needle never splits a sentence);
    else the closest word boundary before `at`."""
    best = max(text.rfind(mark, floor, at) for mark in (". ", "? ", "! ", "\n"))
    if best >= 0:
        return best + 1
    space = text.rfind(" ", 0, at)
    return space if space >= 0 else at


def build_haystack(tokenizer, filler: list[str], length: int, n_documents: int,
                   positions=(0.1, 0.5, 0.9), language: str = "en", seed: int = 0) -> Haystack:
    """n_documents documents of `length` tokens, each with its own needle at one of `positions`
    (cycled), filled with consecutive stretches of `filler` texts (shuffled with `seed`)."""
    if language not in TEMPLATES:
        raise Decoder2VecError(f"needle language {language!r} not supported; choose one of {', '.join(TEMPLATES)}")
    subjects = SUBJECTS[language]
    if not 1 <= n_documents <= len(subjects):
        raise Decoder2VecError(f"n_documents must be in 1..{len(subjects)}, got {n_documents}")
    for p in positions:
        if not 0.0 <= p <= 1.0:
            raise Decoder2VecError(f"needle positions are fractions in 0..1, got {p}")
    rng = random.Random(f"{seed}-{length}")
    pool = [t.strip() for t in filler if t.strip()]
    if not pool:
        raise Decoder2VecError("the needle probe needs filler texts; got none")
    rng.shuffle(pool)
    needle_tpl, query_tpl = TEMPLATES[language]
    chosen = rng.sample(subjects, n_documents)
    codes = rng.sample(range(1000, 10000), n_documents)

    cursor = 0
    haystack = Haystack(length, [], [], [])
    for i, (subject, code) in enumerate(zip(chosen, codes)):
        needle = needle_tpl.format(subject=subject, code=code)
        budget = length - count_tokens(tokenizer, " " + needle + " ")
        if budget < 1:
            raise Decoder2VecError(f"length {length} is too short for the needle ({needle!r})")
        # Consecutive filler texts (wrapping around the pool) until the body has `budget` tokens;
        # ~5 characters a token is a generous first guess, topped up if the tokenizer disagrees.
        body, ends = "", np.zeros(0, dtype=np.int64)
        while len(ends) < budget:
            chunk = []
            while sum(map(len, chunk)) < (budget - len(ends)) * 5 + 200:
                chunk.append(pool[cursor % len(pool)])
                cursor += 1
            body = "\n\n".join(([body] if body else []) + chunk)
            ends = _token_offsets(tokenizer, body)
        body = _cut(body, ends, budget)
        position = positions[i % len(positions)]
        # The needle goes at the requested token, moved back to a sentence start at most 2% of
        # the document (and at least 16 tokens) earlier.
        index = min(budget, int(position * length))
        window = max(16, length // 50)
        floor = int(ends[index - window - 1]) if index - window >= 1 else 0
        at = _sentence_start(body, int(ends[index - 1]), floor) if index >= 1 else 0
        before, after = body[:at].rstrip(), body[at:].lstrip()
        document = " ".join(part for part in (before, needle, after) if part)
        haystack.documents.append(document)
        haystack.queries.append(query_tpl.format(subject=subject))
        haystack.positions.append(position)
        haystack.needle_offsets.append(count_tokens(tokenizer, before) if before else 0)
        haystack.token_lengths.append(count_tokens(tokenizer, document))
    return haystack


def rank_scores(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit@1, reciprocal rank) per query, where query i's answer is document i (cosine)."""
    q = query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True).clip(1e-12)
    d = doc_vectors / np.linalg.norm(doc_vectors, axis=1, keepdims=True).clip(1e-12)
    sims = q @ d.T
    target = np.diag(sims)[:, None]
    # Ties count against the encoder: a constant encoder must not score 1.0.
    rank = (sims > target).sum(1) + (sims == target).sum(1)
    return (rank == 1).astype(float), 1.0 / rank


@dataclass
class NeedleTask(Task):
    """The long-input probe as an evaluation task (MRR as main score), listed in the task table
    like the others. It declares the token length its documents need; the runner provides it."""

    name: str = "needle"
    language: str = "en"
    source: str = "wikipedia"  # filler text: English Wikipedia, or the da/de man pages
    seed: int = 0
    lengths: tuple = (1000, 4000, 8000)
    n_documents: int = 6
    positions: tuple = (0.1, 0.5, 0.9)
    batch_size: int = 2
    filler_texts: list | None = field(default=None, repr=False)  # overrides `source` (tests)

    type: ClassVar[str] = "needle"
    sources: ClassVar[tuple[str, ...]] = ("wikipedia", "manpages")
    main_score: ClassVar[str] = "mrr"

    def __post_init__(self):
        super().__post_init__()
        self.lengths = tuple(int(n) for n in self.lengths)
        self.positions = tuple(float(p) for p in self.positions)

    def sizes(self) -> dict:
        return {"documents": self.n_documents * len(self.lengths), "queries": self.n_documents * len(self.lengths),
                "tokens": self.n_documents * sum(self.lengths)}

    def filler(self) -> list[str]:
        if self.filler_texts is None:
            if self.source == "wikipedia":
                self.filler_texts = wikipedia_en_articles()
            else:
                self.filler_texts = [row["text"] for row in manpages(self.language)]
        return self.filler_texts

    def haystacks(self, tokenizer) -> list[Haystack]:
        return [build_haystack(tokenizer, self.filler(), n, self.n_documents, self.positions, self.language, self.seed)
                for n in self.lengths]

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        if tokenizer is None:
            raise Decoder2VecError(f"task {self.name}: the needle probe measures documents in the model's "
                                   "tokens, and this model has no tokenizer")
        out = {}
        for h in self.haystacks(tokenizer):
            # + 8 for the special tokens a model adds; documents are never truncated.
            out[f"documents@{h.length}"] = Texts(h.documents, None, side="document", max_length=max(h.token_lengths) + 8,
                                                 batch_size=self.batch_size)
            out[f"queries@{h.length}"] = Texts(h.queries, QUERY_INSTRUCTION[self.language])
        return out

    def score(self, vectors) -> dict:
        result = {"lengths": {}, "positions": {}}
        hits_by_pos, rr_by_pos = {}, {}
        all_hits, all_rr = [], []
        # Document i of every length holds its needle at positions[i % len(positions)] (build_haystack).
        positions = [self.positions[i % len(self.positions)] for i in range(self.n_documents)]
        for length in self.lengths:
            hits, rr = rank_scores(vectors[f"queries@{length}"], vectors[f"documents@{length}"])
            result["lengths"][str(length)] = {"accuracy@1": float(hits.mean()), "mrr": float(rr.mean())}
            for p, hit, r in zip(positions, hits, rr):
                hits_by_pos.setdefault(p, []).append(hit)
                rr_by_pos.setdefault(p, []).append(r)
            all_hits += hits.tolist()
            all_rr += rr.tolist()
        for p in sorted(hits_by_pos):
            result["positions"][f"{p:g}"] = {"accuracy@1": float(np.mean(hits_by_pos[p])),
                                             "mrr": float(np.mean(rr_by_pos[p]))}
        result["accuracy@1"] = float(np.mean(all_hits))
        result["mrr"] = float(np.mean(all_rr))
        result["main_score"] = result["mrr"]
        result["chance_mrr"] = float(np.mean([1.0 / k for k in range(1, self.n_documents + 1)]))
        return result
