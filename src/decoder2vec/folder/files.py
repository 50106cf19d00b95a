"""Every file of an Encoder folder and the one module that reads and writes it.

An Encoder folder (`Encoder.save_pretrained`, a training stage's output_dir, `decoder2vec export`)
holds the files below; each is owned by one component, as a sentence-transformers module names its
own `config_file_name`: the owner's `FILE` constant is the only spelling of the name, and its
read/write functions are the only code that opens the file. tests/test_folder_files.py checks that
a saved folder holds no file without an owner and that no module outside folder/ spells a name.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import MARKER
from . import config, distill_projection, latent_attention, precision_ranges, sentence_transformers

# The backbone's own files, written and read by transformers (save_pretrained / from_pretrained).
BACKBONE = "transformers (the backbone's save_pretrained: config.json, *.safetensors, tokenizer files)"
# The ONNX graph `decoder2vec export --to onnx` adds, read by Encoder.from_pretrained(backend="onnx").
ONNX_FILE = Path("onnx") / "model.onnx"
MODEL_CARD = "README.md"

OWNERS = {
    config.CONFIG_NAME: "folder/config.py (EncoderConfig: read_config, write_config, last_stage, finished)",
    precision_ranges.FILE: "folder/precision_ranges.py (read_ranges, write_ranges)",
    latent_attention.FILE: "folder/latent_attention.py (save_latent_attention, load_latent_attention)",
    distill_projection.FILE: "folder/distill_projection.py (save_projection)",
    **{name: "folder/sentence_transformers.py (write_sentence_transformers_files)"
       for name in sentence_transformers.FILES},
    MODEL_CARD: "folder/model_card.py (model_card; written by folder/export.py)",
    f"{ONNX_FILE.parent}/": "folder/onnx_export.py (export_onnx: the graph and backends/cache.py's record of its "
                            "checksums; read by encoder.py's ONNX backend)",
    "adapter/": "training/engine.py (the stage's LoRA adapter, written by peft)",
    "logs/": "training/engine.py (log.csv, TensorBoard events)",
    MARKER: "atomic.py (which files of the folder decoder2vec wrote)",
}
BACKBONE_FILES = ("config.json", "generation_config.json", "chat_template.jinja", "special_tokens_map.json")
BACKBONE_SUFFIXES = (".safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                     ".model", "model.safetensors.index.json")


def owner(relative: str) -> str | None:
    """Who owns the file at `relative` (a path inside an Encoder folder, "/"-separated); None: nobody."""
    if relative in OWNERS:
        return OWNERS[relative]
    top = relative.split("/")[0] + "/"
    if top in OWNERS:
        return OWNERS[top]
    name = relative.rsplit("/", 1)[-1]
    if "/" not in relative and (name in BACKBONE_FILES or name.endswith(BACKBONE_SUFFIXES)):
        return BACKBONE
    return None
