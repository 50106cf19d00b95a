"""Hard-negative mining (issue 17) on a tiny model and a handcrafted set whose ranking is known.

The tiny random llama ranks by word overlap; its cosines for the first query, measured:
positive "...dog." 0.796, the near-duplicate "...dog!" 0.748 (a false negative: it says what the
positive says), "Paris..." 0.093, "Embeddings..." 0.074, "A decoder-only..." 0.021, "Berlin..." -0.060.
"""

import argparse
import json
import warnings

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives
from tiny import tiny_encoder

from decoder2vec import Decoder2VecError
from decoder2vec.cli.mine import add_arguments, run
from decoder2vec.data.pairs import Pair, load_pairs
from decoder2vec.training.mining import mine_hard_negatives, write_pair_file
from decoder2vec.folder.anchors import minilm_path

FOX, FOX_DUPLICATE = "The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog!"
PARIS, DECODER = "Paris is the capital of France.", "A decoder-only language model predicts the next token."
EMBEDDINGS, BERLIN = "Embeddings map texts to vectors.", "Berlin the capital of Germany."
PAIRS = [
    Pair("quick brown fox", FOX, task="t"),
    Pair("capital of France", PARIS, task="t", instruction="Find the sentence that answers:"),
    Pair("language model", DECODER, task="t"),
    Pair("texts to vectors", EMBEDDINGS, task="t"),
    Pair("a fox that jumps", FOX_DUPLICATE, task="t"),
]


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder("llama")


def mine(encoder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mine_hard_negatives(PAIRS, encoder, corpus=[BERLIN], **kwargs)


def test_without_a_margin_the_near_duplicate_is_the_hardest_negative(encoder):
    mined = mine(encoder, num_negatives=2)
    assert mined[0].negatives == [FOX_DUPLICATE, PARIS]


@pytest.mark.parametrize("rule", [{"absolute_margin": 0.1}, {"relative_margin": 0.1}])
def test_the_margin_filters_the_false_negative(encoder, rule):
    mined = mine(encoder, num_negatives=2, **rule)
    assert mined[0].negatives == [PARIS, EMBEDDINGS]
    # Every pair comes back, in order, with its own fields.
    assert [(p.query, p.positive, p.instruction, p.task) for p in mined] == [
        (p.query, p.positive, p.instruction, p.task) for p in PAIRS]
    assert all(p.positive not in p.negatives for p in mined)


def test_range_min_skips_the_top_ranks(encoder):
    assert mine(encoder, range_min=1, range_max=4, num_negatives=2)[0].negatives == [PARIS, EMBEDDINGS]


def test_max_score_and_min_score(encoder):
    assert mine(encoder, max_score=0.5, min_score=0.05, num_negatives=3)[0].negatives == [PARIS, EMBEDDINGS]


def test_pairs_sharing_a_query_share_their_positives(encoder):
    pairs = [Pair("quick brown fox", FOX), Pair("quick brown fox", FOX_DUPLICATE), Pair("capital", PARIS)]
    with pytest.warns(UserWarning, match="1 of 2 queries got fewer than num_negatives=2"):
        mined = mine_hard_negatives(pairs, encoder, num_negatives=2)
    # Neither positive is a negative of the shared query; only the third pair's positive is left.
    assert mined[0].negatives == mined[1].negatives == [PARIS]


def test_too_few_candidates_warn_and_keep_every_pair(encoder):
    with pytest.warns(UserWarning, match=r"5 of 5 queries got fewer than num_negatives=2 .*first: pair 0"):
        mined = mine_hard_negatives(PAIRS, encoder, num_negatives=2, max_score=-0.9)
    assert len(mined) == len(PAIRS) and all(p.negatives == [] for p in mined)


def test_existing_negatives_are_kept_first(encoder):
    pairs = [Pair("quick brown fox", FOX, [BERLIN]), *PAIRS[1:]]
    assert mine_hard_negatives(pairs, encoder, num_negatives=1, absolute_margin=0.1)[0].negatives == [BERLIN, PARIS]


def test_the_same_choices_as_sentence_transformers(encoder, tmp_path):
    """Same vectors in (the Encoder folder loads in sentence-transformers), same negatives out.
    No instruction: a prompt ending in a space is one token more alone than before a word, so
    sentence-transformers' include_prompt=False drops a text token (ours cuts by character offsets)."""
    folder = encoder.save_pretrained(tmp_path / "enc")
    pairs = [p for p in PAIRS if not p.instruction]  # sentence-transformers has no per-row instruction
    options = dict(range_min=1, range_max=5, num_negatives=2, absolute_margin=0.05)
    theirs = st_mine_hard_negatives(Dataset.from_dict({"query": [p.query for p in pairs],
                                                      "positive": [p.positive for p in pairs]}),
                                    SentenceTransformer(str(folder), device="cpu"), corpus=[PARIS, BERLIN],
                                    output_format="n-tuple", query_prompt="", verbose=False, **options)
    ours = mine_hard_negatives(pairs, encoder, corpus=[PARIS, BERLIN], **options)
    assert {row["query"]: [row["negative_1"], row["negative_2"]] for row in theirs} == {
        p.query: p.negatives for p in ours}
    assert ours[0].negatives == [EMBEDDINGS, DECODER]  # the duplicate is within the margin, PARIS is rank 0


def test_the_pair_file_is_what_the_supervised_stage_reads(encoder, tmp_path):
    mined = mine(encoder, num_negatives=2, absolute_margin=0.1)
    path = write_pair_file(mined, tmp_path / "mined.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"query": "quick brown fox", "positive": FOX, "negative": [PARIS, EMBEDDINGS],
                       "instruction": None}
    loaded = load_pairs(str(path))
    assert [(p.query, p.positive, p.negatives, p.instruction) for p in loaded] == [
        (p.query, p.positive, p.negatives, p.instruction) for p in mined]
    with pytest.raises(Decoder2VecError, match="exists; choose a new file or pass overwrite=True"):
        write_pair_file(mined, path)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_negatives": 0}, "num_negatives must be >= 1"),
    ({"range_min": 3, "range_max": 4, "num_negatives": 2}, "leaves 1 candidates, fewer than num_negatives=2"),
    ({"sampling_strategy": "best"}, "sampling_strategy must be one of top, random"),
])
def test_bad_options_are_one_line_errors(encoder, kwargs, message):
    with pytest.raises(Decoder2VecError, match=message):
        mine_hard_negatives(PAIRS, encoder, **kwargs)


def test_cli(encoder, tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in PAIRS))
    (tmp_path / "more.txt").write_text(BERLIN + "\n")
    folder = encoder.save_pretrained(tmp_path / "enc")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "mined.jsonl"
    run(parser.parse_args([str(source), "--model", str(folder), "--output", str(out), "--num-negatives", "2",
                           "--absolute-margin", "0.1", "--corpus", str(tmp_path / "more.txt")]))
    first = json.loads(out.read_text().splitlines()[0])
    assert first["negative"] == [PARIS, EMBEDDINGS]
    assert "5 pairs" in capsys.readouterr().out


def test_random_sampling_draws_from_the_filtered_candidates(encoder):
    order = [PARIS, EMBEDDINGS, DECODER, BERLIN]  # the first query's candidates past the margin, hardest first
    draws = {tuple(mine(encoder, num_negatives=2, absolute_margin=0.1, sampling_strategy="random",
                        seed=seed)[0].negatives) for seed in range(6)}
    assert len(draws) > 1
    for negatives in draws:
        assert len(negatives) == 2 and set(negatives) <= set(order)
        assert order.index(negatives[0]) < order.index(negatives[1])


def test_a_sentence_transformers_model_mines_as_sentence_transformers_does(tmp_path):
    """`minilm` (the packaged all-MiniLM-L6-v2) mines through sentence-transformers: the same
    negatives as sentence-transformers' own function with that model; a per-pair instruction is
    refused (the model has no notion of it)."""
    minilm = SentenceTransformer(minilm_path(), device="cpu")
    pairs = [p for p in PAIRS if not p.instruction]
    options = dict(range_min=0, range_max=5, num_negatives=2, relative_margin=0.05)
    theirs = st_mine_hard_negatives(Dataset.from_dict({"query": [p.query for p in pairs],
                                                      "positive": [p.positive for p in pairs]}),
                                    minilm, corpus=[PARIS, BERLIN], output_format="n-tuple", verbose=False, **options)
    ours = mine_hard_negatives(pairs, "minilm", corpus=[PARIS, BERLIN], **options)
    assert len(theirs) >= 2  # sentence-transformers drops queries with too few negatives: some must remain
    assert {row["query"]: [row["negative_1"], row["negative_2"]] for row in theirs} == {
        p.query: p.negatives for p in ours if p.query in {row["query"] for row in theirs}}
    with pytest.raises(Decoder2VecError, match="takes no instruction"):
        mine_hard_negatives(PAIRS, "minilm", num_negatives=1)


def test_a_saved_encoder_folder_mines_as_the_encoder_with_instructions(encoder, tmp_path):
    """A saved Encoder folder also carries sentence-transformers' modules.json; `decoder2vec mine
    --model FOLDER` still uses the Encoder (folder.kind), so per-pair and query/document
    instructions work and the negatives are the in-memory Encoder's (not refused as they are for a
    sentence-transformers model)."""
    folder = encoder.save_pretrained(tmp_path / "enc")
    assert (folder / "modules.json").is_file() and (folder / "decoder2vec_config.json").is_file()
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"query": p.query, "positive": p.positive,
                                          "instruction": p.instruction}) + "\n" for p in PAIRS))
    options = dict(num_negatives=2, query_instruction="Retrieve the sentence:", document_instruction="Sentence:")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "mined.jsonl"
    run(parser.parse_args([str(source), "--model", str(folder), "--output", str(out), "--num-negatives", "2",
                           "--query-instruction", options["query_instruction"],
                           "--document-instruction", options["document_instruction"]]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = mine_hard_negatives(load_pairs(str(source)), encoder, **options)
    assert [row["negative"] for row in rows] == [p.negatives for p in expected]
    assert rows[1]["instruction"] == "Find the sentence that answers:"
    assert all(len(row["negative"]) == 2 for row in rows)
