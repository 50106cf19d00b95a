"""Task types: each is a dataclass (its YAML fields) with one `evaluate(encoder) -> scores` method.

The scores follow MTEB's definitions (see metrics.py); `main_score` names the one a suite
averages. Instructions are part of a task: decoder2vec encoders receive them as `instruction=`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from ..errors import Decoder2VecError, choices_error
from . import metrics, task_data
from .embedder import Embedder


@dataclass
class Task:
    name: str
    language: str  # the language a task measures; en-da bitext counts for "da"
    source: str
    split: str = "test"
    seed: int = 42
    description: str = ""

    type: ClassVar[str] = ""
    sources: ClassVar[tuple[str, ...]] = ()
    main_score: ClassVar[str] = ""

    def __post_init__(self):
        if self.source not in self.sources:
            raise choices_error(f"source for {self.type} task {self.name!r}", self.source, self.sources)

    def evaluate(self, encoder) -> dict:
        raise NotImplementedError

    def sizes(self) -> dict:
        """How many texts of each kind the task encodes (for the docs and the results file)."""
        raise NotImplementedError

    @staticmethod
    def _embedder(encoder) -> Embedder:
        return encoder if isinstance(encoder, Embedder) else Embedder(encoder)


@dataclass
class STSTask(Task):
    """Semantic similarity: Spearman correlation of cosine similarity with human scores (0..5)."""

    sample: int | None = None  # pairs; None = the whole split
    instruction: str | None = None

    type: ClassVar[str] = "sts"
    sources: ClassVar[tuple[str, ...]] = ("stsb",)
    main_score: ClassVar[str] = "cosine_spearman"

    def load(self):
        return task_data.stsb_pairs(self.language, self.split, self.sample, self.seed)

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        first, second, gold = self.load()
        a = embedder.embed(first, self.instruction, task=self.name)
        b = embedder.embed(second, self.instruction, task=self.name)
        return metrics.sts_scores(a, b, gold)

    def sizes(self) -> dict:
        return {"pairs": len(self.load()[0])}


@dataclass
class PairClassificationTask(Task):
    """Paraphrase or not: average precision of cosine similarity (STS-B pairs with clear scores)."""

    sample: int | None = None
    positive_min: float = 4.0
    negative_max: float = 2.0
    instruction: str | None = None

    type: ClassVar[str] = "pair_classification"
    sources: ClassVar[tuple[str, ...]] = ("stsb",)
    main_score: ClassVar[str] = "ap"

    def load(self):
        return task_data.stsb_binary_pairs(
            self.language, self.split, self.sample, self.seed, self.positive_min, self.negative_max
        )

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        first, second, labels = self.load()
        a = embedder.embed(first, self.instruction, task=self.name)
        b = embedder.embed(second, self.instruction, task=self.name)
        return metrics.pair_classification_scores(a, b, labels)

    def sizes(self) -> dict:
        first, _, labels = self.load()
        return {"pairs": len(first), "positives": sum(labels)}


@dataclass
class ClassificationTask(Task):
    """Logistic regression on frozen vectors (MTEB protocol: few examples per label, n experiments)."""

    train_per_label: int = 40  # pool of training texts per label the experiments draw from
    test_sample: int | None = None
    samples_per_label: int = 8
    n_experiments: int = 10
    max_chars: int | None = None
    instruction: str | None = None

    type: ClassVar[str] = "classification"
    sources: ClassVar[tuple[str, ...]] = ("bbc-news",)
    main_score: ClassVar[str] = "accuracy"

    def load(self):
        return task_data.bbc_split(self.train_per_label, self.test_sample, self.seed, self.max_chars)

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        (train_x, train_y), (test_x, test_y) = self.load()
        train = embedder.embed(train_x, self.instruction, task=self.name)
        test = embedder.embed(test_x, self.instruction, task=self.name)
        return metrics.classification_scores(
            train, train_y, test, test_y, samples_per_label=self.samples_per_label,
            n_experiments=self.n_experiments, seed=self.seed,
        )

    def sizes(self) -> dict:
        (train_x, _), (test_x, _) = self.load()
        return {"train": len(train_x), "test": len(test_x)}


@dataclass
class ClusteringTask(Task):
    """k-means with k = number of labels; V-measure against the labels."""

    sample: int | None = None  # texts (bbc-headlines) or titles per module (libreoffice-titles)
    n_experiments: int = 10
    instruction: str | None = None

    type: ClassVar[str] = "clustering"
    sources: ClassVar[tuple[str, ...]] = ("bbc-headlines", "libreoffice-titles")
    main_score: ClassVar[str] = "v_measure"

    def load(self):
        if self.source == "bbc-headlines":
            return task_data.bbc_headlines(self.sample, self.seed)
        return task_data.help_titles_by_module(self.language, self.sample, self.seed)

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        texts, labels = self.load()
        vectors = embedder.embed(texts, self.instruction, task=self.name)
        return metrics.clustering_scores(vectors, labels, n_experiments=self.n_experiments, seed=self.seed)

    def sizes(self) -> dict:
        texts, labels = self.load()
        return {"texts": len(texts), "clusters": len(set(labels))}


@dataclass
class RetrievalTask(Task):
    """Queries -> documents ranked by cosine: nDCG@10 (main) and recall@10."""

    n_queries: int = 100
    n_corpus: int = 200
    max_chars: int | None = None
    query_instruction: str | None = None
    document_instruction: str | None = None

    type: ClassVar[str] = "retrieval"
    sources: ClassVar[tuple[str, ...]] = ("libreoffice-help",)
    main_score: ClassVar[str] = "ndcg_at_10"

    def load(self):
        return task_data.help_retrieval(self.language, self.n_queries, self.n_corpus, self.seed, self.max_chars)

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        queries, corpus, relevant = self.load()
        q = embedder.embed(queries, self.query_instruction, task=self.name)
        d = embedder.embed(corpus, self.document_instruction, task=self.name)
        return metrics.retrieval_scores(q, d, relevant, k=10)

    def sizes(self) -> dict:
        queries, corpus, _ = self.load()
        return {"queries": len(queries), "corpus": len(corpus)}


@dataclass
class BitextTask(Task):
    """Find each sentence's translation among all candidates: F1 of the nearest neighbour."""

    source_language: str = "en"
    sample: int | None = None
    instruction: str | None = None

    type: ClassVar[str] = "bitext"
    sources: ClassVar[tuple[str, ...]] = ("libreoffice-help",)
    main_score: ClassVar[str] = "f1"

    def load(self):
        return task_data.help_bitext(self.source_language, self.language, self.sample, self.seed)

    def evaluate(self, encoder) -> dict:
        embedder = self._embedder(encoder)
        source, target = self.load()
        a = embedder.embed(source, self.instruction, task=self.name)
        b = embedder.embed(target, self.instruction, task=self.name)
        return metrics.bitext_scores(a, b)

    def sizes(self) -> dict:
        return {"pairs": len(self.load()[0])}


TASK_TYPES: dict[str, type[Task]] = {
    cls.type: cls for cls in (STSTask, PairClassificationTask, ClassificationTask, ClusteringTask, RetrievalTask, BitextTask)
}


def make_task(name: str, spec: dict) -> Task:
    """A task from its YAML entry; unknown keys are errors, so a typo never silently does nothing."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in TASK_TYPES:
        raise choices_error(f"type of task {name!r}", kind, TASK_TYPES)
    cls = TASK_TYPES[kind]
    allowed = {f.name for f in fields(cls)} - {"name"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise Decoder2VecError(
            f"task {name!r} ({kind}) has unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    try:
        return cls(name=name, **spec)
    except TypeError as exc:
        raise Decoder2VecError(f"task {name!r}: {exc}") from exc


__all__ = ["Task", "TASK_TYPES", "make_task"]


def _register_needle() -> None:
    # needle.py subclasses Task, so it can only be imported once this module is complete.
    from .needle import NeedleTask

    TASK_TYPES[NeedleTask.type] = NeedleTask


_register_needle()
