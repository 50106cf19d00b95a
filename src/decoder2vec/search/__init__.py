"""Search what you embedded: a corpus encode's Parquet shards into a LanceDB table with an ANN
index (`build_index`, `decoder2vec index`), searched with the Encoder that encoded them
(`search`, `Index`, `decoder2vec search`, the server's /v1/search).

>>> from decoder2vec import Encoder
>>> from decoder2vec.search import build_index, search
>>> build_index("vectors/", "db/", query_instruction="Given a question, retrieve passages that answer it")
>>> search(Encoder.from_pretrained("runs/supervised"), "db/", "how do I print?", k=5)   # [Hit(id, score, text)]
"""

from .build import EXACT_BELOW, INDEX_TYPES, build_index, read_manifest
from .index import Hit, Index, check_k, check_queries, search
from .record import RECORD, check_encoder, read_record

__all__ = ["EXACT_BELOW", "INDEX_TYPES", "RECORD", "Hit", "Index", "build_index", "check_encoder", "check_k",
           "check_queries", "read_manifest", "read_record", "search"]
