"""The LLM2Vec paper's training data: Wikitext-103 (MNTP), Wiki1M sentences (SimCSE) and the public
E5 mix with its per-dataset instructions (supervised).

    wikitext-103         hub Salesforce/wikitext, wikitext-103-raw-v1, train split: raw lines, empty
                         lines included (the reference tokenizes and packs them too)
    wiki1m               hub princeton-nlp/datasets-for-simcse, wiki1m_for_simcse.txt: one sentence a line
    e5:FOLDER            the E5 mix as LLM2Vec reads it (its README's "echo-data" download): one
                         FOLDER/<dataset>.jsonl per dataset, lines {"query", "positive", "negative"}

Each loader is split in two: fetching (hub download, cached by huggingface_hub/datasets) and
reading the file in that format, so the readers are tested on small local files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import hf_hub_download, snapshot_download

from ..errors import Decoder2VecError
from .pairs import Pair

WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1")
WIKI1M = ("princeton-nlp/datasets-for-simcse", "wiki1m_for_simcse.txt")

# LLM2Vec's E5 mix: the query instruction of each dataset (llm2vec/dataset/E5Data.py). NLI and
# Quora appear twice with two instructions (split1/split2), so they alternate between halves.
E5_INSTRUCTIONS = {
    "allnli_split1": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "allnli_split2": "Retrieve semantically similar text",
    "dureader": "Given a Chinese search query, retrieve web passages that answer the question",
    "eli5_question_answer": "Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum",
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "hotpot_qa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "miracl": "Given a question, retrieve Wikipedia passages that answer the question",
    "mrtydi": "Given a question, retrieve Wikipedia passages that answer the question",
    "msmarco_passage": "Given a web search query, retrieve relevant passages that answer the query",
    "msmarco_document": "Given a web search query, retrieve relevant documents that answer the query",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question",
    "quora_duplicates_split1": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "quora_duplicates_split2": "Find questions that have the same meaning as the input question",
    "squad": "Retrieve Wikipedia passages that answer the question",
    "t2ranking": "Given a Chinese search query, retrieve web passages that answer the question",
    "trivia_qa": "Retrieve Wikipedia passages that answer the question",
}
# Symmetric tasks: the documents get the same instruction as the query; elsewhere documents get none.
E5_SYMMETRIC = ("allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2")


@dataclass
class E5Pair(Pair):
    """A Pair whose documents may carry an instruction too (E5's symmetric tasks)."""

    document_instruction: str | None = None


# ------------------------------------------------------------------ fetching (hub)
def _wikitext_files() -> list[str]:
    folder = snapshot_download(WIKITEXT[0], repo_type="dataset", allow_patterns=[f"{WIKITEXT[1]}/train-*.parquet"])
    files = sorted(str(p) for p in Path(folder, WIKITEXT[1]).glob("train-*.parquet"))
    if not files:
        raise Decoder2VecError(f"no train files of {WIKITEXT[1]} in {WIKITEXT[0]} (downloaded to {folder})")
    return files


def _wiki1m_file() -> str:
    return hf_hub_download(WIKI1M[0], WIKI1M[1], repo_type="dataset")


# ------------------------------------------------------------------ reading (one format each)
def read_wikitext(files: list[str]) -> list[str]:
    """Wikitext-103's parquet files (column `text`), every line as it is: the reference tokenizes
    empty lines too (each gives a lone BOS in the packed blocks)."""
    texts = []
    for file in files:
        table = pq.read_table(file, columns=["text"])
        texts.extend(str(t) for t in table.column("text").to_pylist() if t is not None)
    return texts


def read_wiki1m(file: str) -> list[str]:
    """One sentence a line, stripped (Wiki1M.py); blank lines carry nothing and are skipped."""
    with open(file, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_e5(folder: str | Path) -> list[E5Pair]:
    """The E5 mix in LLM2Vec's layout; split1/split2 halves become one task (E5Data.py), so a
    batch mixes their two instructions, as in the reference."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Decoder2VecError(f"e5: {folder} is not a folder of <dataset>.jsonl files (LLM2Vec's E5 download)")
    files = sorted(folder.glob("*.jsonl"))
    unknown = [f.stem for f in files if f.stem not in E5_INSTRUCTIONS]
    if unknown:
        raise Decoder2VecError(f"e5: {folder / (unknown[0] + '.jsonl')} is not an E5 dataset "
                               f"(known: {', '.join(E5_INSTRUCTIONS)})")
    if not files:
        raise Decoder2VecError(f"e5: no <dataset>.jsonl files in {folder} (known: {', '.join(E5_INSTRUCTIONS)})")
    pairs = []
    for file in files:
        name = file.stem
        instruction = E5_INSTRUCTIONS[name]
        task = name.replace("_split1", "").replace("_split2", "")
        with open(file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    query, positive, negative = row["query"], row["positive"], row.get("negative")
                except (ValueError, KeyError, TypeError) as exc:
                    raise Decoder2VecError(f"{file}:{number}: not an E5 row with query/positive/negative "
                                           f"({type(exc).__name__}: {exc})") from None
                pairs.append(E5Pair(query, positive, [negative] if negative else [], task, instruction,
                                    instruction if name in E5_SYMMETRIC else None))
    return pairs


# ------------------------------------------------------------------ the registry
PAPER_CORPORA = {"wikitext-103": lambda: read_wikitext(_wikitext_files())}
PAPER_SENTENCES = {"wiki1m": lambda: read_wiki1m(_wiki1m_file())}


def is_paper_source(source: str) -> bool:
    return source in PAPER_CORPORA or source in PAPER_SENTENCES or source.startswith("e5:")


def paper_texts(source: str) -> list[str]:
    """Texts (MNTP) or sentences (SimCSE) of a paper source."""
    if source in PAPER_CORPORA:
        return PAPER_CORPORA[source]()
    if source in PAPER_SENTENCES:
        return PAPER_SENTENCES[source]()
    raise Decoder2VecError(f"{source!r} is not a paper text source (choices: {', '.join([*PAPER_CORPORA, *PAPER_SENTENCES])})")


def paper_pairs(source: str) -> list[E5Pair]:
    if not source.startswith("e5:"):
        raise Decoder2VecError(f"{source!r} is not a paper pair source (use e5:FOLDER)")
    return read_e5(source[len("e5:"):])
