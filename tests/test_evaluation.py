"""Suites, task data, the encoder adapter and its checks, the cache, evaluate/compare and the CLI.

Models here are tiny random ones (tests/tiny.py) or fakes; scores are checked for shape and
sanity, quality is checked by the MiniLM anchor in test_evaluation_anchor.py.
"""

import json

import numpy as np
import pytest
import torch
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError
from decoder2vec.cli import main
from decoder2vec.evaluation import CachingAdapter, compare, evaluate, load_tasks, plot, read_results, suite_names
from decoder2vec.data.libreoffice import help_pages
from decoder2vec.evaluation import model_label, task_data
from decoder2vec.evaluation.suites import task_specs
from decoder2vec.evaluation.tasks import TASK_TYPES, make_task

STS_ONLY = ["stsb-en"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine torch's spin-waiting threads
    made them ~10x slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder("llama")


@pytest.fixture
def private_cache(monkeypatch, tmp_path):
    """Vectors cached in a fresh folder (the data sources keep using the shared cache)."""
    import decoder2vec.evaluation.adapter as adapter_module

    monkeypatch.setattr(adapter_module, "cache_dir", lambda: tmp_path)
    return tmp_path


# ---------------------------------------------------------------- suites
def test_shipped_suites_load_and_cover_languages_and_types():
    assert suite_names()[0] == "default" and {"quick", "en", "da", "de"} <= set(suite_names())
    default = load_tasks("default")
    assert len(default) >= 8
    assert {t.language for t in default} == {"en", "da", "de"}
    assert len({t.type for t in default}) >= 4
    for suite in suite_names():
        tasks = load_tasks(suite)
        assert tasks, suite
        if suite in ("en", "da", "de"):
            assert {t.language for t in tasks} == {suite}
    # Every defined task builds (types, sources and keys valid), and all six types are used.
    built = [make_task(name, spec) for name, spec in task_specs().items()]
    assert {t.type for t in built} == set(TASK_TYPES)


def test_quick_suite_overrides_sizes():
    quick = {t.name: t for t in load_tasks("quick")}
    default = {t.name: t for t in load_tasks("default")}
    assert quick["stsb-en"].sample < default["stsb-en"].sample
    assert load_tasks("quick", ["stsb-en"])[0].sample == quick["stsb-en"].sample


def test_unknown_task_suite_and_keys_list_the_choices():
    with pytest.raises(Decoder2VecError, match=r"unknown task 'stsb-fr'.*stsb-en"):
        load_tasks("default", ["stsb-fr"])
    with pytest.raises(Decoder2VecError, match=r"unknown suite 'fast'.*default, .*quick"):
        load_tasks("fast")
    with pytest.raises(Decoder2VecError, match=r"unknown keys samples"):
        make_task("x", {"type": "sts", "language": "en", "source": "stsb", "samples": 3})
    with pytest.raises(Decoder2VecError, match=r"unknown type of task 'x' 'ranking'"):
        make_task("x", {"type": "ranking", "language": "en", "source": "stsb"})
    with pytest.raises(Decoder2VecError, match=r"source for sts task 'x' 'bbc-news'"):
        make_task("x", {"type": "sts", "language": "en", "source": "bbc-news"})


def test_suite_from_a_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("tasks:\n  stsb-de: {sample: 7}\n")
    (task,) = load_tasks(str(path))
    assert task.name == "stsb-de" and len(task.load()[0]) == 7


# ---------------------------------------------------------------- task data
def test_stsb_sample_is_seeded():
    first = task_data.stsb_pairs("en", "test", 50, seed=1)
    assert first == task_data.stsb_pairs("en", "test", 50, seed=1)
    assert first != task_data.stsb_pairs("en", "test", 50, seed=2)
    assert len(first[0]) == 50 and all(0 <= s <= 5 for s in first[2])
    # The German file is the English one translated, line by line: the same seed picks the same pairs.
    assert task_data.stsb_pairs("de", "test", 50, seed=1)[2] == first[2]


def test_bitext_pairs_are_translations_with_one_answer():
    en_da = task_data.help_bitext("en", "da", 100, seed=42)
    en_de = task_data.help_bitext("en", "de", 100, seed=42)
    for source, target in (en_da, en_de):
        assert len(source) == len(target) >= 95
        assert len(set(source)) == len(source) and len(set(target)) == len(target)
        assert sum(s == t for s, t in zip(source, target)) == 0
    # Chosen from paragraphs present in all languages: the English sides mostly coincide.
    assert len(set(en_da[0]) & set(en_de[0])) >= 90


def test_retrieval_uses_the_same_pages_in_every_language():
    data = {lang: task_data.help_retrieval(lang, 20, 40, seed=42, max_chars=300) for lang in ("en", "da", "de")}
    for queries, corpus, relevant in data.values():
        assert len(queries) == 20 and len(corpus) == 40 and relevant == [{i} for i in range(20)]
        assert all(len(doc) <= 300 and doc for doc in corpus)
    assert data["en"][0] != data["da"][0] != data["de"][0]


def test_help_tasks_read_only_the_test_side_of_the_page_split():
    """The split is declared once in data/; every help text a suite scores comes from a test page."""
    test_pages = {lang: help_pages(lang, "test") for lang in ("en", "da", "de")}
    train_texts = {p for lang in ("en", "da", "de") for page in help_pages(lang, "train").values()
                   for p in [page["title"], *page["paragraphs"]]}
    test_texts = {p for pages in test_pages.values() for page in pages.values() for p in [page["title"], *page["paragraphs"]]}
    queries, _, _ = task_data.help_retrieval("da", 60, 120, seed=42, max_chars=250)
    titles, _ = task_data.help_titles_by_module("de", 30, seed=42)
    source, target = task_data.help_bitext("en", "da", 120, seed=42)
    for text in queries + titles + source + target:
        assert text in test_texts, text
    # Some of them are also on train pages (shared boilerplate); most are not.
    assert sum(t in train_texts for t in source + target) < len(source + target) / 4


def test_bbc_split_is_disjoint_and_balanced():
    (train_x, train_y), (test_x, test_y) = task_data.bbc_split(10, 100, seed=42, max_chars=200)
    assert len(train_x) == 50 and sorted(set(train_y)) == sorted(set(test_y))
    assert all(train_y.count(label) == 10 for label in set(train_y))
    assert len(test_x) == 100 and not set(train_x) & set(test_x)


# ---------------------------------------------------------------- the caching adapter: output checks
class FakeEncoder:
    """Returns whatever `make(n)` builds; records the instructions it was given."""

    def __init__(self, make):
        self.make, self.instructions = make, []

    def encode(self, texts, *, instruction=None, batch_size=32, normalize_embeddings=False, show_progress_bar=None):
        self.instructions.append(instruction)
        return self.make(len(texts))


@pytest.mark.parametrize("make, message", [
    (lambda n: np.full((n, 4), np.nan), "NaN/inf vectors for"),
    (lambda n: np.ones((n + 1, 4)), r"shape \(\d+, 4\) for \d+ texts"),
    (lambda n: np.ones(n), r"shape \(\d+,\)"),
    (lambda n: "vectors", "returned str"),
])
def test_bad_model_output_fails_naming_the_task(make, message):
    with pytest.raises(Decoder2VecError, match=f"task stsb-en: .*{message}"):
        evaluate(FakeEncoder(make), tasks=STS_ONLY, verbose=False)


def test_instructions_and_tensor_output_pass_through():
    fake = FakeEncoder(lambda n: torch.randn(n, 6))
    results = evaluate(fake, tasks=["help-retrieval-de"], verbose=False)
    assert -1 <= results["tasks"]["help-retrieval-de"]["main_score"] <= 1
    spec = task_specs()["help-retrieval-de"]
    assert fake.instructions == [spec["query_instruction"], None]


def test_sentence_transformers_style_models_get_prompts_only_when_they_have_them():
    class PromptModel:
        def __init__(self, prompts):
            self.prompts, self.calls = prompts, []

        def encode(self, texts, prompt=None, batch_size=32, show_progress_bar=None):
            self.calls.append(prompt)
            return np.random.default_rng(0).normal(size=(len(texts), 3))

    plain = PromptModel({"query": "", "document": ""})
    CachingAdapter(plain).embed(["a", "b"], "Retrieve:")
    assert plain.calls == [None]
    instructed = PromptModel({"query": "query: "})
    CachingAdapter(instructed).embed(["a", "b"], "Retrieve:")
    assert instructed.calls == ["Retrieve:"]


@pytest.mark.parametrize("trained, expected", [
    ("all", ["Same:", "Find:", None]),          # LLM2Vec's way: every task's instruction
    ("queries", [None, "Find:", None]),          # a distilled student: a retrieval query's only
])
def test_an_encoder_gets_the_instructions_its_folder_says_it_was_trained_with(trained, expected):
    encoder = tiny_encoder("llama")
    encoder.config.instructions = trained
    seen = []
    original = encoder.encode

    def encode(texts, *args, instruction=None, **kwargs):
        seen.append(instruction)
        return original(texts, *args, instruction=instruction, **kwargs)

    encoder.encode = encode
    adapter = CachingAdapter(encoder, cache=False)
    adapter.embed(["a text", "b text"], "Same:", task_type="sts")
    adapter.embed(["a query"], "Find:", side="query", task_type="retrieval")
    adapter.embed(["a page"], None, side="document", task_type="retrieval")
    assert seen == expected


def test_a_folder_with_unknown_instructions_is_one_line():
    from decoder2vec.folder.config import EncoderConfig

    with pytest.raises(Decoder2VecError, match="'instructions' must be one of all, queries, got 'some'"):
        EncoderConfig.from_dict({"instructions": "some"}, source="cfg.json")


def test_model_label_is_the_one_label_for_results_and_cache():
    labelled = tiny_encoder("llama", base_model="org/base")
    labelled.config.stages = [{"stage": "mntp"}, {"stage": "simcse"}]
    assert model_label(labelled) == "org/base (mean, bidirectional, mntp+simcse)"
    assert CachingAdapter(labelled, cache=False).name == model_label(labelled)
    assert model_label(tiny_encoder("llama", base_model="org/base", bidirectional=False)) == "org/base (mean, causal)"
    assert model_label(FakeEncoder(lambda n: None)) == "FakeEncoder"


def test_dimension_must_not_change_between_calls():
    sizes = iter([4, 5])
    fake = FakeEncoder(lambda n: np.ones((n, next(sizes))))
    adapter = CachingAdapter(fake)
    adapter.embed(["a"], task="one")
    with pytest.raises(Decoder2VecError, match="task two: .*dimension 5, earlier 4"):
        adapter.embed(["b"], task="two")


# ---------------------------------------------------------------- cache
def test_vectors_are_cached_per_model_and_settings(encoder, private_cache, monkeypatch):
    calls = []
    original = type(encoder).encode

    def counting(self, texts, **kwargs):
        calls.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(type(encoder), "encode", counting)
    first = evaluate(encoder, "quick", STS_ONLY, verbose=False)
    assert len(calls) == 2  # sentence1 and sentence2
    second = evaluate(encoder, "quick", STS_ONLY, verbose=False)
    assert len(calls) == 2 and second["tasks"] == {
        k: {**v, "seconds": second["tasks"][k]["seconds"]} for k, v in first["tasks"].items()
    }
    # New weights (as after a training step) or other settings are another model.
    with torch.no_grad():
        encoder.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    evaluate(encoder, "quick", STS_ONLY, verbose=False)
    assert len(calls) == 4
    encoder.config.pooling = "last_token"
    try:
        evaluate(encoder, "quick", STS_ONLY, verbose=False)
    finally:
        encoder.config.pooling = "mean"
    assert len(calls) == 6
    evaluate(encoder, "quick", STS_ONLY, verbose=False, cache=False)
    assert len(calls) == 8


# ---------------------------------------------------------------- evaluate, compare, plot
def test_evaluate_quick_suite_results_shape(encoder, private_cache, tmp_path):
    out = tmp_path / "r.json"
    results = evaluate(encoder, "quick", output=out, name="tiny", verbose=False)
    assert read_results(out) == json.loads(json.dumps(results))
    assert results["model"] == "tiny" and results["suite"] == "quick"
    assert list(results["tasks"]) == [t.name for t in load_tasks("quick")]
    for name, task in results["tasks"].items():
        assert set(task) >= {"type", "language", "source", "main_score", "scores", "seconds", "metric", "sizes"}
        assert task["main_score"] == task["scores"][task["metric"]]
        assert np.isfinite(task["main_score"])
    main = [t["main_score"] for t in results["tasks"].values()]
    assert results["averages"]["all"] == pytest.approx(np.mean(main))
    # quick's German tasks: stsb-de and the LibreOffice bitext, so German also has an average without it.
    assert set(results["averages"]) == {"en", "da", "de", "de-no-libreoffice", "all"}
    assert results["averages"]["de-no-libreoffice"] == results["tasks"]["stsb-de"]["main_score"]
    assert results["tasks"]["help-bitext-en-de"]["source"] == "libreoffice-help"


def _fake_results(model, suite, scores):
    tasks = {name: {"type": "sts", "language": lang, "metric": "cosine_spearman", "main_score": value,
                    "scores": {"cosine_spearman": value}, "seconds": 1.0} for name, (lang, value) in scores.items()}
    from decoder2vec.evaluation.runner import averages

    return {"model": model, "suite": suite, "tasks": tasks, "averages": averages(tasks)}


def test_compare_table_and_chart(tmp_path):
    a = _fake_results("base", "default", {"stsb-en": ("en", 0.5), "stsb-de": ("de", 0.25)})
    b = _fake_results("trained", "default", {"stsb-en": ("en", 0.75)})
    table = compare([a, b]).splitlines()
    assert "base" in table[0] and "trained" in table[0]
    row = next(line for line in table if line.startswith("stsb-de"))
    assert row.split()[-2:] == ["25.00", "-"]
    assert next(line for line in table if line.startswith("average (all")).split()[-2:] == ["37.50", "75.00"]
    assert "different suites" not in "\n".join(table)
    assert "different suites" in compare([a, {**b, "suite": "quick"}])
    png = plot([a, b], tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Decoder2VecError, match="no 'tasks'"):
        compare([{"model": "x"}])


# ---------------------------------------------------------------- CLI
def test_cli_compare_writes_chart(tmp_path, capsys):
    paths = []
    for name, value in (("one", 0.4), ("two", 0.6)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_fake_results(name, "quick", {"stsb-en": ("en", value)})))
        paths.append(str(path))
    assert main(["compare", *paths, "--output", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "stsb-en (en, cosine_spearman)" in out and "60.00" in out
    assert (tmp_path / "c.png").stat().st_size > 10_000
    assert main(["compare", str(tmp_path / "missing.json")]) == 2
    assert "results file not found" in capsys.readouterr().err


def test_cli_evaluate_rejects_unknown_task_before_loading(capsys):
    assert main(["evaluate", "no/such/model/here", "--tasks", "stsb-en,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nope'" in err and "help-bitext-en-da" in err


@pytest.mark.parametrize("tasks", ["", ",", "stsb-en,,stsb-de", " "])
def test_cli_evaluate_empty_task_names_are_an_error_not_the_whole_suite(tasks, capsys):
    assert main(["evaluate", "no/such/model/here", "--tasks", tasks]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty task name" in err and "help-bitext-en-da" in err


def test_evaluate_output_that_is_a_directory_fails_before_encoding(tmp_path):
    fake = FakeEncoder(lambda n: np.ones((n, 2)))
    with pytest.raises(Decoder2VecError, match=f"--output {tmp_path} is a directory"):
        evaluate(fake, tasks=STS_ONLY, output=tmp_path, verbose=False)
    assert fake.instructions == []  # nothing was encoded


def test_evaluate_with_an_empty_task_list_is_an_error():
    with pytest.raises(Decoder2VecError, match=r"no task named in tasks=\[\]; choose from stsb-en"):
        evaluate(FakeEncoder(lambda n: np.ones((n, 2))), tasks=[], verbose=False)
    with pytest.raises(Decoder2VecError, match="no task named"):
        load_tasks("default", [""])
    with pytest.raises(Decoder2VecError, match=r"not the string 'stsb-en,stsb-de' \(did you mean \['stsb-en', 'stsb-de'\]"):
        load_tasks("default", "stsb-en,stsb-de")


def test_cli_evaluate_runs_a_model_folder(encoder, private_cache, tmp_path, capsys):
    folder = encoder.save_pretrained(tmp_path / "tiny-model")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(folder), "--tasks", "stsb-de", "--suite", "quick", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stsb-de (de, cosine_spearman)" in printed and "average de" in printed
    results = read_results(out)
    assert results["suite"] == "quick:stsb-de" and results["tasks"]["stsb-de"]["sizes"] == {"pairs": 100}


def test_cli_evaluate_list(capsys):
    assert main(["evaluate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "quick:" in out and "help-retrieval-da" in out


# ---------------------------------------------------------------- tasks from sources no recipe reads
def test_catalog_bitext_has_one_answer_per_message_and_shares_the_english_side():
    en_da = task_data.gettext_bitext("en", "da", 120, seed=42)
    en_de = task_data.gettext_bitext("en", "de", 120, seed=42)
    for source, target in (en_da, en_de):
        assert len(source) == len(target) == 120
        assert len(set(source)) == 120 and len(set(target)) == 120
        assert not set(source) & set(target)
        assert all(40 <= len(s) <= 300 and "%" not in s and "|" not in s for s in source)
    assert en_da[0] == en_de[0]  # the same English messages, so en-da and en-de compare
    assert task_data.gettext_bitext("en", "da", 120, seed=7)[0] != en_da[0]
    with pytest.raises(Decoder2VecError, match="en -> da or de, not en -> fr"):
        task_data.gettext_bitext("en", "fr", 10, seed=42)


def test_settings_retrieval_uses_the_same_settings_in_every_language():
    data = {lang: task_data.gsettings_retrieval(lang, 60, 120, seed=42, max_chars=250) for lang in ("en", "da", "de")}
    for queries, corpus, relevant in data.values():
        assert len(queries) == 60 and len(corpus) == 120 and relevant == [{i} for i in range(60)]
        assert len(set(queries)) == 60 and len(set(corpus)) == 120
        assert all(0 < len(doc) <= 250 for doc in corpus)
    assert data["en"][0] != data["da"][0] != data["de"][0]
    # The whole pool (251 settings with unique texts): query i's answer is document i in every language.
    pool = {lang: task_data.gsettings_retrieval(lang, 1000, 1000, seed=42, max_chars=None) for lang in ("en", "da")}
    assert len(pool["en"][0]) == len(pool["da"][1]) == 251
    i = pool["en"][0].index("On-screen keyboard")
    assert pool["en"][1][i] == "Whether the on-screen keyboard is turned on."
    assert (pool["da"][0][i], pool["da"][1][i]) == ("Skærmtastatur", "Om skærmtastaturet er slået til.")


def test_danish_and_german_suites_hold_tasks_from_sources_no_recipe_reads():
    from decoder2vec.data.registry import EVALUATION_ONLY
    from decoder2vec.evaluation.runner import LIBREOFFICE_SOURCES

    for suite in ("default", "da", "de"):
        for lang in ("da", "de"):
            tasks = [t for t in load_tasks(suite) if t.language == lang]
            held = [t for t in tasks if t.source in EVALUATION_ONLY]
            if suite in ("default", lang):
                assert {t.type for t in held} == {"bitext", "retrieval"}, (suite, lang)
                assert any(t.source in LIBREOFFICE_SOURCES for t in tasks)


def test_averages_with_and_without_libreoffice():
    from decoder2vec.evaluation.runner import averages

    def task(lang, source, score):
        return {"type": "sts", "language": lang, "source": source, "metric": "cosine_spearman",
                "main_score": score, "scores": {"cosine_spearman": score}, "seconds": 1.0}

    tasks = {"help-retrieval-da": task("da", "libreoffice-help", 0.9), "settings-retrieval-da": task("da", "gsettings", 0.4),
             "catalog-bitext-en-da": task("da", "gettext", 0.2), "stsb-de": task("de", "stsb", 0.6),
             "stsb-en": task("en", "stsb", 0.5)}
    got = averages(tasks)
    assert got == pytest.approx({"da": 0.5, "da-no-libreoffice": 0.3, "de": 0.6, "en": 0.5, "all": 0.52})
    # A results file written before tasks recorded their source: looked up by task name.
    old = {name: {k: v for k, v in t.items() if k != "source"} for name, t in tasks.items()}
    assert averages(old) == got
    table = compare([{"model": "m", "suite": "default", "tasks": old, "averages": {"da": 0.5, "all": 0.52}}])
    rows = {line.rsplit(None, 1)[0].strip(): line.split()[-1] for line in table.splitlines() if line.startswith("average")}
    assert rows == {"average en": "50.00", "average da": "50.00", "average da without LibreOffice": "30.00",
                    "average de": "60.00", "average (all tasks)": "52.00"}
