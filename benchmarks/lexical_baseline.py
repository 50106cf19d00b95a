"""BM25 and character n-grams on the suite's retrieval tasks: how far surface overlap alone gets (no model).

    .venv/bin/python benchmarks/lexical_baseline.py [--suite default] [--json OUT]

Why: on help-retrieval-da/de the English-only all-MiniLM-L6-v2 (77.2 / 68.8) beat EmbeddingGemma-300M
without its prompts (54.2 / 65.3) and every distilled Gemma-3-270M. A help page's title shares rare
words with its page (function names such as SFDocuments.Base or On...GoSub, menu names, product
words), so the task rewards exact lexical matching; this prints the score that matching alone
reaches, ranked with the evaluation's own nDCG@10 (evaluation/metrics). BM25: lower-cased word
tokens, k1 = 1.2, b = 0.75 over the task's corpus. Character n-grams: TF-IDF of 3-5-grams within
words (sublinear tf), cosine: it also matches parts of Danish and German compounds, as a subword
tokenizer does.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re

import numpy as np

from sklearn.feature_extraction.text import TfidfVectorizer

from decoder2vec.evaluation.metrics import ranking_scores, retrieval_scores
from decoder2vec.evaluation.suites import load_tasks

K1, B = 1.2, 0.75


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_top(queries: list[str], corpus: list[str], k: int = 10) -> np.ndarray:
    docs = [words(d) for d in corpus]
    n, average = len(docs), sum(map(len, docs)) / max(1, len(docs))
    frequency = collections.Counter(w for d in docs for w in set(d))
    counts = [collections.Counter(d) for d in docs]
    scores = np.zeros((len(queries), n))
    for i, query in enumerate(queries):
        for w in words(query):
            if w not in frequency:
                continue
            idf = math.log(1 + (n - frequency[w] + 0.5) / (frequency[w] + 0.5))
            for j, (tf, doc) in enumerate(zip(counts, docs)):
                if w in tf:
                    scores[i, j] += idf * tf[w] * (K1 + 1) / (tf[w] + K1 * (1 - B + B * len(doc) / average))
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--json", default=None, help='write {task: {"bm25", "char_ngrams"}} here')
    args = parser.parse_args()
    out = {}
    for task in load_tasks(args.suite):
        if task.type != "retrieval":
            continue
        queries, corpus, relevant = task.data
        bm25 = ranking_scores(bm25_top(queries, corpus), relevant)["ndcg_at_10"]
        grams = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit(corpus + queries)
        chars = retrieval_scores(grams.transform(queries).toarray(), grams.transform(corpus).toarray(),
                                 relevant)["ndcg_at_10"]
        out[task.name] = {"bm25": bm25, "char_ngrams": chars}
        print(f"{task.name:<24} nDCG@10  BM25 {100 * bm25:6.2f}   char 3-5-grams {100 * chars:6.2f}"
              f"   ({len(queries)} queries, {len(corpus)} documents)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
