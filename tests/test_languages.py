"""Language recipes (Danish, German), the man-page corpus, the needle-in-a-haystack probe, `adapt`."""

from __future__ import annotations

import numpy as np
import pytest

from decoder2vec.errors import Decoder2VecError
from decoder2vec.evaluation import needle
from tiny import CORPUS, tiny_tokenizer

FILLER = [
    "Copenhagen is the capital of Denmark. It lies on the islands of Zealand and Amager. " * 3,
    "The Rhine flows from the Alps to the North Sea. Barges carry coal and grain along it. " * 3,
    "Photosynthesis turns light into chemical energy. Plants, algae and bacteria do it. " * 3,
] + CORPUS


# ------------------------------------------------------------------------------ needle probe
@pytest.mark.parametrize("length", [200, 1000])
def test_haystack_documents_have_the_requested_length_and_needle_position(length):
    tok = tiny_tokenizer()
    positions = (0.0, 0.25, 0.5, 0.9)
    hay = needle.build_haystack(tok, FILLER, length, n_documents=8, positions=positions, seed=3)
    assert len(hay.documents) == len(hay.queries) == 8
    for doc, query, pos, offset, n in zip(hay.documents, hay.queries, hay.positions, hay.needle_offsets,
                                          hay.token_lengths):
        assert n == needle.count_tokens(tok, doc)
        assert abs(n - length) <= 2, (n, length)
        subject = query.removeprefix("What is the secret code of the ").removesuffix("?")
        planted = f"The secret code of the {subject} is "
        # The needle starts at the requested token (or where it still fits before the end), or at
        # most 2% of the document (>= 16 tokens) before it, at a sentence start.
        target = min(pos * length, length - needle.count_tokens(tok, f" {planted}1234. "))
        assert target - max(16, length // 50) - 2 <= offset <= target + 2, (pos, offset)
        assert doc.count(planted) == 1
        assert needle.count_tokens(tok, doc[: doc.index(planted)].rstrip()) == offset
    # Every document carries a different subject, so only the right one answers its query.
    assert len(set(hay.queries)) == 8


def test_haystack_is_deterministic_and_seeded():
    tok = tiny_tokenizer()
    a = needle.build_haystack(tok, FILLER, 300, 4, seed=1)
    b = needle.build_haystack(tok, FILLER, 300, 4, seed=1)
    c = needle.build_haystack(tok, FILLER, 300, 4, seed=2)
    assert a.documents == b.documents and a.queries == b.queries
    assert a.documents != c.documents


def test_haystack_rejects_bad_arguments():
    tok = tiny_tokenizer()
    with pytest.raises(Decoder2VecError, match="n_documents"):
        needle.build_haystack(tok, FILLER, 300, 99)
    with pytest.raises(Decoder2VecError, match="positions"):
        needle.build_haystack(tok, FILLER, 300, 3, positions=(1.5,))
    with pytest.raises(Decoder2VecError, match="klingon"):
        needle.build_haystack(tok, FILLER, 300, 3, language="klingon")
    with pytest.raises(Decoder2VecError, match="too short"):
        needle.build_haystack(tok, FILLER, 5, 3)


class _FakeEncoder:
    """An encoder that sees which needle subject a text mentions (perfect) or ignores the text."""

    def __init__(self, perfect: bool, language: str = "en", max_length: int = 64):
        from decoder2vec.encoder import EncoderConfig

        self.tokenizer = tiny_tokenizer()
        self.config = EncoderConfig(max_length=max_length)
        self.perfect, self.subjects = perfect, needle.SUBJECTS[language]
        self.rng = np.random.default_rng(0)
        self.seen_max_length = []

    def encode(self, texts, instruction=None, batch_size=32, **kwargs):
        self.seen_max_length.append(self.config.max_length)
        if not self.perfect:
            return self.rng.normal(size=(len(texts), 16))
        out = np.zeros((len(texts), len(self.subjects)))
        for row, text in enumerate(texts):
            for col, subject in enumerate(self.subjects):
                if f" {subject} is " in text or f" {subject}?" in text:
                    out[row, col] = 1.0
        return out


def test_needle_task_scores_a_perfect_encoder_one_and_a_random_one_low():
    task = needle.NeedleTask(lengths=(200, 500), n_documents=8, positions=(0.1, 0.5, 0.9), filler_texts=FILLER)
    perfect = _FakeEncoder(perfect=True)
    result = task.evaluate(perfect)
    assert result["main_score"] == result["mrr"] == 1.0
    assert result["lengths"]["500"]["accuracy@1"] == 1.0
    assert set(result["positions"]) == {"0.1", "0.5", "0.9"}
    # The probe raised max_length to fit 500 tokens while it ran, then put it back.
    assert max(perfect.seen_max_length) >= 500 and perfect.config.max_length == 64

    scores = [needle.NeedleTask(lengths=(200,), n_documents=8, filler_texts=FILLER, seed=s).evaluate(
        _FakeEncoder(perfect=False))["mrr"] for s in range(5)]
    assert np.mean(scores) < 0.6  # chance MRR with 8 documents is 0.34


def test_rank_scores_count_ties_against_the_encoder():
    same = np.ones((4, 3))
    hits, rr = needle.rank_scores(same, same)
    assert hits.sum() == 0 and np.allclose(rr, 0.25)


# ------------------------------------------------------------------------------ recipes and split
def test_language_recipes_validate():
    from decoder2vec import languages
    from decoder2vec.training.config import load_recipe

    for code in languages.LANGUAGES:
        for quick in (False, True):
            paths = languages.recipe_paths(code, quick)
            configs = {stage: load_recipe(path) for stage, path in paths.items()}
            assert [c.stage for c in configs.values()] == list(languages.STAGES)
            # Each stage starts from the previous one's output.
            assert configs["simcse"].model == configs["mntp"].output_dir
            assert configs["supervised"].model == configs["simcse"].output_dir
            # Training never names a source that could hold evaluation pages.
            for config in configs.values():
                for source in config.data:
                    assert not source.startswith("libreoffice") or source.endswith("-train"), source
                    assert source in languages.EXTRA_CORPORA or source in languages.EXTRA_PAIRS or \
                        source.startswith("stsb-"), source
    with pytest.raises(Decoder2VecError, match="language"):
        languages.recipe_paths("xx")


def test_help_split_is_stable_and_holds_out_a_fifth():
    from decoder2vec.languages import help_split

    keys = [f"text/shared/page{i:05d}" for i in range(5000)]
    held = [k for k in keys if help_split(k) == "test"]
    assert 0.17 < len(held) / len(keys) < 0.23
    assert [help_split(k) for k in keys[:50]] == [help_split(k) for k in keys[:50]]


def test_roff_paragraphs_keep_prose_and_drop_boilerplate():
    from decoder2vec.data.extra_sources import roff_paragraphs

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

    from decoder2vec import languages
    from tiny import tiny_config

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
    recipes = {}
    for stage in languages.STAGES:
        data = pairs if stage == "supervised" else corpus
        recipes[stage] = tmp_path / f"{stage}.yaml"
        recipes[stage].write_text(
            f"stage: {stage}\nmodel: unused\ndata: [{data}]\noutput_dir: unused\nmax_steps: 2\n"
            "per_device_train_batch_size: 4\nmax_length: 32\nsave_steps: 1\nlogging_steps: 1\nreport_to: none\n")
    monkeypatch.setattr(languages, "recipe_paths", lambda code, quick=False: recipes)
    evaluated = []
    monkeypatch.setattr(languages, "_evaluate", lambda model, lang, quick: evaluated.append(str(model)) or
                        {"model": str(model), "average": 0.5, "tasks": {}})
    run = tmp_path / "run"

    final = languages.adapt("da", model=str(base), output_dir=run)

    assert final == run / "supervised"
    assert evaluated == [str(base)] + [str(run / s) for s in languages.STAGES]
    saved = json.loads((final / "decoder2vec_config.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == list(languages.STAGES)
    assert set(json.loads((run / "results.json").read_text())) == {"base", *languages.STAGES}

    # Resumable: finished stages and evaluations are skipped.
    monkeypatch.setattr("decoder2vec.training.train", lambda *a, **k: pytest.fail("trained a finished stage"))
    evaluated.clear()
    assert languages.adapt("da", model=str(base), output_dir=run) == final
    assert evaluated == []


@pytest.mark.real
@pytest.mark.slow
def test_training_sources_hold_no_evaluation_text():
    """Real LibreOffice help data: no training pair or MNTP paragraph is a text that any suite's
    help task evaluates on."""
    from decoder2vec import languages
    from decoder2vec.evaluation.suites import load_tasks, suite_names

    texts = set()
    suites = suite_names() + [languages.evaluation_suite(code, quick=True) for code in languages.LANGUAGES]
    for suite in suites:
        for task in load_tasks(suite):
            if task.source.startswith("libreoffice"):
                texts.update(t for t in languages._flatten(task.load()) if len(t) > 40)
    assert len(texts) > 500
    for code in languages.LANGUAGES:
        pairs = languages._translation_pairs(code)
        assert len(pairs) > 1000
        assert not [p for p in pairs if p.query in texts or p.positive in texts]
        # Paragraph level: a short boilerplate sentence can still occur inside a longer
        # paragraph of another page (one or two such sentences per language).
        paragraphs = {p for doc in languages._help_documents(code) for p in doc.split("\n")}
        assert not paragraphs & texts
