"""Offline evaluation: MTEB-style task types on real en/da/de data, YAML suites, an mteb adapter.

>>> from decoder2vec.evaluation import evaluate, compare
>>> results = evaluate("smollm2-135m", suite="quick")
>>> print(compare([results, evaluate("minilm", suite="quick")]))
"""

from .embedder import Embedder

from .report import compare, plot
from .runner import evaluate, load_encoder, read_results, write_results
from .suites import load_tasks, suite_names, task_names
from .tasks import TASK_TYPES, Task

__all__ = [
    "evaluate", "compare", "plot", "load_encoder", "read_results", "write_results", "load_tasks",
    "suite_names", "task_names", "TASK_TYPES", "Task", "Embedder",
]
