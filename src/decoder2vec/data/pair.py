"""One supervised training example, the record every pair source produces (a leaf: the source
modules and the registry both import it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Pair:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    task: str = ""  # the source it came from; batches can be drawn from one task at a time
    # This row's query instruction (E5-style per-dataset instructions); None: the recipe's own.
    instruction: str | None = None
