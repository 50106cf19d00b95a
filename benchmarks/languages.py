"""Danish and German: base models vs the adapted Gemma-3-270M, one markdown table for docs/languages.md.

    .venv/bin/decoder2vec adapt --language da --quick                  # distill -> runs/adapt-da-distill-quick
    .venv/bin/decoder2vec adapt --language da --quick --recipe paper   # paper -> runs/adapt-da-quick
    .venv/bin/python benchmarks/languages.py                 # baselines + the adapt runs' results
    .venv/bin/python benchmarks/languages.py --full          # the full 'da' / 'de' suites instead

Evaluates each baseline on the language suite `adapt` uses (with --quick: the smaller samples in
recipes/gemma3-270m-<lang>/quick/suite.yaml), reads the adapted stages' scores from
runs/adapt-<lang>[-distill][-quick]/results.json (both recipes), and prints one row per model: each task's main score, the
average, and the average without the LibreOffice help tasks (the domain the recipes train on;
the other tasks come from sources no recipe reads). Baseline results are kept in runs/languages/
so a rerun only evaluates what is new.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from decoder2vec.evaluation import evaluate, load_tasks
from decoder2vec.evaluation.runner import LIBREOFFICE_SOURCES, task_source
from decoder2vec.pipeline.languages import default_output_dir, evaluation_suite

# (row label, evaluate() keyword arguments)
BASELINES = [
    ("Gemma-3-270M causal, mean", dict(model="gemma3-270m", bidirectional=False, pooling="mean")),
    ("Gemma-3-270M causal, last token", dict(model="gemma3-270m", bidirectional=False, pooling="last_token")),
    ("SmolLM2-135M {smollm2}", None),  # filled in by smollm2_baseline()
    ("all-MiniLM-L6-v2", dict(model="minilm")),
]
STAGE_LABELS = {"base": "Gemma-3-270M bidirectional, mean (no training)", "mntp": "paper: + MNTP",
                "simcse": "paper: + MNTP + SimCSE", "supervised": "paper: + MNTP + SimCSE + supervised",
                "distill": "distill: all-MiniLM-L6-v2 distilled through translations"}


def smollm2_baseline() -> tuple[str, dict]:
    """SmolLM2's best English model from the demo, if its runs exist; else the base model."""
    for stage in ("supervised", "simcse", "mntp"):
        folder = Path("runs/demo") / stage
        if (folder / "decoder2vec_config.json").is_file():
            return f"SmolLM2-135M demo ({stage}, English-trained)", dict(model=str(folder))
    return "SmolLM2-135M bidirectional, mean (no training; no demo run found)", dict(
        model="smollm2-135m", bidirectional=True, pooling="mean")


def _libreoffice(task: str) -> bool:
    return task_source(task, {}) in LIBREOFFICE_SOURCES


def _mean(values) -> str:
    values = list(values)
    return f"{sum(values) / len(values):.3f}" if values else "–"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the full da/de suites (default: the quick ones)")
    p.add_argument("--languages", nargs="+", default=["da", "de"])
    p.add_argument("--skip-baselines", action="store_true", help="only the adapt runs' rows")
    args = p.parse_args(argv)

    quick = not args.full
    flavour = "quick" if quick else "full"
    for lang in args.languages:
        suite = evaluation_suite(lang, quick)
        rows = []
        results = {}  # both recipes' rows: paper's stages, then distill's (each run's own results.json)
        for recipe in ("paper", "distill"):
            run = default_output_dir(lang, recipe, quick)
            if (run / "results.json").is_file():
                results = {**json.loads((run / "results.json").read_text()), **results}
        baselines = [] if args.skip_baselines else [b if b[1] else smollm2_baseline() for b in BASELINES]
        for label, kwargs in baselines:
            slug = "".join(c if c.isalnum() else "-" for c in label.lower())
            cache = Path("runs/languages") / f"{lang}-{flavour}-{slug}.json"
            report = json.loads(cache.read_text()) if cache.is_file() else None
            if report is None or set(report["tasks"]) != {t.name for t in load_tasks(suite)}:  # suite changed
                kwargs = dict(kwargs)
                report = evaluate(kwargs.pop("model"), suite=suite, output=cache, name=label, **kwargs)
            scores = {name: t["main_score"] for name, t in report["tasks"].items()}
            rows.append((label, scores, report["seconds"]))
            print(f"[{lang}] {label}: {sum(scores.values()) / len(scores):.4f}", file=sys.stderr, flush=True)
        # Gemma's causal rows, then the bidirectional base and each trained stage, then the others.
        stages = [(STAGE_LABELS[s], results[s]["tasks"], results[s].get("seconds"))
                  for s in ("base", "mntp", "simcse", "supervised", "distill") if s in results]
        rows = rows[:2] + stages + rows[2:]
        if not rows:
            continue
        tasks = list(rows[0][1])
        shown = os.path.relpath(suite) if Path(suite).is_absolute() else suite
        print(f"\n### {lang} ({flavour} suite: {shown})\n")
        print("| model | " + " | ".join(tasks) + " | average | without LibreOffice |")
        print("|---" * (len(tasks) + 3) + "|")
        for label, scores, _ in rows:
            cells = [f"{scores[t]:.3f}" if t in scores else "–" for t in tasks]
            if not set(tasks) <= set(scores):  # e.g. a run evaluated before the suite gained tasks
                print(f"| {label} | " + " | ".join(cells) + " | – (not every task) | – |")
                continue
            print(f"| {label} | " + " | ".join(cells) + f" | **{_mean(scores[t] for t in tasks)}** | "
                  f"**{_mean(scores[t] for t in tasks if not _libreoffice(t))}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
