"""Low-resource languages: `adapt`, the pipeline run of a language's packaged recipes.

Three recipes (data/languages.py `RECIPES`), chosen with `recipe=` (`--recipe`):
- `distill-embeddinggemma` (the default): one stage, EmbeddingGemma-300M as teacher (`make anchors`),
  its own vectors learnt on help page title -> page text in the language and on en-da / en-de
  translations of the training help paragraphs;
- `distill`: one stage, the packaged all-MiniLM-L6-v2 as teacher, its in-batch similarities learnt
  on the translations only (offline with `make install` alone);
- `paper`: LLM2Vec's chain, MNTP on the language's prose -> SimCSE on its sentences ->
  supervised contrastive on real pairs (en-da translations + English STS-B; German adds German STS-B).
The language's suite is evaluated after each stage. Each stage's Encoder folder is kept in
`<output_dir>/<stage>`; a stage whose folder is complete is skipped, so a killed run resumes.
It is the Pipeline (runner.py) with the language's preset (presets.py: "adapt-<code>").

The languages themselves (names, suites, recipe folders, sources) are data: data/languages.py.
Training never reads an evaluation page: data/libreoffice.py splits the help pages once.
"""

from __future__ import annotations

from pathlib import Path

from ..data.languages import get_language
from .presets import PRESETS, Preset
from .runner import Pipeline

__all__ = ["adapt", "language_recipes", "evaluation_suite", "default_output_dir", "DEFAULT_RECIPE"]

DEFAULT_RECIPE = PRESETS["adapt-da"].default_recipe  # every language's preset has the same


def preset(code: str) -> Preset:
    """The language's preset; an unknown code is an error naming the languages."""
    return PRESETS[f"adapt-{get_language(code).code}"]


def language_recipes(code: str, quick: bool = False, *, recipe: str = DEFAULT_RECIPE) -> Path:
    """The language's packaged recipe folder for `recipe` (its quick/ flavour with quick)."""
    return preset(code).folder(recipe, quick)


def evaluation_suite(code: str, quick: bool = False, *, recipe: str = DEFAULT_RECIPE) -> str:
    """The suite `adapt` scores after each stage: the language's suite, or with quick the smaller
    samples in the quick recipe folder's suite.yaml (the same file for every recipe)."""
    return preset(code).suite_for(recipe, quick)


def default_output_dir(code: str, recipe: str = DEFAULT_RECIPE, quick: bool = False) -> Path:
    """runs/adapt-<lang>[-<recipe>][-quick] (presets.py: the paper recipe keeps its old name)."""
    return preset(code).output_dir(recipe, quick)


def adapt(
    language: str,
    *,
    model: str = "gemma3-270m",
    recipe: str = DEFAULT_RECIPE,
    quick: bool = False,
    output_dir: str | Path | None = None,
    evaluate: bool = True,
    stages: tuple[str, ...] | None = None,
    overrides: dict | None = None,
) -> Path:
    """Run a language's recipes stage by stage; returns the last stage's Encoder folder.

    `recipe`: "distill-embeddinggemma" or "distill" (one distillation stage, teacher EmbeddingGemma-300M or
    all-MiniLM-L6-v2) or "paper" (MNTP -> SimCSE -> supervised).
    Finished stages (their folder records the stage) are skipped, and so are evaluations already
    made (`<output_dir>/results/`); `<output_dir>/results.json` sums them up. `overrides` apply to
    every stage (e.g. {"max_steps": 2} for a smoke run).
    """
    lang = get_language(language)
    pipeline = Pipeline(language_recipes(lang.code, quick, recipe=recipe), model=model,
                        output_dir=output_dir or default_output_dir(lang.code, recipe, quick),
                        suite=evaluation_suite(lang.code, quick, recipe=recipe), evaluate=evaluate, stages=stages,
                        overrides=dict(overrides or {}), baselines=preset(lang.code).baselines)
    return pipeline.run()["final"]
