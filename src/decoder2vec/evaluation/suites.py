"""Suites are YAML data shipped in `decoder2vec/suites/`: `tasks.yaml` defines every task,
each other file names a suite's tasks (a list, or a mapping of task -> field overrides)."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import yaml

from ..errors import Decoder2VecError, choices_error
from .tasks import Task, make_task

TASKS_FILE = "tasks.yaml"


def _suite_files() -> dict[str, object]:
    folder = resources.files("decoder2vec") / "suites"
    return {Path(f.name).stem: f for f in folder.iterdir() if f.name.endswith(".yaml") and f.name != TASKS_FILE}


def suite_names() -> list[str]:
    names = sorted(_suite_files())
    return ["default"] + [n for n in names if n != "default"]


@functools.lru_cache(maxsize=1)
def task_specs() -> dict[str, dict]:
    """Every known task's YAML entry, by name."""
    text = (resources.files("decoder2vec") / "suites" / TASKS_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def task_names() -> list[str]:
    return list(task_specs())


def _read_suite(suite: str) -> dict:
    files = _suite_files()
    if suite in files:
        return yaml.safe_load(files[suite].read_text(encoding="utf-8"))
    path = Path(suite)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    raise choices_error("suite", suite, suite_names() + ["<path to a suite .yaml>"])


def suite_tasks(suite: str) -> dict[str, dict]:
    """task name -> overrides (possibly empty) for a suite name or a suite YAML file."""
    data = _read_suite(suite) or {}
    listed = data.get("tasks")
    if isinstance(listed, list):
        return {name: {} for name in listed}
    if isinstance(listed, dict):
        return {name: dict(overrides or {}) for name, overrides in listed.items()}
    raise Decoder2VecError(f"suite {suite!r} has no 'tasks' list or mapping")


def load_tasks(suite: str = "default", tasks: list[str] | None = None) -> list[Task]:
    """The Task objects of a suite, or of the named tasks (`tasks` wins over `suite`; an empty
    list is an error).

    Task names may carry the suite's overrides: `--suite quick --tasks stsb-en` gives quick's
    smaller stsb-en.
    """
    overrides = suite_tasks(suite)
    specs = task_specs()
    if isinstance(tasks, str):
        raise Decoder2VecError(f"tasks must be a list of task names, not the string {tasks!r} "
                               f"(did you mean {[t.strip() for t in tasks.split(',')]!r}?)")
    if tasks is not None and (not tasks or not all(isinstance(t, str) and t.strip() for t in tasks)):
        # An empty list (e.g. `--tasks ""`) is a mistake, never "the whole suite".
        raise Decoder2VecError(f"no task named in tasks={list(tasks)!r}; choose from {', '.join(specs)}")
    names = list(tasks) if tasks is not None else list(overrides)
    out = []
    for name in names:
        if name not in specs:
            raise choices_error("task", name, list(specs))
        out.append(make_task(name, {**specs[name], **overrides.get(name, {})}))
    return out
