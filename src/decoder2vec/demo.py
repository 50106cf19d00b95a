"""The main job: LLM2Vec end to end on the packaged SmolLM2-135M, stage by stage, with real numbers.

    baselines (causal mean, causal last-token, bidirectional untrained)
    -> MNTP -> SimCSE -> supervised (shipped recipes), evaluating the offline suite after each
    -> one table + results JSON + PNG chart; every stage's Encoder folder under runs/demo/<stage>/

The pipeline runner (pipeline.py) does the work, so re-running skips what is finished: trained
stages (their folders are complete) and evaluations (their results JSON exists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .evaluation import compare, plot
from .pipeline import Pipeline

# name -> Encoder.from_pretrained kwargs for the untrained baselines.
BASELINES = {
    "causal-mean": {"pooling": "mean", "bidirectional": False},
    "causal-last-token": {"pooling": "last_token", "bidirectional": False},
    "bidirectional-mean": {"pooling": "mean", "bidirectional": True},
}
REFERENCES = {"all-MiniLM-L6-v2": "minilm"}  # the small encoder users compare against


@dataclass
class Demo:
    recipes: str = "smollm2-135m"  # a packaged recipe folder (its quick/ flavour with quick)
    # Default runs/demo, or runs/demo-quick: the quick flavour's stages must never be mistaken
    # for the full demo's finished stages.
    output_dir: Path | None = None
    quick: bool = False  # the quick recipes (<recipes>/quick) and the quick suite
    suite: str | None = None  # default: "quick" with quick, else "default"

    def run(self) -> dict:
        suite = self.suite or ("quick" if self.quick else "default")
        output_dir = Path(self.output_dir or ("runs/demo-quick" if self.quick else "runs/demo"))
        pipeline = Pipeline(f"{self.recipes}/quick" if self.quick else self.recipes, output_dir=output_dir,
                            suite=suite, baselines=BASELINES, references=REFERENCES)
        done = pipeline.run()
        rows = done["rows"]
        table = compare(list(rows.values()))
        summary = {"suite": suite, "model": pipeline.model, "quick": self.quick, "rows": rows,
                   "timings_s": done["timings_s"]}
        summary_path = output_dir / f"demo-{suite}.json"
        summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        chart = plot(list(rows.values()), output_dir / f"demo-{suite}.png")
        print(table)
        print(f"\n[demo] results: {summary_path}\n[demo] chart:   {chart}")
        print("[demo] wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in done["timings_s"].items()))
        best = max(pipeline.stages, key=lambda s: rows[s]["averages"]["all"])
        best_baseline = max(BASELINES, key=lambda b: rows[b]["averages"]["all"])
        print(f"[demo] best stage {best}: {rows[best]['averages']['all']:.4f} vs best untrained baseline "
              f"{best_baseline}: {rows[best_baseline]['averages']['all']:.4f}")
        return summary
