"""Low-resource languages: Danish and German recipes as data, and `adapt`, the chain that runs one.

`adapt("da")` = MNTP on Danish prose -> SimCSE on Danish sentences -> supervised contrastive on
real pairs (en-da translations of help paragraphs + English STS-B; German adds German STS-B),
evaluating the language's suite after each stage. Each stage's Encoder folder is kept in
`<output_dir>/<stage>`; a stage whose folder is complete is skipped, so a killed run resumes.

Train/test separation. The evaluation suites draw their Danish/German tasks from the LibreOffice
help pages; training must never see those. `help_split(page_key)` splits pages by a stable hash
of the page key (20% "test", 80% "train"), and `evaluation_pages()` asks every suite's help
tasks which pages they read (they sample from all pages); the `-train` sources below keep only
pages that are "train" and unused by any suite, and translation pairs also drop any paragraph
that appears on a held-out page. The man pages are in no suite at all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Decoder2VecError, choices_error

log = logging.getLogger(__name__)

STAGES = ("mntp", "simcse", "supervised")
TEST_SHARE = 5  # one page in TEST_SHARE is held out for evaluation


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    suite: str  # evaluation suite with this language's tasks
    recipes: str  # folder under recipes/ with {mntp,simcse,supervised}.yaml and quick/


LANGUAGES = {
    "da": Language("da", "Danish", "da", "gemma3-270m-da"),
    "de": Language("de", "German", "de", "gemma3-270m-de"),
}


def language(code: str) -> Language:
    if code not in LANGUAGES:
        raise choices_error("language", code, LANGUAGES)
    return LANGUAGES[code]


# ------------------------------------------------------------------ the train/test split
def help_split(page_key: str) -> str:
    """Return "test" for one LibreOffice help page in five (a stable hash of its key), else "train"."""
    digest = hashlib.sha1(page_key.encode("utf-8")).digest()
    return "test" if digest[0] % TEST_SHARE == 0 else "train"


def _flatten(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)


@functools.lru_cache(maxsize=1)
def evaluation_pages() -> frozenset[str]:
    """Keys of every LibreOffice help page that any task of any suite reads (in any language).

    The suites sample their items from all pages, so we ask them: each help task's `load()` gives
    its texts, and a page is "used" when one of its titles or paragraphs, or the start of its body
    (retrieval documents are clipped bodies), is among them.
    """
    from .data.sources import libreoffice_help
    from .evaluation.suites import load_tasks, suite_names, task_names

    texts: set[str] = set()
    suites = suite_names() + [str(_quick_suite(code)) for code in LANGUAGES if _quick_suite(code).is_file()]
    tasks = [t for suite in suites for t in load_tasks(suite)] + load_tasks(tasks=task_names())
    for task in tasks:
        if str(getattr(task, "source", "")).startswith("libreoffice"):
            texts.update(t for t in _flatten(task.load()) if len(t) >= 3)
    by_start = {}
    for text in texts:
        by_start.setdefault(text[:24], []).append(text)
    used = set()
    for lang in ("en", "da", "de"):
        for key, page in libreoffice_help(lang).items():
            paragraphs = page["paragraphs"]
            bodies = (" ".join(paragraphs), " ".join(paragraphs[1:]))
            if page["title"] in texts or any(p in texts for p in paragraphs) or any(
                    body.startswith(t) for body in bodies for t in by_start.get(body[:24], ())):
                used.add(key)
    return frozenset(used)


def training_pages(lang: str) -> dict[str, dict]:
    """LibreOffice help pages of `lang` that training may use."""
    from .data.sources import libreoffice_help

    used = evaluation_pages()
    return {k: v for k, v in libreoffice_help(lang).items() if help_split(k) == "train" and k not in used}


# ------------------------------------------------------------------ sources the recipes name
def _manpage_documents(lang: str) -> list[str]:
    from .data.extra_sources import manpages

    docs: dict[str, list[str]] = {}
    for row in manpages(lang):
        docs.setdefault(row["doc"], []).append(row["text"])
    return ["\n".join(paragraphs) for paragraphs in docs.values()]


def _held_out_paragraphs(lang: str, train: dict) -> set[str]:
    """Every paragraph of a page that training must not read (boilerplate recurs across pages)."""
    from .data.sources import libreoffice_help

    return {p for pages in (libreoffice_help("en"), libreoffice_help(lang)) for key, page in pages.items()
            if key not in train for p in page["paragraphs"]}


def _help_documents(lang: str) -> list[str]:
    train = training_pages(lang)
    held = _held_out_paragraphs(lang, train)
    docs = ("\n".join(p for p in page["paragraphs"] if p not in held) for page in train.values())
    return [d for d in docs if d]


def _translation_pairs(lang: str):
    """English help paragraph -> its translation (aligned by paragraph id), from training pages
    only; a paragraph that also appears on a held-out page (shared boilerplate) is dropped too."""
    from .data.pairs import Pair
    from .data.sources import libreoffice_help

    english, other = libreoffice_help("en"), libreoffice_help(lang)
    train = training_pages(lang)
    held = _held_out_paragraphs(lang, train)
    pairs, seen = [], set()
    for key in train:
        if key not in english:
            continue
        translated = dict(zip(other[key]["paragraph_ids"], other[key]["paragraphs"]))
        for pid, text in zip(english[key]["paragraph_ids"], english[key]["paragraphs"]):
            target = translated.get(pid)
            if (not target or len(text.split()) < 4 or text == target or (text, target) in seen
                    or text in held or target in held):
                continue
            seen.add((text, target))
            pairs.append(Pair(text, target, [], f"libreoffice-en-{lang}-train"))
    return pairs


EXTRA_CORPORA = {
    "manpages-da": lambda: _manpage_documents("da"),
    "manpages-de": lambda: _manpage_documents("de"),
    "libreoffice-help-da-train": lambda: _help_documents("da"),
    "libreoffice-help-de-train": lambda: _help_documents("de"),
}
EXTRA_PAIRS = {
    "libreoffice-en-da-train": lambda **kw: _translation_pairs("da"),
    "libreoffice-en-de-train": lambda **kw: _translation_pairs("de"),
}


def register_sources() -> None:
    """Make the names above usable in any recipe (`data: [manpages-da, ...]`)."""
    from .data import corpora, pairs

    for name, load in EXTRA_CORPORA.items():
        corpora.PACKAGED_CORPORA.setdefault(name, load)
    for name, load in EXTRA_PAIRS.items():
        pairs.PACKAGED_PAIRS.setdefault(name, load)


# ------------------------------------------------------------------ recipes and the chain
def recipes_root() -> Path:
    """The repository's recipes/ folder (recipes are YAML files, not package data)."""
    root = Path(__file__).resolve().parent / "recipes"
    if not root.is_dir():
        raise Decoder2VecError(f"recipes folder not found at {root}; run from a decoder2vec checkout")
    return root


def _quick_suite(code: str) -> Path:
    return recipes_root() / language(code).recipes / "quick" / "suite.yaml"


def evaluation_suite(code: str, quick: bool = False) -> str:
    """The suite `adapt` scores after each stage: the language's suite, or with quick the smaller
    samples in recipes/<language>/quick/suite.yaml."""
    return str(_quick_suite(code)) if quick else language(code).suite


def recipe_paths(code: str, quick: bool = False) -> dict[str, Path]:
    folder = recipes_root() / language(code).recipes / ("quick" if quick else "")
    paths = {stage: folder / f"{stage}.yaml" for stage in STAGES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise Decoder2VecError(f"missing recipe file(s): {', '.join(missing)}")
    return paths


def _finished(folder: Path) -> bool:
    return (folder / "decoder2vec_config.json").is_file()


def adapt(
    language_code: str,
    *,
    model: str = "gemma3-270m",
    quick: bool = False,
    output_dir: str | Path | None = None,
    evaluate: bool = True,
    stages: tuple[str, ...] = STAGES,
    overrides: dict | None = None,
) -> Path:
    """Run a language's recipe stage by stage; returns the last stage's Encoder folder.

    Finished stages (their folder holds decoder2vec_config.json) are skipped, and so are
    evaluations already in `<output_dir>/results.json`. `overrides` apply to every stage (e.g.
    {"max_steps": 2} for a smoke run).
    """
    lang = language(language_code)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise choices_error("stage", bad[0], STAGES)
    register_sources()
    out = Path(output_dir or f"runs/adapt-{lang.code}{'-quick' if quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    paths = recipe_paths(lang.code, quick)

    from .training import train

    if evaluate and "base" not in results:
        results["base"] = _evaluate(model, lang, quick)
        _write_results(results_file, results)
    previous = model
    for stage in stages:
        folder = out / stage
        # A stage starts from the stage before it in the recipe when that one is finished here,
        # so `--stages simcse supervised` continues an earlier MNTP run.
        index = STAGES.index(stage)
        if index and _finished(out / STAGES[index - 1]):
            previous = out / STAGES[index - 1]
        if _finished(folder):
            log.warning("adapt %s: %s already finished in %s, skipping", lang.code, stage, folder)
        else:
            start = time.perf_counter()
            train(str(paths[stage]), model=str(previous), output_dir=str(folder), **(overrides or {}))
            print(f"adapt {lang.code}: {stage} trained in {time.perf_counter() - start:.0f} s -> {folder}", flush=True)
        if evaluate and stage not in results:
            results[stage] = _evaluate(str(folder), lang, quick)
            _write_results(results_file, results)
        previous = folder
    return Path(previous)


def _evaluate(model: str, lang: Language, quick: bool) -> dict:
    """The language suite's scores: {"average": mean main score, "tasks": {name: main_score}}."""
    from .evaluation import evaluate as run_suite

    suite = evaluation_suite(lang.code, quick)
    report = run_suite(str(model), suite=suite, verbose=True)
    scores = {name: float(task["main_score"]) for name, task in report["tasks"].items()}
    average = sum(scores.values()) / len(scores)
    print(f"adapt {lang.code}: {model} -> average {average:.4f} ({report['seconds']:.0f} s)", flush=True)
    return {"model": str(model), "suite": suite, "average": average, "tasks": scores, "seconds": report["seconds"]}


def _write_results(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
