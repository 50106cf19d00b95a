"""decoder2vec index SHARDS --output DB [--query-instruction TEXT] [--index-type auto]

A thin layer over `decoder2vec.search.build_index`: the shards of `decoder2vec encode --output
FOLDER` into a LanceDB table with an ANN index. Run the same command again to resume a stopped build.
"""

from __future__ import annotations

from ..search import EXACT_BELOW, INDEX_TYPES, build_index

KEYWORDS_OF = (build_index,)
CLI_ONLY = {}


def add_arguments(p):
    p.add_argument("shards", help="the folder `decoder2vec encode --output FOLDER` wrote (finished)")
    p.add_argument("--output", required=True, help="the index folder (LanceDB table + decoder2vec_index.json)")
    p.add_argument("--query-instruction", dest="query_instruction", default=None,
                   help="the instruction queries are encoded with (the documents' is the encode's --instruction)")
    p.add_argument("--index-type", dest="index_type", choices=INDEX_TYPES, default="auto",
                   help=f"auto: exact search below {EXACT_BELOW:,} rows, else IVF-HNSW-SQ (float/int8) or "
                        "IVF-FLAT (binary); exact: no index")


def run(args):
    record = build_index(args.shards, args.output, query_instruction=args.query_instruction,
                         index_type=args.index_type, show_progress_bar=True)
    index = record["index"]
    how = f"{index['type']} index ({index['metric']})" if index else f"exact search ({record['metric']})"
    print(f"indexed {record['rows']} rows of {record['source']} into {args.output}: {how}, "
          f"{record['options'].get('precision') or 'float32'} vectors")
