"""CoNLL-2003 named entities (the LLM2Vec paper's word-level NER task), as (words, tags) sentences.

From the hub (`datasets`, default "eriktks/conll2003": the "conll2003" dataset's home) for users
with internet, or from a local folder of `train.txt`/`validation.txt`/`test.txt` in the shared
task's own text format: one "word POS chunk NER"
line per word, a blank line between sentences, "-DOCSTART-" lines between documents (the NER tag is
the last column). Offline with no local file: a one-line error.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from ..errors import Decoder2VecError, choices_error

CONLL_HUB = "eriktks/conll2003"
SPLITS = ("train", "validation", "test")


def read_conll(path: str | os.PathLike) -> list[tuple[list[str], list[str]]]:
    """Sentences of a CoNLL-2003 format file: (words, NER tags)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Decoder2VecError(f"{path}: cannot read a CoNLL file ({type(exc).__name__}: {exc})") from None
    sentences, words, tags = [], [], []
    for number, line in enumerate(lines + [""], start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        if len(fields) < 2:
            raise Decoder2VecError(f"{path}:{number}: expected 'word ... TAG' (CoNLL columns), got {line!r}")
        words.append(fields[0])
        tags.append(fields[-1])
    if not sentences:
        raise Decoder2VecError(f"{path}: no sentence in CoNLL format (word ... TAG lines, blank line between)")
    return sentences


def _offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def conll2003(split: str, source: str | os.PathLike = CONLL_HUB) -> list[tuple[list[str], list[str]]]:
    """One split of CoNLL-2003 as (words, NER tags) sentences: `source` is a local folder holding
    `<split>.txt` in CoNLL format, or a hub dataset with `tokens` and `ner_tags`."""
    if split not in SPLITS:
        raise choices_error("CoNLL-2003 split", split, SPLITS)
    if Path(source).is_dir():
        return read_conll(Path(source) / f"{split}.txt")
    if _offline():
        raise Decoder2VecError(f"CoNLL-2003 {split}: {source} is not a local folder and the hub is offline "
                               f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE): pass a folder with {split}.txt in CoNLL format")
    try:
        # The hub's parquet copy: datasets no longer runs the original loading script.
        data = datasets.load_dataset(str(source), split=split, revision="refs/convert/parquet")
    except Exception as exc:  # network, unknown id, gated: all end the same way for the user
        raise Decoder2VecError(f"CoNLL-2003 {split}: could not load {source} from the hub "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                               f"pass a folder with {split}.txt in CoNLL format instead") from None
    names = data.features["ner_tags"].feature.names
    return [(list(row["tokens"]), [names[t] for t in row["ner_tags"]]) for row in data if row["tokens"]]
