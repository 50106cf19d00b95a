"""Task types: each is a dataclass (its YAML fields) that declares its texts and scores their vectors.

The scores follow MTEB's definitions (see metrics.py); `main_score` names the one a suite
averages. Instructions are part of a task: decoder2vec encoders receive them as `instruction=`.
`TASK_TYPES` is the one static table of task types (the needle probe included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, ClassVar

from ..errors import Decoder2VecError, choices_error
from . import metrics, task_data
from .needle import NeedleTask
from .task import Task, Texts


@dataclass
class PairTask(Task):
    """Two aligned lists of texts, one instruction for both, one metric over the two sets of
    vectors (and the gold labels, when `load()` returns them third)."""

    instruction: str | None = None

    metric: ClassVar[Callable[..., dict]]

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        first, second = self.data[:2]
        return {"first": Texts(first, self.instruction), "second": Texts(second, self.instruction)}

    def score(self, vectors) -> dict:
        return type(self).metric(vectors["first"], vectors["second"], *self.data[2:])

    def sizes(self) -> dict:
        return {"pairs": len(self.data[0])}


@dataclass
class STSTask(PairTask):
    """Semantic similarity: Spearman correlation of cosine similarity with human scores (0..5)."""

    sample: int | None = None  # pairs; None = the whole split

    type: ClassVar[str] = "sts"
    sources: ClassVar[tuple[str, ...]] = ("stsb",)
    main_score: ClassVar[str] = "cosine_spearman"
    metric: ClassVar = metrics.sts_scores

    def load(self):
        return task_data.stsb_pairs(self.language, self.split, self.sample, self.seed)


@dataclass
class PairClassificationTask(PairTask):
    """Paraphrase or not: average precision of cosine similarity (STS-B pairs with clear scores)."""

    sample: int | None = None
    positive_min: float = 4.0
    negative_max: float = 2.0

    type: ClassVar[str] = "pair_classification"
    sources: ClassVar[tuple[str, ...]] = ("stsb",)
    main_score: ClassVar[str] = "ap"
    metric: ClassVar = metrics.pair_classification_scores

    def load(self):
        return task_data.stsb_binary_pairs(
            self.language, self.split, self.sample, self.seed, self.positive_min, self.negative_max
        )

    def sizes(self) -> dict:
        first, _, labels = self.data
        return {"pairs": len(first), "positives": sum(labels)}


@dataclass
class BitextTask(PairTask):
    """Find each sentence's translation among all candidates: F1 of the nearest neighbour."""

    source_language: str = "en"
    sample: int | None = None

    type: ClassVar[str] = "bitext"
    sources: ClassVar[tuple[str, ...]] = ("libreoffice-help", "gettext")
    main_score: ClassVar[str] = "f1"
    metric: ClassVar = metrics.bitext_scores

    def load(self):
        if self.source == "gettext":
            return task_data.gettext_bitext(self.source_language, self.language, self.sample, self.seed)
        return task_data.help_bitext(self.source_language, self.language, self.sample, self.seed)


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

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        (train_x, _), (test_x, _) = self.data
        return {"train": Texts(train_x, self.instruction), "test": Texts(test_x, self.instruction)}

    def score(self, vectors) -> dict:
        (_, train_y), (_, test_y) = self.data
        return metrics.classification_scores(
            vectors["train"], train_y, vectors["test"], test_y, samples_per_label=self.samples_per_label,
            n_experiments=self.n_experiments, seed=self.seed,
        )

    def sizes(self) -> dict:
        (train_x, _), (test_x, _) = self.data
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

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        return {"texts": Texts(self.data[0], self.instruction)}

    def score(self, vectors) -> dict:
        return metrics.clustering_scores(vectors["texts"], self.data[1], n_experiments=self.n_experiments,
                                         seed=self.seed)

    def sizes(self) -> dict:
        texts, labels = self.data
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
    sources: ClassVar[tuple[str, ...]] = ("libreoffice-help", "gsettings")
    main_score: ClassVar[str] = "ndcg_at_10"

    def load(self):
        if self.source == "gsettings":
            return task_data.gsettings_retrieval(self.language, self.n_queries, self.n_corpus, self.seed,
                                                 self.max_chars)
        return task_data.help_retrieval(self.language, self.n_queries, self.n_corpus, self.seed, self.max_chars)

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        queries, corpus, _ = self.data
        return {"queries": Texts(queries, self.query_instruction),
                "corpus": Texts(corpus, self.document_instruction, side="document")}

    def score(self, vectors) -> dict:
        return metrics.retrieval_scores(vectors["queries"], vectors["corpus"], self.data[2], k=10)

    def sizes(self) -> dict:
        queries, corpus, _ = self.data
        return {"queries": len(queries), "corpus": len(corpus)}


TASK_TYPES: dict[str, type[Task]] = {
    cls.type: cls for cls in (STSTask, PairClassificationTask, ClassificationTask, ClusteringTask, RetrievalTask,
                              BitextTask, NeedleTask)
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


__all__ = ["Task", "Texts", "TASK_TYPES", "make_task"]
