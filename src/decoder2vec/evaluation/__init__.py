"""Offline evaluation: MTEB-style task types on real en/da/de data, YAML suites, an mteb adapter.

>>> from decoder2vec.evaluation import evaluate, compare
>>> results = evaluate("smollm2-135m", suite="quick")
>>> print(compare([results, evaluate("minilm", suite="quick")]))

Tasks declare their texts and score vectors (task.py, tasks.py); the runner (runner.py) embeds
them through the caching adapter (adapter.py) and never lets a task touch the model.
"""

from ..results import read_results, write_results
from .adapter import CachingAdapter
from .label import model_label
from .report import compare, plot
from .runner import evaluate, load_encoder, run_task
from .suites import load_tasks, suite_names, task_names
from .task import Task, Texts
from .tasks import TASK_TYPES

__all__ = [
    "evaluate", "run_task", "compare", "plot", "load_encoder", "read_results", "write_results", "load_tasks",
    "suite_names", "task_names", "TASK_TYPES", "Task", "Texts", "CachingAdapter", "model_label",
]
