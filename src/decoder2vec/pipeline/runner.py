"""The pipeline runner: a folder of stage recipes trained one after the other, evaluated after each.

    Pipeline("smollm2-135m/quick").run()          # a packaged recipe folder, or any folder path
    decoder2vec run smollm2-135m/quick            # the same from the CLI

A recipe folder holds `<stage>.yaml` for some of training's stages (`STAGE_CONFIGS`, in that
order: adding a stage to training adds it here) and optionally `suite.yaml`, the evaluation suite
its results are reported on. Each stage starts from the previous stage's folder; the first from
`model` (default: the first recipe's). Every stage's Encoder folder is `<output_dir>/<stage>`.

Rows: `baselines` (untrained models, evaluated first), the stages, then `references` (other
models for comparison). Each row's evaluation is written to `<output_dir>/results/<suite>/<row>.json`
and summarised in `<output_dir>/results.json` ({row: {model, suite, average, tasks, seconds}}).
Re-running skips what is finished: trained stages (their folder records the stage with the same
recipe; a changed recipe is training's error naming the keys, or with `force: true` a retrain)
and evaluations (their results file exists), so a killed run resumes.

The demo (demo.py) and `adapt` (languages.py) are this runner with their own rows and folders.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import evaluation, training
from ..errors import Decoder2VecError, choices_error
from ..folder.config import finished
from ..results import read_results, write_results
from ..training.config import STAGE_CONFIGS, load_recipe
from ..training.engine import finished_as_recipe

log = logging.getLogger(__name__)

SUITE_FILE = "suite.yaml"


def packaged_recipes() -> Path:
    """The recipes shipped inside the package (found in an installed wheel too)."""
    return Path(str(resources.files("decoder2vec") / "recipes"))


def packaged_recipe_names() -> list[str]:
    """Every packaged recipe folder, named as `recipe_folder` takes it: "smollm2-135m/quick"."""
    root = packaged_recipes()
    return sorted({p.parent.relative_to(root).as_posix() for p in root.rglob("*.yaml") if p.stem in STAGE_CONFIGS})


def recipe_folder(recipes: str | Path) -> Path:
    """A folder of stage recipes: a path that exists, else a packaged name ("smollm2-135m/quick")."""
    path = Path(recipes).expanduser()
    if path.is_dir():
        return path
    packaged = packaged_recipes() / str(recipes)
    if str(recipes) and packaged.is_dir() and not path.is_absolute():
        return packaged
    raise choices_error("recipe folder", str(recipes), packaged_recipe_names() + ["<path to a folder of <stage>.yaml>"])


def stage_recipes(folder: Path) -> dict[str, Path]:
    """{stage: recipe path} for every registered stage with a `<stage>.yaml` in `folder`, in the
    stage registry's order."""
    recipes = {stage: folder / f"{stage}.yaml" for stage in STAGE_CONFIGS if (folder / f"{stage}.yaml").is_file()}
    if not recipes:
        raise Decoder2VecError(f"{folder} holds no stage recipe (looked for {', '.join(f'{s}.yaml' for s in STAGE_CONFIGS)})")
    return recipes


@dataclass
class Pipeline:
    recipes: str | Path  # a recipe folder or a packaged recipe name
    model: str | None = None  # base model; default: the first stage recipe's `model`
    output_dir: str | Path | None = None  # default: the folder holding the first recipe's output_dir
    suite: str | None = None  # default: the recipe folder's suite.yaml, else "default"
    evaluate: bool = True  # evaluate every row; False: train only
    stages: tuple[str, ...] | None = None  # a subset of the folder's stages (default: all)
    overrides: dict = field(default_factory=dict)  # recipe keys applied to every stage
    baselines: dict[str, dict] = field(default_factory=lambda: {"base": {}})  # row -> Encoder load kwargs
    references: dict[str, str] = field(default_factory=dict)  # row -> model, evaluated after the stages
    timings: dict[str, float] = field(default_factory=dict, init=False)  # seconds per step of run()

    def __post_init__(self):
        self.folder = recipe_folder(self.recipes)
        self.chain = stage_recipes(self.folder)
        chosen = tuple(self.stages) if self.stages is not None else tuple(self.chain)
        bad = [s for s in chosen if s not in self.chain]
        if bad:
            raise choices_error("stage", bad[0], list(self.chain))
        self.stages = tuple(s for s in self.chain if s in chosen)  # always in chain order
        first_recipe = next(iter(self.chain.values()))
        first = load_recipe(first_recipe, **self.overrides)
        if not (self.model or first.model):
            raise Decoder2VecError(f"{first_recipe} names no model; pass model= (--model)")
        self.model = str(self.model or first.model)
        self.output_dir = Path(self.output_dir or Path(first.output_dir).parent)
        if self.suite is None:
            suite_file = self.folder / SUITE_FILE
            self.suite = str(suite_file) if suite_file.is_file() else "default"
        # A suite file is named by its folder and stem ("quick-suite"), a packaged suite by its name.
        path = Path(self.suite)
        label = f"{path.parent.name}-{path.stem}" if path.suffix in (".yaml", ".yml") else self.suite
        self.results_dir = self.output_dir / "results" / label

    # ------------------------------------------------------------------ the plan
    def configs(self) -> dict:
        """{stage: validated StageConfig} as run() would train them now (model and output_dir set)."""
        out, previous = {}, self.model
        for stage in self.stages:
            previous = self._start(stage, previous)
            out[stage] = load_recipe(self.chain[stage], **{**self.overrides, "model": str(previous),
                                                           "output_dir": str(self.output_dir / stage)})
            previous = out[stage].output_dir
        return out

    def _start(self, stage: str, previous) -> str:
        """What a stage starts from: the chain's stage before it when that one is finished here (so
        `stages=("simcse", "supervised")` continues an earlier MNTP run), else `previous`."""
        chain = list(self.chain)
        index = chain.index(stage)
        before = self.output_dir / chain[index - 1] if index else None
        return str(before) if before is not None and finished(before, chain[index - 1]) else str(previous)

    # ------------------------------------------------------------------ steps
    def evaluate_row(self, row: str, model, **load_kwargs) -> dict:
        """One row's results: read when evaluated before, else evaluated and written."""
        path = self.results_dir / f"{row}.json"
        if path.exists():
            print(f"[pipeline] {row}: evaluated before, reading {path}", flush=True)
            return read_results(path)
        print(f"[pipeline] {row}: evaluating suite {self.suite!r}", flush=True)
        started = time.perf_counter()
        result = evaluation.evaluate(str(model), suite=self.suite, name=row, output=path, **load_kwargs)
        self.timings[f"evaluate {row}"] = time.perf_counter() - started
        return result

    def train_stage(self, stage: str, previous: str) -> Path:
        """Train one stage into <output_dir>/<stage>; a stage finished there with the same recipe is
        skipped, one finished with another recipe goes to training, which names the differing
        keys (or, with force: true, trains again)."""
        output = self.output_dir / stage
        values = {**self.overrides, "model": str(previous), "output_dir": str(output)}
        done, changed = finished_as_recipe(load_recipe(self.chain[stage], **values))
        if done is not None and not changed:
            log.warning("%s already finished in %s, skipping", stage, output)
            return output
        print(f"[pipeline] {stage}: training from {previous} -> {output}", flush=True)
        started = time.perf_counter()
        folder = training.train(str(self.chain[stage]), **values)
        self.timings[f"train {stage}"] = time.perf_counter() - started
        return Path(folder)

    def run(self) -> dict:
        """Train and evaluate every row; returns {"rows": {row: results}, "final": last stage folder,
        "timings_s": {...}}. Rows are empty with evaluate=False."""
        started = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rows: dict[str, dict] = {}

        def record(row: str, model, **load_kwargs):
            if self.evaluate:
                rows[row] = self.evaluate_row(row, model, **load_kwargs)
                self._add_to_summary(row, str(model), rows[row])

        for row, load_kwargs in self.baselines.items():
            record(row, self.model, **load_kwargs)
        previous = self.model
        for stage in self.stages:
            previous = self.train_stage(stage, self._start(stage, previous))
            record(stage, previous)
        for row, model in self.references.items():
            record(row, model)
        self.timings["total"] = time.perf_counter() - started
        return {"rows": rows, "final": Path(previous),
                "timings_s": {k: round(v, 1) for k, v in self.timings.items()}}

    def _add_to_summary(self, row: str, model: str, result: dict) -> None:
        path = self.output_dir / "results.json"
        summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        summary[row] = {"model": model, "suite": self.suite, "average": result["averages"].get("all"),
                        "tasks": {name: task["main_score"] for name, task in result["tasks"].items()},
                        "seconds": result.get("seconds")}
        write_results(summary, path)


__all__ = ["Pipeline", "recipe_folder", "stage_recipes", "packaged_recipes", "packaged_recipe_names"]
