"""Embed a corpus that does not fit in memory: stream it in bounded chunks into resumable Parquet
shards (or one .npy/.parquet file for small inputs). `decoder2vec encode` is a thin layer over
`encode_corpus`; `decoder2vec.corpus.ray_engine` runs the same job on Ray Data.

>>> from decoder2vec import Encoder
>>> from decoder2vec.corpus import encode_corpus, read_output
>>> encode_corpus(Encoder.from_pretrained("runs/supervised"), "passages/*.jsonl", "vectors/", on_empty="skip")
>>> read_output("vectors/")  # pyarrow Table: id, embedding
"""

from .fingerprint import fingerprint_of_encoder, model_fingerprint
from .long_texts import fit_texts, text_limit
from .reading import (FORMATS, Chunk, check_inputs, count_rows, first_rows, is_empty, read_chunks, resolve_inputs,
                      row_location, scan_inputs)
from ..encode_options import ON_EMPTY
from .run import (Quantizer, Summary, corpus_options, corpus_settings, encode_corpus, float_options, read_output,
                  recorded_options, shard_ends, split_empty)
from .shards import (MANIFEST, ShardFolder, check_output_path, check_resumable, embedding_array, ids_file,
                     manifest_path, read_shards, shard_table)

__all__ = [
    "FORMATS", "MANIFEST", "ON_EMPTY", "Chunk", "Quantizer", "ShardFolder", "Summary", "check_inputs", "check_output_path", "check_resumable", "corpus_options", "corpus_settings",
    "count_rows", "embedding_array", "encode_corpus", "fingerprint_of_encoder", "first_rows", "fit_texts", "float_options", "ids_file",
    "is_empty", "manifest_path", "model_fingerprint", "read_chunks", "read_output", "read_shards", "recorded_options", "resolve_inputs",
    "row_location", "scan_inputs", "shard_ends", "shard_table", "split_empty", "text_limit",
]
