"""decoder2vec encode --input FILE --output FILE"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import Decoder2VecError
from ..pooling import POOLINGS
from ..precision import PRECISIONS
from . import add_model_argument, add_speed_arguments


def add_arguments(p):
    add_model_argument(p)
    p.add_argument("--input", required=True, help=".txt (one text per line), .jsonl or .csv with a text column")
    p.add_argument("--output", required=True, help=".npy or .parquet")
    p.add_argument("--text-column", dest="text_column", default="text", help="column/field of .csv/.jsonl input")
    p.add_argument("--instruction", default=None, help="instruction placed before every text (not pooled)")
    p.add_argument("--pooling", choices=POOLINGS, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    p.add_argument("--max-length", dest="max_length", type=int, default=None)
    p.add_argument("--normalize", dest="normalize_embeddings", action="store_true", help="L2-normalise vectors")
    p.add_argument("--truncate-dim", dest="truncate_dim", type=int, default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="float32")
    p.add_argument("--causal", action="store_true", help="keep causal attention (default: bidirectional)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: fp32 on CPU, bf16 on GPU)")
    add_speed_arguments(p)


def read_texts(path: str, text_column: str = "text") -> list[str]:
    """Texts from .txt (one per line, blank lines skipped), .jsonl, .csv or .parquet."""
    file = Path(path)
    if not file.is_file():
        raise Decoder2VecError(f"input file not found: {path}")
    suffix = file.suffix.lower()
    if suffix == ".txt":
        return [line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pandas as pd

    readers = {".jsonl": lambda f: pd.read_json(f, lines=True), ".csv": pd.read_csv, ".parquet": pd.read_parquet}
    if suffix not in readers:
        raise Decoder2VecError(f"unsupported input type {suffix!r} for {path}; use .txt, .jsonl, .csv or .parquet")
    frame = readers[suffix](file)
    if text_column not in frame.columns:
        raise Decoder2VecError(
            f"{path} has no column {text_column!r} (columns: {', '.join(map(str, frame.columns))}); "
            "name it with --text-column"
        )
    return frame[text_column].astype(str).tolist()


def write_vectors(path: str, vectors: np.ndarray, texts: list[str]) -> None:
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".npy", ".parquet"):
        raise Decoder2VecError(f"unsupported output type {suffix!r} for {path}; use .npy or .parquet")
    file.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(file, vectors)
    else:
        import pandas as pd

        pd.DataFrame({"text": texts, "embedding": list(vectors)}).to_parquet(file)


def run(args):
    from ..encoder import Encoder

    texts = read_texts(args.input, args.text_column)
    # Check the output type before the (slow) model load, so a typo costs nothing.
    if Path(args.output).suffix.lower() not in (".npy", ".parquet"):
        raise Decoder2VecError(f"unsupported output type for {args.output}; use .npy or .parquet")
    encoder = Encoder.from_pretrained(
        args.model, pooling=args.pooling, bidirectional=not args.causal, max_length=args.max_length,
        device=args.device, dtype=args.dtype, quantize=args.quantize, compile=args.compile,
    )
    vectors = encoder.encode(
        texts, instruction=args.instruction, batch_size=args.batch_size,
        normalize_embeddings=args.normalize_embeddings, truncate_dim=args.truncate_dim,
        precision=args.precision, show_progress_bar=True,
    )
    write_vectors(args.output, vectors, texts)
    print(f"wrote {vectors.shape[0]} vectors of dimension {vectors.shape[1]} ({vectors.dtype}) to {args.output}")
