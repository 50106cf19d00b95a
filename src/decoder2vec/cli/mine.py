"""decoder2vec mine PAIRS --model M --output FILE.jsonl [--num-negatives 3] [--relative-margin 0.05] ..."""

from __future__ import annotations

from ..data.corpora import load_texts
from ..data.pairs import load_pairs
from ..training.mining import SAMPLING_STRATEGIES, check_pair_file, mine_hard_negatives, write_pair_file
from . import add_keyword, add_model_argument

KEYWORDS_OF = (mine_hard_negatives, write_pair_file)
# load_pairs' `limit`; its `min_score` (an STS-B label threshold) is not offered: `--min-score` is
# the mining similarity floor.
CLI_ONLY = {"limit": "at most this many pairs are read (load_pairs' limit)"}


def add_arguments(p):
    p.add_argument("pairs", metavar="PAIRS",
                   help="the (query, positive) pairs: a packaged pair-set name, a .jsonl/.csv/.parquet file or a "
                        "hub dataset id, as the supervised stage's `data`")
    add_model_argument(p)
    add_keyword(p, write_pair_file, "output", required=True, metavar="FILE.jsonl",
                help="the pair file to write (query, positive, negative list, instruction)")
    add_keyword(p, write_pair_file, "overwrite", help="replace an existing output file")
    add_keyword(p, mine_hard_negatives, "num_negatives", help="negatives mined per query")
    add_keyword(p, mine_hard_negatives, "range_min", help="skip this many of the highest-ranked candidates")
    add_keyword(p, mine_hard_negatives, "range_max", type=int,
                help="consider only the top RANGE_MAX candidates (default: as sentence-transformers)")
    add_keyword(p, mine_hard_negatives, "absolute_margin", type=float,
                help="drop candidates scoring within this of the positive (likely false negatives)")
    add_keyword(p, mine_hard_negatives, "relative_margin", type=float,
                help="drop candidates above positive - |positive| x this (0.05: NV-Retriever's TopK-PercPos)")
    add_keyword(p, mine_hard_negatives, "max_score", type=float, help="drop candidates scoring above this")
    add_keyword(p, mine_hard_negatives, "min_score", type=float, help="drop candidates scoring below this")
    add_keyword(p, mine_hard_negatives, "sampling_strategy", choices=SAMPLING_STRATEGIES,
                help="take the hardest remaining candidates (top) or a random choice of them")
    add_keyword(p, mine_hard_negatives, "corpus", nargs="+", metavar="SOURCE",
                help="more candidate documents: .txt (one per line) / .jsonl / .csv / .parquet files or packaged "
                     "corpora (the pairs' positives always are candidates)")
    add_keyword(p, mine_hard_negatives, "query_instruction",
                help="instruction for queries whose pair has none (as the supervised recipe's)")
    add_keyword(p, mine_hard_negatives, "document_instruction", help="instruction for the candidate documents")
    add_keyword(p, mine_hard_negatives, "batch_size", help="texts per encode batch")
    add_keyword(p, mine_hard_negatives, "seed", help="seed of --sampling-strategy random")
    p.add_argument("--limit", type=int, default=None, help=CLI_ONLY["limit"])


def run(args):
    # The output, the pairs and (in mine_hard_negatives) the options fail before the (slow) model load.
    check_pair_file(args.output, overwrite=args.overwrite)
    pairs = load_pairs(args.pairs, limit=args.limit)
    corpus = [text for source in args.corpus for text in load_texts(source)] if args.corpus else None
    mined = mine_hard_negatives(
        pairs, args.model, range_min=args.range_min, range_max=args.range_max,
        num_negatives=args.num_negatives, absolute_margin=args.absolute_margin,
        relative_margin=args.relative_margin, max_score=args.max_score, min_score=args.min_score,
        sampling_strategy=args.sampling_strategy, corpus=corpus, query_instruction=args.query_instruction,
        document_instruction=args.document_instruction, batch_size=args.batch_size, seed=args.seed)
    path = write_pair_file(mined, args.output, overwrite=args.overwrite)
    negatives = sum(len(p.negatives) for p in mined)
    print(f"wrote {len(mined)} pairs with {negatives} negatives to {path} (use it as a supervised recipe's data)")
