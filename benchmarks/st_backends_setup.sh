#!/usr/bin/env bash
# Build the environment for sentence-transformers' onnx and openvino backends: its own venv,
# because optimum-onnx pins transformers < 4.58 (and optimum-intel an older one too) while
# decoder2vec needs >= 5.2. Idempotent: a finished venv is marked with .installed.
#
#   bash benchmarks/st_backends_setup.sh     # prints the venv's python path on the last line
#
# Where: $DECODER2VEC_CACHE/st-backends-venv (default ~/.cache/decoder2vec/st-backends-venv).
# encode_speed.py runs its sentence-transformers-onnx / -openvino engines with this python, on
# a folder holding decoder2vec's own exported graph (onnx/model.onnx) and OpenVINO IR
# (openvino/openvino_model.xml): optimum loads those as they are (no export of its own, which
# would be the causal model), so both sides run the same bidirectional graph and the comparison
# is of the engines and pipelines around it.
set -euo pipefail

cache="${DECODER2VEC_CACHE:-$HOME/.cache/decoder2vec}"
venv="$cache/st-backends-venv"
python="${PYTHON:-python3}"

if [ ! -f "$venv/.installed" ]; then
    mkdir -p "$cache"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    # The same local CPU torch as decoder2vec's venv (an unpinned one pulls CUDA wheels).
    "${pip[@]}" torch==2.13.0
    # sentence-transformers 5 (6 needs transformers 5); optimum-onnx pins transformers < 4.58.
    "${pip[@]}" "sentence-transformers[onnx,openvino]>=5.1,<6" "transformers>=4.48,<4.58" psutil
    "$venv/bin/python" -c "import optimum.onnxruntime, optimum.intel.openvino, sentence_transformers"
    touch "$venv/.installed"
fi
echo "$venv/bin/python"
