"""Side-by-side tables and a bar chart of evaluation results (dicts from `evaluate()`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import Decoder2VecError
from .runner import LANGUAGES, NO_LIBREOFFICE, averages as task_averages


def _check(results_list) -> list[dict]:
    if not results_list:
        raise Decoder2VecError("compare needs at least one results dict or file")
    for i, results in enumerate(results_list):
        if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
            raise Decoder2VecError(f"results #{i + 1} is not an evaluate() result (no 'tasks')")
    return list(results_list)


def _column_labels(results_list) -> list[str]:
    """Column headers: each result's model label (made once, by `model_label`, when it was written)."""
    labels = [str(r.get("model", f"model {i + 1}")) for i, r in enumerate(results_list)]
    # The same model twice (e.g. before/after training with the base name) needs telling apart.
    return [f"{label} [{i + 1}]" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _task_rows(results_list) -> list[str]:
    names = []
    for results in results_list:
        names += [n for n in results["tasks"] if n not in names]
    return names


def compare(results_list) -> str:
    """A plain-text table: one row per task (main score x100), then averages per language and
    overall; one column per result. Missing tasks show as '-'."""
    results_list = _check(results_list)
    labels = _column_labels(results_list)
    names = _task_rows(results_list)
    legend = []
    if max(len(label) for label in labels) > 24:
        # Long model names would make every column as wide as the longest: letter them instead.
        legend = [f"  {chr(65 + i)} = {label}" for i, label in enumerate(labels)]
        labels = [chr(65 + i) for i in range(len(labels))]
    width = max(8, *(len(label) for label in labels))
    rows = {name: f"{name} ({info['language']}, {info['metric']})"
            for name in names for info in [next(r["tasks"][name] for r in results_list if name in r["tasks"])]}
    first = max(34, len("average de without LibreOffice") + 2, *(len(row) + 2 for row in rows.values()))
    header = f"{'task':<{first}}" + "".join(f"{label:>{width + 2}}" for label in labels)
    lines = legend + [header, "-" * len(header)]
    for name in names:
        row = rows[name]
        cells = [r["tasks"][name]["main_score"] * 100 if name in r["tasks"] else None for r in results_list]
        lines.append(f"{row:<{first}}" + "".join(_cell(c, width) for c in cells))
    lines.append("-" * len(header))
    for key in _average_keys():
        cells = [_averages(r).get(key) for r in results_list]
        if any(c is not None for c in cells):
            label = "average (all tasks)" if key == "all" else f"average {key}"
            if key.endswith(NO_LIBREOFFICE):
                label = f"average {key.removesuffix(NO_LIBREOFFICE)} without LibreOffice"
            lines.append(f"{label:<{first}}" + "".join(_cell(None if c is None else c * 100, width) for c in cells))
    suites = {r.get("suite") for r in results_list}
    if len(suites) > 1:
        lines.append(f"note: different suites ({', '.join(map(str, sorted(suites, key=str)))}): "
                     "sample sizes may differ, compare with care")
    return "\n".join(lines)


def _averages(results: dict) -> dict:
    """The file's averages; an average it lacks (a file written before "<lang>-no-libreoffice"
    existed) is computed from its tasks when every task records its language and main score."""
    stored = results.get("averages") or {}
    tasks = results["tasks"].values()
    if tasks and all(isinstance(t, dict) and "language" in t and "main_score" in t for t in tasks):
        return {**task_averages(results["tasks"]), **stored}
    return stored


def _average_keys() -> list[str]:
    """Each language's average, then the same without its LibreOffice tasks, then all tasks."""
    return [k for lang in LANGUAGES for k in (lang, lang + NO_LIBREOFFICE)] + ["all"]


def _cell(value, width: int) -> str:
    return f"{'-':>{width + 2}}" if value is None else f"{value:>{width + 2}.2f}"


def plot(results_list, path: str | os.PathLike) -> Path:
    """A grouped bar chart (PNG): main score x100 per task and per-language averages, one colour
    per result."""
    results_list = _check(results_list)
    labels = _column_labels(results_list)
    names = _task_rows(results_list)
    averages = [k for k in _average_keys() if any(k in _averages(r) for r in results_list)]
    rows = names + [f"avg {k}" for k in averages]
    values = np.full((len(results_list), len(rows)), np.nan)
    for i, results in enumerate(results_list):
        for j, name in enumerate(names):
            if name in results["tasks"]:
                values[i, j] = results["tasks"][name]["main_score"] * 100
        for j, key in enumerate(averages):
            if key in _averages(results):
                values[i, len(names) + j] = _averages(results)[key] * 100
    n = len(results_list)
    # A Figure without pyplot: no global backend or figure registry touched, works without a display.
    fig = Figure(figsize=(min(18.0, max(8.0, 2 + len(rows) * (0.3 + 0.15 * n))), 5.2))
    ax = fig.subplots()
    bar = 0.8 / n
    x = np.arange(len(rows))
    for i, label in enumerate(labels):
        bars = ax.bar(x + (i - (n - 1) / 2) * bar, np.nan_to_num(values[i]), bar, label=label)
        if len(rows) * n <= 40:
            ax.bar_label(bars, labels=[("" if np.isnan(v) else f"{v:.0f}") for v in values[i]], fontsize=7, padding=1)
    ax.axvline(len(names) - 0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, rows, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("main score x100")
    ax.set_ylim(0, 105)
    ax.set_title("decoder2vec evaluation: " + ", ".join(sorted({str(r.get("suite")) for r in results_list})))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.32), ncol=min(n, 3), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
