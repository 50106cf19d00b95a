"""decoder2vec merge A B [C ...] [--weights 0.5 0.5] --output-dir DIR [--overwrite]"""

from __future__ import annotations

from ..training.merge import merge
from . import add_keyword

KEYWORDS_OF = (merge,)
CLI_ONLY: dict[str, str] = {}


def add_arguments(p):
    p.add_argument("folders", nargs="+", metavar="MODEL",
                   help="two or more models with the same architecture: Encoder folders, model folders, hub ids, "
                        ".gguf files or packaged names; the first one's tokenizer and pooling are kept")
    add_keyword(p, merge, "weights", nargs="+", type=float, metavar="W",
                help="one weight per model, each in [0, 1], summing to 1 (default: equal weights)")
    add_keyword(p, merge, "output_dir", required=True, metavar="DIR", help="the merged Encoder folder to write")
    add_keyword(p, merge, "overwrite",
                help="write into an existing folder that is not an Encoder folder, replacing only the files "
                     "decoder2vec writes")


def run(args):
    folder = merge(args.folders, args.weights, output_dir=args.output_dir, overwrite=args.overwrite)
    print(f"wrote the merged Encoder folder to {folder}")
