"""What an evaluation task is: the texts it needs embedded, and a score from their vectors.

A task never sees the model. `inputs(tokenizer)` declares named lists of texts (`Texts`), each with
the instruction it gets and, for long inputs, the token length and batch size it needs;
`score(vectors)` turns the vectors of those lists (same names) into MTEB-style scores. The runner
(runner.py) embeds, through the caching adapter (adapter.py), so every task gets the same output
checks, cache and token-limit handling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import choices_error


@dataclass(frozen=True)
class Texts:
    """One list of texts a task needs embedded."""

    texts: list[str]
    instruction: str | None = None
    max_length: int | None = None  # tokens these texts need; the runner raises the model's limit to it
    batch_size: int | None = None  # texts per forward pass, when long inputs need fewer than the run's
    # "document" for texts to be found (a retrieval corpus), else "query" (queries, symmetric tasks):
    # models with query/document prompts (E5, EmbeddingGemma) are prompted by it.
    side: str = "query"


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

    def load(self):
        """The task's data (texts and gold labels), deterministic for its seed."""
        raise NotImplementedError

    @functools.cached_property
    def data(self):
        """`load()`, read once: inputs(), score() and sizes() all need it."""
        return self.load()

    def inputs(self, tokenizer=None) -> dict[str, Texts]:
        """The texts to embed, by name. `tokenizer` is the model's (None when it has none), for
        tasks whose texts are measured in the model's tokens."""
        raise NotImplementedError

    def score(self, vectors: dict[str, np.ndarray]) -> dict:
        """Scores from the vectors of `inputs()` (same keys); `main_score` names the one a suite averages."""
        raise NotImplementedError

    def sizes(self) -> dict:
        """How many texts of each kind the task encodes (for the docs and the results file)."""
        raise NotImplementedError
