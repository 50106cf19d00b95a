"""decoder2vec export [MODEL] --to sentence-transformers OUT [--results results.json] [--push-to-hub REPO]
decoder2vec export [MODEL] --to onnx OUT"""

from __future__ import annotations

from ..errors import Decoder2VecError
from ..folder.export import export_sentence_transformers, push_to_hub
from ..folder.onnx_export import export_onnx
from ..results import read_results
from . import add_model_argument

FORMATS = ("sentence-transformers", "onnx")
KEYWORDS_OF = (export_sentence_transformers, push_to_hub)
CLI_ONLY = {"to": "format and output folder", "push_to_hub": "the hub repo (push_to_hub's repo_id)"}


def add_arguments(p):
    add_model_argument(p, positional=True)
    p.add_argument("--to", dest="to", nargs=2, metavar=("FORMAT", "OUT"), required=True,
                   help="format (sentence-transformers | onnx) and output folder")
    p.add_argument("--results", default=None, help="results JSON from `decoder2vec evaluate` for the model card")
    p.add_argument("--instructions", dest="instructions", action="append", default=None, metavar="NAME=TEXT",
                   help="a sentence-transformers prompt: NAME=INSTRUCTION (repeatable; default: query=...)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder that is not an earlier export, replacing only the files "
                        "decoder2vec writes (other files stay)")
    p.add_argument("--exact", action="store_true",
                   help="use decoder2vec's own ST module: identical vectors, but loading needs decoder2vec "
                        "and trust_remote_code=True (default: stock ST modules, no decoder2vec needed)")
    p.add_argument("--model-name", dest="model_name", default=None, help="name used in the model card")
    p.add_argument("--push-to-hub", dest="push_to_hub", default=None, metavar="REPO",
                   help="upload the folder to this Hugging Face hub repo (needs internet and a token)")
    p.add_argument("--private", action="store_true", help="create the hub repo as private")


def parse_instructions(items: list[str] | None) -> dict[str, str] | None:
    if items is None:
        return None
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise Decoder2VecError(f"--instructions must look like NAME=INSTRUCTION, got {item!r}")
        out[name.strip()] = text.strip()
    return out


def run(args):
    fmt, out = args.to
    if fmt not in FORMATS:
        raise Decoder2VecError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    instructions = parse_instructions(args.instructions)
    results = read_results(args.results) if args.results else None  # fail before the model load
    if fmt == "onnx":
        folder = export_onnx(args.model, out, overwrite=args.overwrite)
        print(f"wrote an Encoder folder with onnx/model.onnx to {folder} (decoder2vec serve {folder} --backend onnx)")
        return
    folder = export_sentence_transformers(args.model, out, results, instructions=instructions,
                                          model_name=args.model_name or args.push_to_hub, exact=args.exact,
                                          overwrite=args.overwrite)
    print(f"wrote a sentence-transformers folder to {folder} (SentenceTransformer({str(folder)!r}))")
    if args.push_to_hub:
        url = push_to_hub(folder, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
