"""Low-resource languages: `adapt`, the pipeline run of a language's packaged recipes.

`adapt("da")` = MNTP on Danish prose -> SimCSE on Danish sentences -> supervised contrastive on
real pairs (en-da translations of help paragraphs + English STS-B; German adds German STS-B),
evaluating the language's suite after each stage. Each stage's Encoder folder is kept in
`<output_dir>/<stage>`; a stage whose folder is complete is skipped, so a killed run resumes.

The languages themselves (names, suites, recipe folders, sources) are data: data/languages.py.
Training never reads an evaluation page: data/libreoffice.py splits the help pages once.
"""

from __future__ import annotations

from pathlib import Path

from .data.languages import get_language
from .pipeline import SUITE_FILE, Pipeline, recipe_folder

__all__ = ["adapt", "language_recipes", "evaluation_suite"]


def language_recipes(code: str, quick: bool = False) -> Path:
    """The language's packaged recipe folder (its quick/ flavour with quick)."""
    name = get_language(code).recipes
    return recipe_folder(f"{name}/quick" if quick else name)


def evaluation_suite(code: str, quick: bool = False) -> str:
    """The suite `adapt` scores after each stage: the language's suite, or with quick the smaller
    samples in recipes/<language>/quick/suite.yaml."""
    return str(language_recipes(code, quick=True) / SUITE_FILE) if quick else get_language(code).suite


def adapt(
    language: str,
    *,
    model: str = "gemma3-270m",
    quick: bool = False,
    output_dir: str | Path | None = None,
    evaluate: bool = True,
    stages: tuple[str, ...] | None = None,
    overrides: dict | None = None,
) -> Path:
    """Run a language's recipes stage by stage; returns the last stage's Encoder folder.

    Finished stages (their folder records the stage) are skipped, and so are evaluations already
    made (`<output_dir>/results/`); `<output_dir>/results.json` sums them up. `overrides` apply to
    every stage (e.g. {"max_steps": 2} for a smoke run).
    """
    lang = get_language(language)
    pipeline = Pipeline(language_recipes(lang.code, quick), model=model,
                        output_dir=output_dir or f"runs/adapt-{lang.code}{'-quick' if quick else ''}",
                        suite=evaluation_suite(lang.code, quick), evaluate=evaluate, stages=stages,
                        overrides=dict(overrides or {}))
    return pipeline.run()["final"]
