"""Metrics on embeddings, computed the way MTEB 2.x computes them, so our numbers and MTEB's agree.

All scores are fractions in 0..1 (MTEB's result files; its leaderboard shows them x100).
"""

from __future__ import annotations

import functools
import random
import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score, adjusted_mutual_info_score, average_precision_score, f1_score, precision_score, recall_score,
    v_measure_score,
)
from threadpoolctl import threadpool_limits


def single_threaded(fn):
    """Run sklearn on one BLAS/OpenMP thread: the data is small, and with the cores busy (the
    encoder, other jobs) thread spin-waiting made k-means 50x slower in our measurements."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pairwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of a with row i of b."""
    return np.sum(unit_rows(a) * unit_rows(b), axis=1)


def sts_scores(a: np.ndarray, b: np.ndarray, gold) -> dict:
    """MTEB AbsTaskSTS: Pearson/Spearman of gold scores against cosine similarity (main: cosine_spearman)
    and against negative Manhattan/Euclidean distances."""
    gold = np.asarray(gold, dtype=np.float64)
    sims = {
        "cosine": pairwise_cosine(a, b),
        "manhattan": -np.abs(a - b).sum(axis=1),
        "euclidean": -np.linalg.norm(a - b, axis=1),
    }
    scores = {}
    for name, sim in sims.items():
        scores[f"{name}_pearson"] = float(pearsonr(gold, sim)[0])
        scores[f"{name}_spearman"] = float(spearmanr(gold, sim)[0])
    return scores


@single_threaded
def classification_scores(
    train_x: np.ndarray, train_y, test_x: np.ndarray, test_y, *,
    samples_per_label: int, n_experiments: int, seed: int,
) -> dict:
    """MTEB AbsTaskClassification: n_experiments logistic regressions (max_iter=100), each trained on
    `samples_per_label` examples per label drawn from a reshuffled train split; scores averaged."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    rng = np.random.RandomState(seed)
    idxs = np.arange(len(train_y))
    runs = []
    for _ in range(n_experiments):
        rng.shuffle(idxs)  # one generator across experiments: each draws a different subset
        counts: dict = {}
        chosen = []
        for i in idxs:
            if counts.get(train_y[i], 0) < samples_per_label:
                counts[train_y[i]] = counts.get(train_y[i], 0) + 1
                chosen.append(i)
        model = LogisticRegression(max_iter=100, random_state=seed)
        with warnings.catch_warnings():
            # MTEB's 100 iterations often stop short on raw LLM vectors; the score is still MTEB's,
            # so say nothing rather than print sklearn's advice ten times per task.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train_x[chosen], train_y[chosen])
        pred = model.predict(test_x)
        runs.append({
            "accuracy": accuracy_score(test_y, pred),
            "f1": f1_score(test_y, pred, average="macro"),
            "f1_weighted": f1_score(test_y, pred, average="weighted"),
        })
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


@single_threaded
def clustering_scores(x: np.ndarray, labels, *, n_experiments: int, seed: int, batch_size: int = 512) -> dict:
    """MTEB AbsTaskClustering (v2): MiniBatchKMeans with k = number of labels, fit on
    `n_experiments` bootstrap samples (with replacement); mean V-measure."""
    labels = np.asarray(labels)
    rng = random.Random(seed)
    model = MiniBatchKMeans(
        n_clusters=len(np.unique(labels)), batch_size=batch_size, init="k-means++", n_init=1, random_state=seed
    )
    v_measures, amis = [], []
    for _ in range(n_experiments):
        picks = rng.choices(range(len(labels)), k=len(labels))
        assigned = model.fit_predict(x[picks])
        v_measures.append(v_measure_score(labels[picks], assigned))
        amis.append(adjusted_mutual_info_score(labels[picks], assigned))
    return {"v_measure": float(np.mean(v_measures)), "v_measure_std": float(np.std(v_measures)),
            "ami": float(np.mean(amis))}


def retrieval_scores(queries: np.ndarray, corpus: np.ndarray, relevant: list[set[int]], k: int = 10) -> dict:
    """nDCG@k, recall@k, MRR@k and MAP@k with binary relevance, ranking by cosine similarity
    (what pytrec_eval computes for MTEB's retrieval tasks)."""
    sims = unit_rows(queries) @ unit_rows(corpus).T
    return ranking_scores(np.argsort(-sims, axis=1, kind="stable")[:, :k], relevant, k)


def ranking_scores(top, relevant: list[set[int]], k: int = 10) -> dict:
    """The scores of `retrieval_scores` from each query's ranked corpus indices (best first, at
    most k): what a search index returns (benchmarks/search.py scores its results with this)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, recall, mrr, maps = [], [], [], []
    for ranked, rel in zip(top, relevant):
        hits = np.array([doc in rel for doc in ranked], dtype=np.float64)
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg.append((hits * discounts[: len(hits)]).sum() / ideal)
        recall.append(hits.sum() / len(rel))
        first = np.flatnonzero(hits)
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        precision_at_hits = np.cumsum(hits)[hits > 0] / (np.flatnonzero(hits) + 1)
        maps.append(precision_at_hits.sum() / min(len(rel), k))
    return {f"ndcg_at_{k}": float(np.mean(ndcg)), f"recall_at_{k}": float(np.mean(recall)),
            f"mrr_at_{k}": float(np.mean(mrr)), f"map_at_{k}": float(np.mean(maps))}


def bitext_scores(source: np.ndarray, target: np.ndarray) -> dict:
    """MTEB BitextMining: each source sentence's nearest target by cosine is its predicted
    translation; label i is target i. Precision/recall/F1 weighted as MTEB does (main: f1)."""
    sims = unit_rows(source) @ unit_rows(target).T
    pred = sims.argmax(axis=1)
    gold = np.arange(len(source))
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "precision": float(precision_score(gold, pred, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, pred, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, pred, zero_division=0, average="weighted")),
    }


def pair_classification_scores(a: np.ndarray, b: np.ndarray, labels) -> dict:
    """MTEB AbsTaskPairClassification on cosine similarity: average precision (main), and the
    best accuracy and F1 over all thresholds."""
    labels = np.asarray(labels, dtype=np.int64)
    sims = pairwise_cosine(a, b)
    order = np.argsort(-sims, kind="stable")
    sorted_labels = labels[order]
    positives = sorted_labels.sum()
    # Threshold after each rank: everything above is predicted positive.
    true_pos = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(labels) + 1)
    accuracy = (true_pos + (len(labels) - positives) - (predicted - true_pos)) / len(labels)
    f1 = 2 * true_pos / (predicted + positives)
    return {
        "ap": float(average_precision_score(labels, sims)),
        "accuracy": float(max(accuracy.max(), 1 - positives / len(labels))),
        "f1": float(f1.max()),
    }
