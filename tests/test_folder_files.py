"""folder/files.py: every file of an Encoder folder has one owner in folder/, and no module outside
folder/ spells an owned file's name (so none opens one itself: it calls the owner)."""

import ast
from pathlib import Path

import pytest
import torch

from decoder2vec import Decoder2VecError
from decoder2vec.atomic import MARKER
from decoder2vec.folder import config, distill_projection, latent_attention, precision_ranges, sentence_transformers
from decoder2vec.folder.files import BACKBONE, OWNERS, owner
from decoder2vec.model.pooling import LatentAttention
from tiny import CORPUS, tiny_encoder

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "decoder2vec"
# Each owned name and the modules allowed to spell it: its owner (and folder/files.py's table).
OWNED_NAMES = {
    config.CONFIG_NAME: {"folder/config.py"},
    precision_ranges.FILE: {"folder/precision_ranges.py"},
    latent_attention.FILE: {"folder/latent_attention.py"},
    distill_projection.FILE: {"folder/distill_projection.py"},
    **{name: {"folder/sentence_transformers.py"} for name in sentence_transformers.FILES},
}
# Where a name has another meaning than an Encoder folder's file: atomic.py's record of older
# folders (which kind wrote them), and folder/config.py / anchors.py telling a sentence-transformers
# folder by its modules.json.
OTHER_MEANINGS = {"atomic.py": {config.CONFIG_NAME}, "folder/config.py": {"modules.json"},
                  "folder/anchors.py": {"modules.json"}}


def spelled_names(source: str, module: str) -> list[str]:
    """`line: name` for every string constant of `source` that is an owned file name (docstrings and
    comments may mention them; code may not), outside the name's owner."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for name, owners in OWNED_NAMES.items():
                if (node.value == name or node.value.endswith("/" + name)) and module not in owners \
                        and name not in OTHER_MEANINGS.get(module, ()):
                    found.append(f"{module}:{node.lineno}: {name}")
    return found


def test_no_module_outside_its_owner_spells_a_folder_file():
    found = [hit for path in sorted(PACKAGE.rglob("*.py"))
             for hit in spelled_names(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())]
    assert not found, "open these files through their owner in folder/:\n" + "\n".join(found)


def test_the_check_catches_a_module_that_opens_the_config_itself():
    source = 'import json\nconfig = json.loads((folder / "decoder2vec_config.json").read_text())\n'
    assert spelled_names(source, "training/stage.py") == ["training/stage.py:2: decoder2vec_config.json"]
    assert spelled_names(source, "folder/config.py") == []


def test_every_file_a_saved_encoder_holds_has_an_owner(tmp_path):
    encoder = tiny_encoder("llama")
    encoder.calibrate(CORPUS, normalize_embeddings=True)
    torch.manual_seed(0)
    encoder.latent_attention = LatentAttention(encoder.dimension, latents=4, heads=4)
    folder = encoder.save_pretrained(tmp_path / "enc")
    distill_projection.save_projection({"32": torch.nn.Linear(32, 8, bias=False)}, folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert {config.CONFIG_NAME, precision_ranges.FILE, latent_attention.FILE, distill_projection.FILE,
            "modules.json", "config.json", "model.safetensors", MARKER} <= set(files)
    assert [f for f in files if owner(f) is None] == []
    assert owner("config.json") == BACKBONE and owner("adapter/adapter_model.safetensors") == OWNERS["adapter/"]
    assert owner("notes.txt") is None and owner("sub/config.json") is None  # the check can fail


def test_the_owners_read_back_what_they_wrote(tmp_path):
    encoder = tiny_encoder("llama")
    ranges = encoder.calibrate(CORPUS, normalize_embeddings=True)
    folder = encoder.save_pretrained(tmp_path / "enc")
    read = precision_ranges.read_ranges(folder)
    assert read["normalize_embeddings"] is True and read["ranges"].tolist() == ranges.tolist()
    assert precision_ranges.read_ranges(tmp_path / "missing") is None
    (folder / precision_ranges.FILE).write_text('{"ranges": []}')
    with pytest.raises(Decoder2VecError, match=r"precision_ranges.json: unreadable precision ranges \(KeyError"):
        precision_ranges.read_ranges(folder)
