"""The main job: LLM2Vec end to end on the packaged SmolLM2-135M, stage by stage, with real numbers.

    baselines (causal mean, causal last-token, bidirectional untrained)
    -> MNTP -> SimCSE -> supervised (shipped recipes), evaluating the offline suite after each
    -> one table + results JSON + PNG chart; every stage's Encoder folder under runs/demo/<stage>/

Re-running skips what is finished: trained stages (their folders are complete) and evaluations
(their results JSON exists).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Decoder2VecError

STAGES = ("mntp", "simcse", "supervised")
# name -> Encoder.from_pretrained kwargs for the untrained baselines.
BASELINES = {
    "causal-mean": {"pooling": "mean", "bidirectional": False},
    "causal-last-token": {"pooling": "last_token", "bidirectional": False},
    "bidirectional-mean": {"pooling": "mean", "bidirectional": True},
}
REFERENCE = "minilm"  # all-MiniLM-L6-v2, the small encoder users compare against


def recipes_dir() -> Path:
    """The shipped recipes: recipes/ at the repository root (editable install)."""
    here = Path(__file__).resolve().parent / "recipes"
    if not here.is_dir():
        raise Decoder2VecError(f"recipes folder not found at {here}; run the demo from a clone of the repository")
    return here


@dataclass
class Demo:
    model: str = "smollm2-135m"
    # Default runs/demo, or runs/demo-quick: the quick flavour's stages (a third of the steps) must
    # never be mistaken for the full demo's finished stages.
    output_dir: Path | None = None
    quick: bool = False
    suite: str | None = None  # default: "quick" with --quick, else "default"
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        self.output_dir = Path(self.output_dir or ("runs/demo-quick" if self.quick else "runs/demo"))
        self.suite = self.suite or ("quick" if self.quick else "default")
        # recipes/<model>/<stage>.yaml; --quick uses recipes/<model>/quick/ when the model has one,
        # else the same recipes with a third of the steps.
        self.recipes = recipes_dir() / self.model
        if self.quick and (self.recipes / "quick").is_dir():
            self.recipes = self.recipes / "quick"
        missing = [s for s in STAGES if not (self.recipes / f"{s}.yaml").is_file()]
        if missing:
            raise Decoder2VecError(f"no recipe for stage(s) {', '.join(missing)} of {self.model!r} in {self.recipes}")
        self.results_dir = self.output_dir / "results" / self.suite

    # ------------------------------------------------------------------ steps
    def _evaluate(self, row: str, model, **load_kwargs) -> dict:
        from .evaluation import evaluate, read_results

        path = self.results_dir / f"{row}.json"
        if path.exists():
            print(f"[demo] {row}: evaluated before, reading {path}")
            return read_results(path)
        print(f"[demo] {row}: evaluating suite {self.suite!r}")
        started = time.perf_counter()
        result = evaluate(model, suite=self.suite, name=row, output=path, **load_kwargs)
        self.timings[f"evaluate {row}"] = time.perf_counter() - started
        return result

    def _train(self, stage: str, previous: str) -> Path:
        from .training import train

        output = self.output_dir / stage
        print(f"[demo] {stage}: training from {previous} -> {output}")
        started = time.perf_counter()
        overrides = {}
        if self.quick and self.recipes.name != "quick":
            from .training import load_recipe

            overrides["max_steps"] = max(10, load_recipe(self.recipes / f"{stage}.yaml").max_steps // 3)
        folder = train(self.recipes / f"{stage}.yaml", model=str(previous), output_dir=str(output), **overrides)
        self.timings[f"train {stage}"] = time.perf_counter() - started
        return folder

    def run(self) -> dict:
        from .evaluation import compare, plot

        started = time.perf_counter()
        rows = {}
        for name, kwargs in BASELINES.items():
            rows[name] = self._evaluate(name, self.model, **kwargs)
        previous = self.model
        for stage in STAGES:
            previous = self._train(stage, previous)
            rows[stage] = self._evaluate(stage, str(previous))
        rows[REFERENCE] = self._evaluate("all-MiniLM-L6-v2", REFERENCE)
        self.timings["total"] = time.perf_counter() - started

        table = compare(list(rows.values()))
        summary = {"suite": self.suite, "model": self.model, "quick": self.quick,
                   "rows": rows, "timings_s": {k: round(v, 1) for k, v in self.timings.items()}}
        summary_path = self.output_dir / f"demo-{self.suite}.json"
        summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        chart = plot(list(rows.values()), self.output_dir / f"demo-{self.suite}.png")
        print(table)
        print(f"\n[demo] results: {summary_path}\n[demo] chart:   {chart}")
        print("[demo] wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.timings.items()))
        best = max(STAGES, key=lambda s: rows[s]["averages"]["all"])
        best_baseline = max(BASELINES, key=lambda b: rows[b]["averages"]["all"])
        print(f"[demo] best stage {best}: {rows[best]['averages']['all']:.4f} vs best untrained baseline "
              f"{best_baseline}: {rows[best_baseline]['averages']['all']:.4f}")
        return summary
