"""Word-level linear probe: frozen word vectors -> word roles, macro-F1 (the LLM2Vec paper's
word-level evaluation, on our own data).

Task: the LibreOffice help pages' markup (data/markup.py) labels each word of a paragraph as a
menu item, key name, literal input, literal, emphasis, link - or O. Per language (en, da, de): a
logistic-regression probe (standardised features) is trained on words of training pages and
scored on held-out pages (the project's page split, data/libreoffice.py). Score: macro-F1 over
the roles with at least MIN_SUPPORT words in both train and test (O excluded: always-O scores 0).
Word vector: the mean (--aggregate) of its tokens' last hidden states (model/words.py).

Models: the packaged SmolLM2-135M causal and bidirectional (untrained), each trained demo stage
found under runs/demo*/ (mntp, simcse, supervised), all-MiniLM-L6-v2's token embeddings, and a
word-form baseline (one-hot of the lower-cased word: what the word alone tells).
--conll SOURCE adds CoNLL-2003 NER (data/conll.py: a hub id, or a folder with train.txt/test.txt).

    nice -n 10 python benchmarks/word_probe.py --json runs/bench/word_probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from decoder2vec import Encoder
from decoder2vec.data.conll import CONLL_HUB, conll2003
from decoder2vec.data.markup import OUTSIDE, role_paragraphs
from decoder2vec.folder.anchors import minilm_path
from decoder2vec.folder.config import CONFIG_NAME
from decoder2vec.model.words import aggregate, join_words

MIN_SUPPORT = 10  # a role enters macro-F1 with at least this many words in train and in test
LANGS = ("en", "da", "de")


# ----------------------------------------------------------------- word vectors per model
def decoder2vec_words(encoder: Encoder, how: str, batch_size: int = 16):
    def embed(texts, spans):
        tokens = encoder.encode(texts, output_value="token_embeddings", batch_size=batch_size)
        return [aggregate(t["token_embeddings"], t["offsets"], s, how) for t, s in zip(tokens, spans)]
    return embed


def sentence_transformers_words(model: SentenceTransformer, how: str, batch_size: int = 16):
    """sentence-transformers' token embeddings hold [CLS]/[SEP] and no offsets: the offsets come
    from the same tokenizer call (same truncation), the special tokens are dropped."""
    def embed(texts, spans):
        tokens = model.encode(texts, output_value="token_embeddings", batch_size=batch_size,
                              convert_to_numpy=False)
        enc = model.tokenizer(texts, return_offsets_mapping=True, return_special_tokens_mask=True,
                              truncation=True, max_length=model.max_seq_length)
        out = []
        for i, (vectors, offsets, special, s) in enumerate(zip(tokens, enc["offset_mapping"],
                                                               enc["special_tokens_mask"], spans)):
            vectors = vectors.float().cpu().numpy()
            if len(vectors) != len(offsets):
                raise SystemExit(f"texts[{i}]: {len(vectors)} token vectors for {len(offsets)} tokens")
            keep = ~np.asarray(special, dtype=bool)
            out.append(aggregate(vectors[keep], np.asarray(offsets)[keep], s, how, where=f"texts[{i}]"))
        return out
    return embed


def word_form(texts, spans):
    """Baseline features: the word itself (lower-cased), and its shape."""
    return [[{"w=" + t[a:b].lower(): 1.0, "cap": float(t[a:a + 1].isupper())} for a, b in s]
            for t, s in zip(texts, spans)]


# ----------------------------------------------------------------- probe
def probe(embed, train, test) -> dict:
    """train/test: lists of (text, spans, labels). Fit on train words, macro-F1 on test words."""
    started = time.perf_counter()
    x_train, x_test = (embed([t for t, _, _ in part], [s for _, s, _ in part]) for part in (train, test))
    encode_s = time.perf_counter() - started
    y_train = [label for _, _, labels in train for label in labels]
    y_test = [label for _, _, labels in test for label in labels]
    if isinstance(x_train[0], list):  # word-form dicts
        vectorizer = DictVectorizer()
        x_train = vectorizer.fit_transform([f for row in x_train for f in row])
        x_test = vectorizer.transform([f for row in x_test for f in row])
        model = LogisticRegression(max_iter=2000)
    else:
        x_train, x_test = np.concatenate(x_train), np.concatenate(x_test)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    labels = sorted(label for label in set(y_train) & set(y_test) if label != OUTSIDE
                    and y_train.count(label) >= MIN_SUPPORT and y_test.count(label) >= MIN_SUPPORT)
    per_label = f1_score(y_test, predicted, labels=labels, average=None, zero_division=0)
    return {"macro_f1": float(np.mean(per_label)) if labels else float("nan"),
            "per_label": dict(zip(labels, map(float, per_label))),
            "train_words": len(y_train), "test_words": len(y_test), "encode_s": round(encode_s, 1)}


def markup_task(lang: str, n_train: int, n_test: int):
    def rows(split, limit):
        return [(p["text"], p["spans"], p["labels"]) for p in role_paragraphs(lang, split, limit=limit)]
    return rows("train", n_train), rows("test", n_test)


def conll_task(source: str, n_train: int, n_test: int):
    def rows(split, limit):
        return [(text, spans, tags) for text, spans, tags in
                ((*join_words(words), tags) for words, tags in conll2003(split, source)[:limit])]
    return rows("train", n_train), rows("test", n_test)


# ----------------------------------------------------------------- models
def stage_folders(roots) -> list[Path]:
    """Trained demo stages (an Encoder folder per stage) under each root, in training order."""
    found = []
    for root in roots:
        root = Path(root)
        if root.is_dir():
            folders = [f for f in root.iterdir() if (f / CONFIG_NAME).is_file()]
            found += sorted(folders, key=lambda f: f.stat().st_mtime)
    return found


def models(how: str, stage_roots, only: list[str] | None):
    """(name, embed) pairs, loaded one at a time (a generator: one model in memory)."""
    plan = [("word form (one-hot baseline)", lambda: word_form),
            ("SmolLM2-135M causal", lambda: decoder2vec_words(Encoder.from_pretrained(bidirectional=False), how)),
            ("SmolLM2-135M bidirectional", lambda: decoder2vec_words(Encoder.from_pretrained(bidirectional=True), how))]
    for folder in stage_folders(stage_roots):
        plan.append((f"{folder.parent.name}/{folder.name}",
                     lambda folder=folder: decoder2vec_words(Encoder.from_pretrained(folder), how)))
    plan.append(("all-MiniLM-L6-v2", lambda: sentence_transformers_words(
        SentenceTransformer(minilm_path(), device="cpu"), how)))
    for name, load in plan:
        if only is None or any(o.lower() in name.lower() for o in only):
            yield name, load()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--langs", nargs="+", default=list(LANGS), choices=LANGS)
    parser.add_argument("--train", type=int, default=100, help="training paragraphs per language")
    parser.add_argument("--test", type=int, default=60, help="held-out paragraphs per language")
    parser.add_argument("--aggregate", default="mean", choices=["first", "mean"])
    parser.add_argument("--stages", nargs="*", default=["runs/demo", "runs/demo-quick"],
                        help="folders whose subfolders are trained Encoder stages")
    parser.add_argument("--models", nargs="*", default=None, help="only models whose name contains one of these")
    parser.add_argument("--conll", default=None, help=f"add CoNLL-2003 NER: a hub id ({CONLL_HUB}) or a folder "
                        "with train.txt and test.txt")
    parser.add_argument("--conll-train", type=int, default=2000, help="CoNLL training sentences")
    parser.add_argument("--conll-test", type=int, default=1000, help="CoNLL test sentences")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime: {load}", flush=True)
    tasks = {f"help-{lang}": markup_task(lang, args.train, args.test) for lang in args.langs}
    if args.conll:
        tasks["conll2003"] = conll_task(args.conll, args.conll_train, args.conll_test)
    for name, (train, test) in tasks.items():
        print(f"{name}: {len(train)} train / {len(test)} test texts", flush=True)
    results = []
    for model, embed in models(args.aggregate, args.stages, args.models):
        row = {"model": model, "tasks": {}}
        for task, (train, test) in tasks.items():
            row["tasks"][task] = probe(embed, train, test)
            print(f"  {model:34} {task:10} macro-F1 {row['tasks'][task]['macro_f1']:.3f} "
                  f"({row['tasks'][task]['encode_s']} s encode)", flush=True)
        results.append(row)
    names = list(tasks)
    print(f"\n| model | {' | '.join(names)} |\n|---|{'---:|' * len(names)}")
    for row in results:
        print(f"| {row['model']} | " + " | ".join(f"{row['tasks'][t]['macro_f1']:.3f}" for t in names) + " |")
    out = {"settings": vars(args), "min_support": MIN_SUPPORT, "uptime": load,
           "labels": {t: list(results[0]["tasks"][t]["per_label"]) for t in names} if results else {},
           "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main() and 0)
