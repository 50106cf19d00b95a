"""The main job: the packaged SmolLM2-135M made an encoder, stage by stage, with real numbers.

    baselines (causal mean, causal last-token, bidirectional untrained)
    -> the recipe's stages (shipped recipes), evaluating the offline suite after each
    -> one table + results JSON + PNG chart; every stage's Encoder folder under <output_dir>/<stage>/

Recipes (`recipe=`, `--recipe`): "distill" (one stage learning the packaged all-MiniLM-L6-v2's
similarities on Wikipedia sentences) or "paper" (LLM2Vec: MNTP -> SimCSE -> supervised); `recipes=`
(`--recipes`), any recipe folder, overrides both.

The pipeline runner (runner.py) does the work with the "demo" preset (presets.py: its recipes,
baselines, suites and runs folder), so re-running skips what is finished: trained stages (their
folders are complete) and evaluations (their results JSON exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json_atomic
from ..evaluation import compare, plot
from ..folder.anchors import installed_anchors
from .presets import PRESETS
from .runner import Pipeline, packaged_recipes, recipe_folder

PRESET = PRESETS["demo"]
BASELINES = PRESET.baselines
RECIPES = PRESET.recipes  # the same names as adapt's recipes
DEFAULT_RECIPE = PRESET.default_recipe


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
        PRESET.check(self.recipe)

    def folder(self) -> str:
        """The recipe folder the demo runs: `recipes`, else the recipe's packaged one; quick/ with quick."""
        if self.recipes is None:
            return PRESET.folder_name(self.recipe, self.quick)
        return f"{self.recipes}/quick" if self.quick else str(self.recipes)

    def default_output_dir(self) -> Path:
        if self.recipes is None:
            return PRESET.output_dir(self.recipe, self.quick)
        # a packaged folder by its name ("gemma3-270m-da/distill" -> demo-gemma3-270m-da-distill), else its own
        folder = recipe_folder(self.recipes).resolve()
        packaged = packaged_recipes().resolve()
        label = folder.relative_to(packaged).as_posix() if folder.is_relative_to(packaged) else folder.name
        return PRESET.output_dir(None, self.quick, label=label.replace("/", "-"))

    def run(self) -> dict:
        suite = self.suite or PRESET.suite_for(self.recipe, self.quick)
        output_dir = Path(self.output_dir or self.default_output_dir())
        pipeline = Pipeline(self.folder(), output_dir=output_dir, suite=suite, baselines=BASELINES,
                            references=installed_anchors() if PRESET.anchors else {})
        done = pipeline.run()
        rows = done["rows"]
        table = compare(list(rows.values()))
        summary = {"suite": suite, "model": pipeline.model, "recipes": str(pipeline.folder), "quick": self.quick,
                   "rows": rows, "timings_s": done["timings_s"]}
        summary_path = output_dir / f"demo-{suite}.json"
        write_json_atomic(summary_path, summary, indent=2)
        chart = plot(list(rows.values()), output_dir / f"demo-{suite}.png")
        print(table)
        print(f"\n[demo] results: {summary_path}\n[demo] chart:   {chart}")
        print("[demo] wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in done["timings_s"].items()))
        best = max(pipeline.stages, key=lambda s: rows[s]["averages"]["all"])
        best_baseline = max(BASELINES, key=lambda b: rows[b]["averages"]["all"])
        print(f"[demo] best stage {best}: {rows[best]['averages']['all']:.4f} vs best untrained baseline "
              f"{best_baseline}: {rows[best_baseline]['averages']['all']:.4f}")
        return summary
