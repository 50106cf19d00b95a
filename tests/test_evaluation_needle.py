"""The needle-in-a-haystack probe: haystack construction, and the task run through the runner
(the task declares the token length its documents need; the runner raises the limit, then puts
it back). Moved from test_languages.py with its assertions."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import CORPUS, tiny_tokenizer

from decoder2vec.errors import Decoder2VecError
from decoder2vec.evaluation import needle, run_task
from decoder2vec.folder.config import EncoderConfig

FILLER = [
    "Copenhagen is the capital of Denmark. It lies on the islands of Zealand and Amager. " * 3,
    "The Rhine flows from the Alps to the North Sea. Barges carry coal and grain along it. " * 3,
    "Photosynthesis turns light into chemical energy. Plants, algae and bacteria do it. " * 3,
] + CORPUS


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
    result = run_task(task, perfect)
    assert result["main_score"] == result["mrr"] == 1.0
    assert result["lengths"]["500"]["accuracy@1"] == 1.0
    assert set(result["positions"]) == {"0.1", "0.5", "0.9"}
    # The runner raised max_length to fit 500 tokens for the documents, then put it back.
    assert max(perfect.seen_max_length) >= 500 and perfect.config.max_length == 64

    scores = [run_task(needle.NeedleTask(lengths=(200,), n_documents=8, filler_texts=FILLER, seed=s),
                       _FakeEncoder(perfect=False))["mrr"] for s in range(5)]
    assert np.mean(scores) < 0.6  # chance MRR with 8 documents is 0.34


def test_needle_task_declares_lengths_and_never_needs_the_model():
    task = needle.NeedleTask(lengths=(200,), n_documents=4, filler_texts=FILLER, batch_size=2)
    inputs = task.inputs(tiny_tokenizer())
    assert list(inputs) == ["documents@200", "queries@200"]
    docs, queries = inputs["documents@200"], inputs["queries@200"]
    # The documents need their own length (+ room for special tokens), in small batches; the
    # queries carry the retrieval instruction and no token demand.
    assert 200 + 8 - 2 <= docs.max_length <= 200 + 8 + 2 and docs.batch_size == 2 and docs.instruction is None
    assert queries.instruction == needle.QUERY_INSTRUCTION["en"] and queries.max_length is None
    # Scoring needs vectors only: identical document/query vectors per subject rank perfectly.
    eye = np.eye(4)
    assert task.score({"documents@200": eye, "queries@200": eye})["mrr"] == 1.0
    with pytest.raises(Decoder2VecError, match="no tokenizer"):
        task.inputs(None)


def test_rank_scores_count_ties_against_the_encoder():
    same = np.ones((4, 3))
    hits, rr = needle.rank_scores(same, same)
    assert hits.sum() == 0 and np.allclose(rr, 0.25)
