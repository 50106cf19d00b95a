"""The metrics on hand-made embeddings whose right answers are known."""

import numpy as np
import pytest

from decoder2vec.evaluation import metrics


def test_sts_rank_correlation():
    gold = np.linspace(0, 5, 20)
    # b's angle to a shrinks as gold grows: cosine similarity is monotonic in gold.
    angle = (5 - gold) / 5 * np.pi / 2
    a = np.tile([[2.0, 0.0]], (20, 1))
    b = np.stack([np.cos(angle), np.sin(angle)], axis=1) * 3
    scores = metrics.sts_scores(a, b, gold)
    assert scores["cosine_spearman"] == pytest.approx(1.0)
    assert metrics.sts_scores(a, b, -gold)["cosine_spearman"] == pytest.approx(-1.0)
    assert set(scores) == {f"{s}_{c}" for s in ("cosine", "manhattan", "euclidean") for c in ("pearson", "spearman")}


def test_retrieval_known_ranks():
    corpus = np.eye(4)
    # query 0 ranks doc 0 first; query 1 ranks doc 2 first and its relevant doc 1 second.
    queries = np.array([[1.0, 0, 0, 0], [0, 0.5, 1.0, 0]])
    scores = metrics.retrieval_scores(queries, corpus, [{0}, {1}], k=10)
    assert scores["ndcg_at_10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    assert scores["recall_at_10"] == 1.0
    assert scores["mrr_at_10"] == pytest.approx(0.75)
    top1 = metrics.retrieval_scores(queries, corpus, [{0}, {1}], k=1)
    assert top1["recall_at_1"] == 0.5 and top1["ndcg_at_1"] == 0.5


def test_bitext_nearest_neighbour():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 16))
    assert metrics.bitext_scores(source, source + 0.01 * rng.normal(size=source.shape))["f1"] == 1.0
    shuffled = metrics.bitext_scores(source, source[::-1])
    assert shuffled["accuracy"] < 0.1


def test_pair_classification_ap_and_thresholds():
    a = np.array([[1.0, 0], [1, 0], [1, 0], [1, 0]])
    b = np.array([[1.0, 0.1], [1, 0.5], [0, 1], [1, -0.2]])  # cosines: high, mid, 0, high
    labels = [1, 0, 0, 1]
    scores = metrics.pair_classification_scores(a, b, labels)
    assert scores == {"ap": 1.0, "accuracy": 1.0, "f1": 1.0}
    assert metrics.pair_classification_scores(a, b, [0, 1, 1, 0])["ap"] < 0.6


def test_clustering_separated_blobs():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 10)) * 20
    labels = np.repeat([0, 1, 2], 30)
    x = centres[labels] + rng.normal(size=(90, 10))
    scores = metrics.clustering_scores(x, labels, n_experiments=3, seed=0)
    assert scores["v_measure"] > 0.95
    random_labels = rng.permutation(labels)
    assert metrics.clustering_scores(x, random_labels, n_experiments=3, seed=0)["v_measure"] < 0.2


def test_classification_mteb_protocol():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 12)) * 5
    train_y = np.repeat(list("abcd"), 20)
    test_y = np.repeat(list("abcd"), 10)
    train = centres[np.searchsorted(list("abcd"), train_y)] + rng.normal(size=(80, 12))
    test = centres[np.searchsorted(list("abcd"), test_y)] + rng.normal(size=(40, 12))
    scores = metrics.classification_scores(train, train_y, test, test_y, samples_per_label=8, n_experiments=3, seed=0)
    assert scores["accuracy"] > 0.95 and scores["f1"] > 0.95
    again = metrics.classification_scores(train, train_y, test, test_y, samples_per_label=8, n_experiments=3, seed=0)
    assert again == scores  # fixed seeds
