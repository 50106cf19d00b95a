"""The main job: the packaged SmolLM2-135M made an encoder, stage by stage, with real numbers.

    baselines (causal mean, causal last-token, bidirectional untrained)
    -> the recipe's stages (shipped recipes), evaluating the offline suite after each
    -> one table + results JSON + PNG chart; every stage's Encoder folder under <output_dir>/<stage>/

Recipes (`recipe=`, `--recipe`): "distill" (one stage learning the packaged all-MiniLM-L6-v2's
similarities on Wikipedia sentences) or "paper" (LLM2Vec: MNTP -> SimCSE -> supervised); `recipes=`
(`--recipes`), any recipe folder, overrides both.

The pipeline runner (runner.py) does the work, so re-running skips what is finished: trained
stages (their folders are complete) and evaluations (their results JSON exists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..folder.anchors import installed_anchors
from ..errors import choices_error
from ..evaluation import compare, plot
from .runner import Pipeline, packaged_recipes, recipe_folder

# name -> Encoder.from_pretrained kwargs for the untrained baselines.
BASELINES = {
    "causal-mean": {"pooling": "mean", "bidirectional": False},
    "causal-last-token": {"pooling": "last_token", "bidirectional": False},
    "bidirectional-mean": {"pooling": "mean", "bidirectional": True},
}
# recipe -> packaged recipe folder (each has a quick/ flavour); the same names as adapt's recipes.
RECIPES = {"distill": "smollm2-135m/distill", "paper": "smollm2-135m"}
DEFAULT_RECIPE = "paper"  # issue 17: English distill lost to LLM2Vec's chain (docs/results.md), so paper stays the default


@dataclass
class Demo:
    recipe: str = DEFAULT_RECIPE  # "distill" or "paper" (RECIPES)
    recipes: str | None = None  # any recipe folder (its quick/ flavour with quick): overrides `recipe`
    # Default runs/demo-<recipe>[-quick] (the paper recipe: runs/demo[-quick], its name before there
    # was a choice), runs/demo-<folder>[-quick] for `recipes`: the baselines' results are read back
    # on a re-run, so one recipe's or flavour's rows must never be mistaken for another's.
    output_dir: Path | None = None
    quick: bool = False  # the quick recipes (<folder>/quick) and the quick suite
    suite: str | None = None  # default: "quick" with quick, else "default"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise choices_error("recipe", self.recipe, RECIPES)

    def folder(self) -> str:
        """The recipe folder the demo runs: `recipes`, else the recipe's packaged one; quick/ with quick."""
        folder = str(self.recipes) if self.recipes is not None else RECIPES[self.recipe]
        return f"{folder}/quick" if self.quick else folder

    def default_output_dir(self) -> Path:
        if self.recipes is None:
            name = "demo" if self.recipe == "paper" else f"demo-{self.recipe}"
        else:  # a packaged folder by its name ("gemma3-270m-da/distill" -> demo-gemma3-270m-da-distill), else its own
            folder = recipe_folder(self.recipes).resolve()
            packaged = packaged_recipes().resolve()
            label = folder.relative_to(packaged).as_posix() if folder.is_relative_to(packaged) else folder.name
            name = f"demo-{label.replace('/', '-')}"
        return Path("runs") / (f"{name}-quick" if self.quick else name)

    def run(self) -> dict:
        suite = self.suite or ("quick" if self.quick else "default")
        output_dir = Path(self.output_dir or self.default_output_dir())
        pipeline = Pipeline(self.folder(), output_dir=output_dir,
                            suite=suite, baselines=BASELINES, references=installed_anchors())
        done = pipeline.run()
        rows = done["rows"]
        table = compare(list(rows.values()))
        summary = {"suite": suite, "model": pipeline.model, "recipes": str(pipeline.folder), "quick": self.quick,
                   "rows": rows, "timings_s": done["timings_s"]}
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
