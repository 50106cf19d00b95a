"""Language recipes (Danish, German), the help-page split, the man-page corpus, `adapt`.

(The needle-in-a-haystack tests moved to tests/test_evaluation_needle.py with the needle task.)
"""

from __future__ import annotations

import re
import shutil

import pytest

from decoder2vec.errors import Decoder2VecError
from tiny import CORPUS, tiny_tokenizer


# ------------------------------------------------------------------------------ recipes and split
def test_language_recipes_validate():
    from decoder2vec.pipeline import languages
    from decoder2vec.data.languages import LANGUAGES, RECIPES
    from decoder2vec.data.registry import CORPORA, EVALUATION_ONLY, PAIRS, refuse_evaluation_only
    from decoder2vec.pipeline.runner import stage_recipes
    from decoder2vec.training.config import load_recipe

    assert RECIPES == ("distill-embeddinggemma", "distill", "paper")
    for code in LANGUAGES:
        assert set(LANGUAGES[code].recipes) == set(RECIPES)
        for recipe in RECIPES:
            for quick in (False, True):
                paths = stage_recipes(languages.language_recipes(code, quick, recipe=recipe))
                configs = {stage: load_recipe(path) for stage, path in paths.items()}
                if recipe == "paper":
                    # LLM2Vec's three stages (STAGE_CONFIGS also holds stages these recipes do not use).
                    assert [c.stage for c in configs.values()] == ["mntp", "simcse", "supervised"]
                    # Each stage starts from the previous one's output.
                    assert configs["simcse"].model == configs["mntp"].output_dir
                    assert configs["supervised"].model == configs["simcse"].output_dir
                elif recipe == "distill":
                    assert [c.stage for c in configs.values()] == ["distill"]
                    assert configs["distill"].data == [f"libreoffice-en-{code}-train"]
                else:
                    assert [c.stage for c in configs.values()] == ["distill"]
                    assert configs["distill"].teacher == "embeddinggemma-300m"
                    german_sts = ["stsb-de-train"] if code == "de" else []
                    german_headings = ["libreoffice-headings-de-train"] if code == "de" else []
                    assert configs["distill"].data == [f"libreoffice-titles-{code}-train", *german_headings,
                                                       f"manpage-summaries-{code}",
                                                       f"package-descriptions-{code}", *german_sts,
                                                       f"libreoffice-en-{code}-train"]
                # Training never names a source that could hold evaluation pages.
                for config in configs.values():
                    for source in config.data:
                        assert not source.startswith("libreoffice") or source.endswith("-train"), source
                        assert source in LANGUAGES[code].sources or source.startswith("stsb-"), source
                        assert source in CORPORA or source in PAIRS, source
                        assert not any(source.startswith(held) for held in EVALUATION_ONLY), source
                        refuse_evaluation_only(source)  # raises for an evaluation-only source
    with pytest.raises(Decoder2VecError, match="language"):
        languages.language_recipes("xx")


@pytest.mark.parametrize("recipe, quick, folder, suite, output_dir", [
    ("distill-embeddinggemma", False, "gemma3-270m-da/distill-embeddinggemma", "da",
     "runs/adapt-da-distill-embeddinggemma"),
    ("distill-embeddinggemma", True, "gemma3-270m-da/distill-embeddinggemma/quick",
     "gemma3-270m-da/distill-embeddinggemma/quick/suite.yaml", "runs/adapt-da-distill-embeddinggemma-quick"),
    ("distill", False, "gemma3-270m-da/distill", "da", "runs/adapt-da-distill"),
    ("distill", True, "gemma3-270m-da/distill/quick", "gemma3-270m-da/distill/quick/suite.yaml",
     "runs/adapt-da-distill-quick"),
    ("paper", False, "gemma3-270m-da", "da", "runs/adapt-da"),
    ("paper", True, "gemma3-270m-da/quick", "gemma3-270m-da/quick/suite.yaml", "runs/adapt-da-quick"),
])
def test_adapt_recipe_picks_the_folder_suite_and_output_dir(recipe, quick, folder, suite, output_dir, monkeypatch):
    """recipe= (--recipe) -> the packaged folder, its suite and a runs folder of its own; nothing trained."""
    from pathlib import Path

    from decoder2vec.pipeline import languages
    from decoder2vec.pipeline.runner import packaged_recipes

    made = []

    class Recorder:
        def __init__(self, recipes, **kwargs):
            made.append({"recipes": recipes, **kwargs})

        def run(self):
            return {"final": Path("done")}

    monkeypatch.setattr(languages, "Pipeline", Recorder)
    languages.adapt("da", recipe=recipe, quick=quick)
    root = packaged_recipes()
    assert made[0]["recipes"] == root / folder
    assert made[0]["suite"] == (str(root / suite) if suite.endswith(".yaml") else suite)
    assert Path(made[0]["output_dir"]) == Path(output_dir)
    if recipe == "distill-embeddinggemma":  # the default
        made.clear()
        languages.adapt("da", quick=quick)
        assert made[0]["recipes"] == root / folder
    # quick's suite is the same file for both recipes
    assert Path(languages.evaluation_suite("de", True, recipe=recipe)).read_text() == (
        root / "gemma3-270m-de" / "quick" / "suite.yaml").read_text()


def test_bad_recipe_is_one_line_naming_the_choices(capsys):
    from decoder2vec.pipeline import languages
    from decoder2vec.cli import main

    with pytest.raises(Decoder2VecError, match=r"^unknown recipe 'llm2vec'; choose one of: distill-embeddinggemma, distill, paper$"):
        languages.adapt("da", recipe="llm2vec")
    with pytest.raises(SystemExit):
        main(["adapt", "--language", "da", "--recipe", "llm2vec"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "decoder2vec adapt: error: argument --recipe: invalid choice: 'llm2vec' (choose from 'distill-embeddinggemma', "
        "'distill', 'paper')")


def test_cli_recipe_flag_is_adapts_keyword(monkeypatch, tmp_path):
    """--recipe reaches adapt(recipe=...), and the flag's default is the keyword's."""
    import inspect

    from decoder2vec.cli import adapt as adapt_verb
    from decoder2vec.cli import main
    from decoder2vec.pipeline.languages import DEFAULT_RECIPE, adapt

    assert inspect.signature(adapt).parameters["recipe"].default == DEFAULT_RECIPE == "distill-embeddinggemma"
    calls = []
    monkeypatch.setattr(adapt_verb, "adapt", lambda language, **kwargs: calls.append(kwargs) or tmp_path / "x")
    main(["adapt", "--language", "de", "--recipe", "paper", "--quick", "--no-evaluate"])
    main(["adapt", "--language", "de", "--no-evaluate"])
    assert [(c["recipe"], c["quick"]) for c in calls] == [("paper", True), (DEFAULT_RECIPE, False)]


def test_help_split_is_stable_and_holds_out_a_fifth():
    from decoder2vec.data.libreoffice import help_split

    keys = [f"text/shared/page{i:05d}" for i in range(5000)]
    held = [k for k in keys if help_split(k) == "test"]
    assert 0.17 < len(held) / len(keys) < 0.23
    assert [help_split(k) for k in keys[:50]] == [help_split(k) for k in keys[:50]]


def test_roff_paragraphs_keep_prose_and_drop_boilerplate():
    from decoder2vec.data.manpages import roff_paragraphs

    source = "\n".join([
        '.\\" comment', ".TH LS 1", ".SH NAVN", "ls \\- vis mappeindhold",
        ".SH BESKRIVELSE", ".PP", "Vis information om \\fBFILerne\\fP (den nuværende mappe som",
        "standard). Sorter indgange alfabetisk hvis ingen af flagene er angivet.",
        ".TP", "\\fB\\-a\\fP", "medtag ikke indgange som starter med . og heller ikke skjulte filer her",
        ".nf", "ls -la /usr/lib/some/long/path with many words in the code block", ".fi",
        ".SH FORFATTER", "Skrevet af Richard M. Stallman og David MacKenzie og mange andre mennesker.",
    ])
    paragraphs = roff_paragraphs(source, "da")
    assert paragraphs[0] == ("Vis information om FILerne (den nuværende mappe som standard). "
                             "Sorter indgange alfabetisk hvis ingen af flagene er angivet.")
    assert any(p.startswith("medtag ikke") for p in paragraphs)  # the option's text, not its tag
    assert not any("Stallman" in p or "/usr/lib" in p for p in paragraphs)


# ------------------------------------------------------------------------------ the adapt chain
def test_adapt_runs_the_stages_in_order_and_resumes(tmp_path, monkeypatch):
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from decoder2vec.pipeline import languages
    from tiny import tiny_config

    stages = ["mntp", "simcse", "supervised"]  # the language recipes' stages
    # A plain model folder with its LM head (MNTP needs one), as a hub model would be.
    base = tmp_path / "base"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config("llama")).save_pretrained(base)
    tiny_tokenizer().save_pretrained(base)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": a, "positive": b}) + "\n"
                             for a, b in zip(CORPUS[:6], CORPUS[1:7])), encoding="utf-8")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for stage in stages:
        data = pairs if stage == "supervised" else corpus
        (recipes / f"{stage}.yaml").write_text(
            f"stage: {stage}\nmodel: unused\ndata: [{data}]\noutput_dir: unused\nmax_steps: 2\n"
            "per_device_train_batch_size: 4\nsave_steps: 1\nlogging_steps: 1\nreport_to: none\n")
    monkeypatch.setattr(languages, "language_recipes", lambda code, quick=False, recipe=None: recipes)
    evaluated = []

    def fake_evaluate(model, *, suite, name, output, **load_kwargs):
        evaluated.append(str(model))
        result = {"model": name, "suite": suite, "tasks": {"t": {"main_score": 0.5}}, "averages": {"all": 0.5}}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result))
        return result

    monkeypatch.setattr("decoder2vec.evaluation.evaluate", fake_evaluate)
    run = tmp_path / "run"

    final = languages.adapt("da", model=str(base), output_dir=run)

    assert final == run / "supervised"
    assert evaluated == [str(base)] + [str(run / s) for s in stages]
    saved = json.loads((final / "decoder2vec_config.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == stages
    assert set(json.loads((run / "results.json").read_text())) == {"base", *stages}

    # Resumable: finished stages and evaluations are skipped.
    monkeypatch.setattr("decoder2vec.training.train", lambda *a, **k: pytest.fail("trained a finished stage"))
    evaluated.clear()
    assert languages.adapt("da", model=str(base), output_dir=run) == final
    assert evaluated == []


def _flatten(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)


@pytest.mark.real  # real data, in `make test` (docs/results.md): ~20 s once the help pages are cached
def test_training_sources_hold_no_evaluation_text():
    """Real LibreOffice help data: no training pair or MNTP paragraph is a text that any suite's
    help task evaluates on (nor is any Debian package description, a source the pages do not split)."""
    from decoder2vec.pipeline import languages
    from decoder2vec.data.languages import LANGUAGES
    from decoder2vec.data.libreoffice import heading_pairs, help_documents, title_pairs, translation_pairs
    from decoder2vec.data.package_descriptions import package_descriptions
    from decoder2vec.evaluation.suites import load_tasks, suite_names

    texts, queries = set(), set()
    suites = suite_names() + [languages.evaluation_suite(code, quick=True) for code in LANGUAGES]
    for suite in suites:
        for task in load_tasks(suite):
            if task.source.startswith("libreoffice"):
                texts.update(t for t in _flatten(task.load()) if len(t) > 40)
                if task.type == "retrieval":
                    queries.update(task.data[0])
    assert len(texts) > 500
    for code in LANGUAGES:
        pairs = translation_pairs(code)
        assert len(pairs) > 1000
        assert not [p for p in pairs if p.query in texts or p.positive in texts]
        # Paragraph level: a short boilerplate sentence can still occur inside a longer
        # paragraph of another page (one or two such sentences per language).
        paragraphs = {p for doc in help_documents(code, "train") for p in doc.split("\n")}
        assert not paragraphs & texts
        # Title -> page pairs: neither a title a retrieval task asks nor any of an evaluated page's text.
        titles = title_pairs(code)
        assert len(titles) > 500
        assert not [p for p in titles if p.query in queries or p.positive in texts]
        # Section heading -> section pairs: the same, and no section text holds an evaluated paragraph.
        headings = heading_pairs(code)
        assert len(headings) > 800
        assert not [p for p in headings if p.query in queries | texts or p.positive in texts]
        # Package summary -> description pairs: no summary, description or paragraph of one is evaluated.
        packages = package_descriptions(code)
        assert len(packages) > 8000
        evaluated = queries | texts
        assert not [p for p in packages if p.query in evaluated or {p.positive, *p.positive.split("\n")} & texts]


# ------------------------------------------------------------------------------ the leakage guard
# Task sources that training may share, each guarded by a split: STS-B (train vs dev/test), the
# LibreOffice help (page split, data/libreoffice.py). English-only sources no da/de recipe reads
# (BBC News, the Wikipedia sample of the needle probe) are listed so a new source must be declared.
SPLIT_GUARDED = {"stsb", "libreoffice-help", "libreoffice-titles"}
ENGLISH_ONLY = {"bbc-news", "bbc-headlines", "wikipedia"}


def test_every_task_source_is_split_guarded_or_evaluation_only():
    from decoder2vec.data.registry import EVALUATION_ONLY
    from decoder2vec.evaluation.suites import task_specs

    for name, spec in task_specs().items():
        source = spec["source"]
        assert source in SPLIT_GUARDED | set(EVALUATION_ONLY) | ENGLISH_ONLY, (name, source)
        if source in ENGLISH_ONLY:
            assert spec["language"] == "en", name
    assert {"gettext", "gsettings"} <= set(EVALUATION_ONLY)


def test_training_loaders_refuse_evaluation_only_sources(tmp_path, monkeypatch):
    from decoder2vec.data import corpora, pairs, registry

    with pytest.raises(Decoder2VecError, match="'gettext' is evaluation-only"):
        corpora.load_texts("gettext")
    with pytest.raises(Decoder2VecError, match="'gsettings-da' is evaluation-only"):
        corpora.load_sentences("gsettings-da")
    with pytest.raises(Decoder2VecError, match="'gsettings-desktop-schemas' is evaluation-only"):
        pairs.load_pairs("gsettings-desktop-schemas")
    # The parsed catalogs themselves, read as a local file.
    monkeypatch.setattr(registry, "cache_dir", lambda: tmp_path)
    cached = tmp_path / "data" / "gettext" / "appstream.json"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"text": "x"}\n')
    with pytest.raises(Decoder2VecError, match="is evaluation-only data"):
        corpora.load_texts(str(cached))


def _four_grams(text: str) -> set[int]:
    words = re.findall(r"\w+", text.lower())
    return {hash(tuple(words[i:i + 4])) for i in range(len(words) - 3)}


@pytest.mark.skipif(not shutil.which("apt-get"), reason="the catalogs and man pages are fetched with apt-get")
def test_training_sources_hold_no_catalog_or_settings_text():
    """Real data: no text of the evaluation-only tasks' pools (every candidate, not only the
    sampled ones), English or translated, occurs inside any document or pair the Danish/German
    recipes train on (man pages, training help pages, translation pairs, STS-B train). Labels of
    three words or fewer ("Kan ændre genvejstast") are common phrases and not checked."""
    from decoder2vec.data.corpora import load_texts
    from decoder2vec.data.languages import LANGUAGES
    from decoder2vec.data.pairs import load_pairs
    from decoder2vec.evaluation import task_data

    bitext = task_data._catalog_bitext(40, 300)
    settings = task_data._settings_with_unique_texts()
    assert len(bitext) > 1000 and len(settings) > 200
    for code, language in LANGUAGES.items():
        training = [text for source in language.corpora for text in load_texts(source)]
        training += [t for source in language.pairs for p in load_pairs(source) for t in (p.query, p.positive, *p.negatives)]
        assert len(training) > 10_000
        evaluated = {row[lang] for row in bitext for lang in ("en", code)}
        evaluated |= {key[field][lang] for key in settings for field in ("summary", "description") for lang in ("en", code)}
        evaluated = {t for t in evaluated if len(re.findall(r"\w+", t)) >= 4}
        grams = set().union(*map(_four_grams, training))
        candidates = [t for t in evaluated if _four_grams(t) <= grams]  # every 4-gram seen: maybe inside
        blob = "\n".join(training).lower()
        assert [t for t in candidates if t.lower() in blob] == [], code


def test_no_packaged_recipe_reads_an_evaluation_only_source():
    """Every shipped recipe (paper, SmolLM2, the language ones), not only the language recipes."""
    from pathlib import Path

    import yaml

    from decoder2vec.data.registry import refuse_evaluation_only

    recipes = [p for p in (Path(__file__).parents[1] / "src" / "decoder2vec" / "recipes").rglob("*.yaml")
               if p.stem != "suite"]
    assert len(recipes) > 20
    for path in recipes:
        data = yaml.safe_load(path.read_text(encoding="utf-8")).get("data") or []
        for source in [data] if isinstance(data, str) else data:
            refuse_evaluation_only(str(source))


def test_heading_pairs_are_the_sections_of_train_pages_with_one_answer_each(monkeypatch):
    """A heading -> the paragraphs up to the next heading; left out: the page's own title heading, a
    heading two sections share, a heading a test page has as its title, a held-out paragraph, and a
    section under 8 words."""
    from decoder2vec.data import libreoffice

    body = "This paragraph explains the setting in enough words to be a page."
    page = {"title": "Options",
            "paragraph_ids": ["hd_id1", "par_id1", "hd_id2", "par_id2", "par_id3", "hd_id3", "par_id4",
                              "hd_id4", "par_id5", "hd_id5", "par_id6", "hd_id6", "par_id7"],
            "paragraphs": ["Options", "Intro of the page, long enough to be its own text here.",
                           "Save in", "Held out sentence shared with a test page.", body,
                           "Example:", body,
                           "Animation", body,
                           "Short", "Too short.",
                           "Load from", "Load from the folder given here, which every user can pick."]}
    other = {"title": "Other", "paragraph_ids": ["hd_id9", "par_id9"],
             "paragraphs": ["Example:", "Another example section with enough words in its text."]}
    test = {"title": "Animation", "paragraph_ids": [], "paragraphs": []}
    monkeypatch.setattr(libreoffice, "help_pages",
                        lambda lang, split: {"a": page, "b": other} if split == "train" else {"t": test})
    monkeypatch.setattr(libreoffice, "held_out_paragraphs",
                        lambda lang: {"Held out sentence shared with a test page."})
    pairs = libreoffice.heading_pairs("de")
    assert [(p.query, p.positive) for p in pairs] == [
        ("Save in", body), ("Load from", "Load from the folder given here, which every user can pick.")]
    assert {p.task for p in pairs} == {"libreoffice-headings-de-train"}
    assert {p.instruction for p in pairs} == {libreoffice.HEADING_INSTRUCTION}
