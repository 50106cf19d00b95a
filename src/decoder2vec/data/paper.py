"""The LLM2Vec paper's training data: Wikitext-103 (MNTP), Wiki1M sentences (SimCSE) and the public
E5 mix with its per-dataset instructions (supervised).

    wikitext-103         hub Salesforce/wikitext, wikitext-103-raw-v1, train split: raw lines, empty
                         lines included (the reference tokenizes and packs them too)
    wiki1m               hub princeton-nlp/datasets-for-simcse, wiki1m_for_simcse.txt: one sentence a line
    e5:FOLDER            the public E5 mix as llm2vec 0.2.3 reads it (its README's "echo-data"
                         download): FOLDER/<dataset>.jsonl per dataset (allnli.jsonl,
                         quora_duplicates.jsonl, ...), lines {"query", "positive", "negative"};
                         the archive's split files (allnli_split1.jsonl, ...) are ignored, as 0.2.3
                         ignores them, unless the folder has nothing else
    e5-split:FOLDER      the split files, as llm2vec's earlier E5Data read them

Each loader is split in two: fetching (hub download, cached by huggingface_hub/datasets) and
reading the file in that format, so the readers are tested on small local files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import hf_hub_download, snapshot_download

from ..errors import Decoder2VecError
from .pairs import Pair

WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1")
WIKI1M = ("princeton-nlp/datasets-for-simcse", "wiki1m_for_simcse.txt")

# The public E5 archive as llm2vec 0.2.3's E5Data reads it: one file per dataset, read in this
# order (which, with the seed, fixes the training order). allnli and quora_duplicates carry two
# instructions, alternated by line parity (row 0 the first, row 1 the second, ...).
E5_INSTRUCTIONS = {
    "allnli": ("Given a premise, retrieve a hypothesis that is entailed by the premise",
               "Retrieve semantically similar text"),
    "dureader": "Given a Chinese search query, retrieve web passages that answer the question",
    "eli5_question_answer": "Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum",
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "hotpot_qa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "miracl": "Given a question, retrieve Wikipedia passages that answer the question",
    "mrtydi": "Given a question, retrieve Wikipedia passages that answer the question",
    "msmarco_passage": "Given a web search query, retrieve relevant passages that answer the query",
    "msmarco_document": "Given a web search query, retrieve relevant documents that answer the query",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question",
    "quora_duplicates": ("Given a question, retrieve questions that are semantically equivalent to the given question",
                         "Find questions that have the same meaning as the input question"),
    "squad": "Retrieve Wikipedia passages that answer the question",
    "t2ranking": "Given a Chinese search query, retrieve web passages that answer the question",
    "trivia_qa": "Retrieve Wikipedia passages that answer the question",
}
# The split-file layout (llm2vec before 0.2.3): NLI and Quora come as two files each, one
# instruction per file, and the documents of the symmetric halves get the instruction too. In
# 0.2.3 that branch names files the public archive does not have, so documents never get one
# (llm2vec issue #168); the split layout keeps the older behaviour, as its E5Data had it.
E5_SPLIT_INSTRUCTIONS = {
    "allnli_split1": E5_INSTRUCTIONS["allnli"][0],
    "allnli_split2": E5_INSTRUCTIONS["allnli"][1],
    **{name: E5_INSTRUCTIONS[name] for name in list(E5_INSTRUCTIONS)[1:10]},
    "quora_duplicates_split1": E5_INSTRUCTIONS["quora_duplicates"][0],
    "quora_duplicates_split2": E5_INSTRUCTIONS["quora_duplicates"][1],
    **{name: E5_INSTRUCTIONS[name] for name in list(E5_INSTRUCTIONS)[11:]},
}
E5_SPLIT_SYMMETRIC = ("allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2")


@dataclass
class E5Pair(Pair):
    """A Pair whose documents may carry an instruction too (the split layout's symmetric halves)."""

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


def e5_layout(folder: Path, layout: str | None = None) -> dict:
    """The instruction table to read `folder` with: the public archive's ("public": allnli.jsonl,
    quora_duplicates.jsonl, ...) or the split files' ("split": allnli_split1.jsonl, ...). The
    archive holds both kinds of NLI and Quora files; llm2vec 0.2.3 opens only its table's names, so
    the other kind is ignored. None: public, unless the folder has only split files."""
    names = {f.stem for f in folder.glob("*.jsonl")}
    if not names:
        raise Decoder2VecError(f"e5: no <dataset>.jsonl files in {folder} (the public archive has "
                               f"{', '.join(E5_INSTRUCTIONS)})")
    split_only = set(E5_SPLIT_INSTRUCTIONS) - set(E5_INSTRUCTIONS)
    if layout is None:
        layout = "split" if names & split_only and not names & {"allnli", "quora_duplicates"} else "public"
    table = E5_SPLIT_INSTRUCTIONS if layout == "split" else E5_INSTRUCTIONS
    other = {"allnli", "quora_duplicates"} if layout == "split" else split_only
    unknown = sorted(names - set(table) - other)
    if unknown:
        raise Decoder2VecError(f"e5: {folder / (unknown[0] + '.jsonl')} is not an E5 dataset "
                               f"(known: {', '.join(table)})")
    if layout == "split" and not names & split_only:
        raise Decoder2VecError(f"e5-split: {folder} has no split files (allnli_split1.jsonl, allnli_split2.jsonl, "
                               "quora_duplicates_split1.jsonl, quora_duplicates_split2.jsonl); use e5:FOLDER")
    return table


def read_e5(folder: str | Path, layout: str | None = None) -> list[E5Pair]:
    """The E5 mix as llm2vec 0.2.3's E5Data reads it: files in its order, each row's query
    instruction from its dataset (by line parity for allnli and quora_duplicates), no instruction
    on documents. layout="split" (source e5-split:FOLDER, or a folder of split files only) reads
    allnli_split1.jsonl, ... as llm2vec's earlier E5Data did (the symmetric halves' documents get
    their instruction). Datasets missing from the folder are left out (llm2vec would stop); split
    halves become one task either way."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Decoder2VecError(f"e5: {folder} is not a folder of <dataset>.jsonl files (LLM2Vec's E5 download)")
    table = e5_layout(folder, layout)
    pairs = []
    for name, instruction in table.items():
        file = folder / f"{name}.jsonl"
        if not file.is_file():
            continue
        task = name.replace("_split1", "").replace("_split2", "")
        with open(file, encoding="utf-8") as f:
            rows = 0
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    query, positive, negative = row["query"], row["positive"], row.get("negative")
                except (ValueError, KeyError, TypeError) as exc:
                    raise Decoder2VecError(f"{file}:{number}: not an E5 row with query/positive/negative "
                                           f"({type(exc).__name__}: {exc})") from None
                query_instruction = instruction if isinstance(instruction, str) else instruction[rows % 2]
                rows += 1
                pairs.append(E5Pair(query, positive, [negative] if negative else [], task, query_instruction,
                                    instruction if name in E5_SPLIT_SYMMETRIC else None))
    return pairs


def e5_blocks(pairs: list[E5Pair], block: int, seed: int) -> tuple[list[list[E5Pair]], list[E5Pair]]:
    """(blocks, left out): E5Data's batching for an effective batch of `block` pairs (per-device
    batch x processes) after transformers' set_seed(seed): each task's rows shuffled in turn, cut
    into full blocks (a task's tail short of a block is left out), then the blocks shuffled. The
    same Random stream as the reference's global `random`, so the same blocks in the same order."""
    rng = random.Random(seed)
    by_task: dict[str, list[E5Pair]] = {}
    for pair in pairs:  # insertion order: the files' order, as E5Data's data_map
        by_task.setdefault(pair.task, []).append(pair)
    blocks, left_out = [], []
    for rows in by_task.values():
        rng.shuffle(rows)
        full = len(rows) - len(rows) % block
        blocks += [rows[i:i + block] for i in range(0, full, block)]
        left_out += rows[full:]
    rng.shuffle(blocks)
    return blocks, left_out


# ------------------------------------------------------------------ the registry
PAPER_CORPORA = {"wikitext-103": lambda: read_wikitext(_wikitext_files())}
PAPER_SENTENCES = {"wiki1m": lambda: read_wiki1m(_wiki1m_file())}


def is_e5_source(source) -> bool:
    return str(source).startswith(("e5:", "e5-split:"))


def is_paper_source(source: str) -> bool:
    return source in PAPER_CORPORA or source in PAPER_SENTENCES or is_e5_source(source)


def paper_texts(source: str) -> list[str]:
    """Texts (MNTP) or sentences (SimCSE) of a paper source."""
    if source in PAPER_CORPORA:
        return PAPER_CORPORA[source]()
    if source in PAPER_SENTENCES:
        return PAPER_SENTENCES[source]()
    raise Decoder2VecError(f"{source!r} is not a paper text source (choices: {', '.join([*PAPER_CORPORA, *PAPER_SENTENCES])})")


def paper_pairs(source: str) -> list[E5Pair]:
    if source.startswith("e5-split:"):
        return read_e5(source[len("e5-split:"):], layout="split")
    if not source.startswith("e5:"):
        raise Decoder2VecError(f"{source!r} is not a paper pair source (use e5:FOLDER or e5-split:FOLDER)")
    return read_e5(source[len("e5:"):])
