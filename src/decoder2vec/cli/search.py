"""decoder2vec search DB "query" [-k 10] [--format table|jsonl] [--model MODEL]

A thin layer over `decoder2vec.search.Index.search`. The model is the one the corpus was encoded
with (recorded in the index, loaded with the same options); --model names another path to it, and
an Encoder whose vectors differ from the index's is refused.
"""

from __future__ import annotations

import json
import shutil

from ..encoder import Encoder
from ..errors import Decoder2VecError
from ..search import Index, check_k, check_queries
from . import add_model_argument

KEYWORDS_OF = (Index.search, Encoder.from_pretrained)
CLI_ONLY = {"format": "table or jsonl"}
FORMATS = ("table", "jsonl")


def add_arguments(p):
    p.add_argument("index", help="an index folder (`decoder2vec index SHARDS --output FOLDER`)")
    p.add_argument("query", help="the text to search for")
    p.add_argument("-k", "--k", dest="k", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--format", choices=FORMATS, default="table", help="a table, or one JSON object per line")
    add_model_argument(p)
    p.add_argument("--nprobes", type=int, default=None,
                   help="IVF partitions searched (ANN indexes; default LanceDB's): more = higher recall, slower")
    p.add_argument("--rescore-multiplier", dest="rescore_multiplier", type=int, default=4,
                   help="int8/binary indexes: candidates fetched per result before rescoring with the float query")
    p.add_argument("--device", default=None)


def run(args):
    # The cheap checks first: a typo costs nothing, not a model load.
    check_queries(args.query)
    check_k(args.k)
    index = Index(args.index)
    encoder = load_encoder(index, args.model, args.device)
    hits = index.search(encoder, args.query, k=args.k, nprobes=args.nprobes,
                        rescore_multiplier=args.rescore_multiplier)
    if args.format == "jsonl":
        for rank, hit in enumerate(hits, 1):
            print(json.dumps({"rank": rank, **hit.to_dict()}, ensure_ascii=False, default=str))
        return
    width = max(40, shutil.get_terminal_size((120, 20)).columns - 30)
    print(f"{'rank':>4}  {'score':>8}  {'id':<12}  text")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        print(f"{rank:>4}  {hit.score:>8.4f}  {str(hit.id):<12}  {text[:width] + ('…' if len(text) > width else '')}")


def load_encoder(index: Index, model: str | None, device: str | None) -> Encoder:
    """The Encoder the index was built from, loaded as `decoder2vec encode` loaded it."""
    record = index.record
    model = model or record.get("model")
    if model is None:
        raise Decoder2VecError(f"{index.path} does not name the model its corpus was encoded with; pass --model")
    keys = record["encoder"]
    load = {name: keys[name] for name in ("pooling", "bidirectional", "max_length", "instruction_template")
            if keys.get(name) is not None}
    load.update({name: value for name, value in record.get("load", {}).items() if value is not None})
    return Encoder.from_pretrained(model, device=device, **load)
