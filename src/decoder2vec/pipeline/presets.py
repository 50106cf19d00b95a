"""The runner's presets: `decoder2vec demo` and `decoder2vec adapt LANG` are the one Pipeline
(runner.py) with a row of this table: which packaged recipe folder each recipe name means, the
default recipe, the suite evaluated after each stage, the rows beside the stages, and the runs folder.

    PRESETS["demo"]       SmolLM2-135M: recipes distill | paper, three untrained baselines, the anchors
    PRESETS["adapt-da"]   one per language of data/languages.py: its recipes and its suite

A preset's runs folder is runs/<name>[-<recipe>][-quick]: one folder per recipe and flavour, so a
resumed run never reads another recipe's rows; the paper recipe keeps the name it had before there
was a choice (runs/demo, runs/adapt-da-quick), so its earlier runs resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.languages import LANGUAGES
from ..errors import choices_error
from .runner import SUITE_FILE, recipe_folder

# The recipe whose runs folder has no recipe in its name (it was the only recipe once).
KEEPS_OLD_NAME = "paper"
RUNS = Path("runs")

# name -> Encoder.from_pretrained kwargs for the demo's untrained baselines.
DEMO_BASELINES = {
    "causal-mean": {"pooling": "mean", "bidirectional": False},
    "causal-last-token": {"pooling": "last_token", "bidirectional": False},
    "bidirectional-mean": {"pooling": "mean", "bidirectional": True},
}


@dataclass(frozen=True)
class Preset:
    name: str  # the runs folder's name
    recipes: dict[str, str] = field(hash=False)  # recipe -> packaged recipe folder (each has a quick/ flavour)
    default_recipe: str
    suite: str  # evaluated after each stage
    quick_suite: str | None  # with quick; None: the quick recipe folder's suite.yaml
    baselines: dict[str, dict] = field(hash=False)  # row -> Encoder load kwargs, evaluated before training
    anchors: bool = False  # also evaluate the anchors installed here (folder/anchors.installed_anchors)

    def check(self, recipe: str) -> str:
        if recipe not in self.recipes:
            raise choices_error("recipe", recipe, self.recipes)
        return recipe

    def folder_name(self, recipe: str, quick: bool = False) -> str:
        """The packaged recipe folder's name, e.g. "smollm2-135m/quick"."""
        folder = self.recipes[self.check(recipe)]
        return f"{folder}/quick" if quick else folder

    def folder(self, recipe: str, quick: bool = False) -> Path:
        return recipe_folder(self.folder_name(recipe, quick))

    def suite_for(self, recipe: str, quick: bool = False) -> str:
        if not quick:
            return self.suite
        return self.quick_suite or str(self.folder(recipe, True) / SUITE_FILE)

    def output_dir(self, recipe: str | None, quick: bool = False, *, label: str | None = None) -> Path:
        """runs/<name>[-<recipe or label>][-quick]; `label` (a recipe folder's own name) instead of
        a recipe name, which never drops out."""
        part = label if label is not None else ("" if self.check(recipe) == KEEPS_OLD_NAME else recipe)
        return RUNS / f"{self.name}{f'-{part}' if part else ''}{'-quick' if quick else ''}"


PRESETS = {
    "demo": Preset("demo", {"distill": "smollm2-135m/distill", "paper": "smollm2-135m"},
                   # issue 17: English distill lost to LLM2Vec's chain (docs/results.md), so paper stays the default
                   default_recipe="paper", suite="default", quick_suite="quick", baselines=DEMO_BASELINES,
                   anchors=True),
    # Measured best on the Danish and German tasks (issue 25, docs/results.md "Against the anchors");
    # "distill" (MiniLM teacher, issue 17) needs no download; "paper" is LLM2Vec's chain.
    **{f"adapt-{code}": Preset(f"adapt-{code}", dict(lang.recipes), default_recipe="distill-embeddinggemma",
                               suite=lang.suite, quick_suite=None, baselines={"base": {}})
       for code, lang in LANGUAGES.items()},
}

__all__ = ["Preset", "PRESETS", "DEMO_BASELINES", "KEEPS_OLD_NAME"]
