#!/usr/bin/env bash
# Build the reference llm2vec 0.2.3 environment: its own venv, because llm2vec pins
# transformers <= 4.44.2 while decoder2vec needs >= 5.2. Idempotent: a finished venv is
# marked with .installed and left alone.
#
#   bash benchmarks/reference/setup.sh        # prints the venv's python path on the last line
#
# Where: $DECODER2VEC_CACHE/llm2vec-venv (default ~/.cache/decoder2vec/llm2vec-venv).
set -euo pipefail

cache="${DECODER2VEC_CACHE:-$HOME/.cache/decoder2vec}"
venv="$cache/llm2vec-venv"
python="${PYTHON:-python3}"

if [ ! -f "$venv/.installed" ]; then
    mkdir -p "$cache"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    # torch pinned to the same local CPU build as decoder2vec's venv: an unpinned torch pulls
    # gigabytes of CUDA wheels, and the comparison is fairer on the same kernels.
    "${pip[@]}" torch==2.13.0
    # llm2vec 0.2.3 requires transformers>=4.43.1,<=4.44.2; peft 0.12 is the release of the
    # same summer. llm2vec itself goes in --no-deps: its datasets/evaluate/scikit-learn
    # requirements serve only its training scripts, never imported by `import llm2vec`.
    "${pip[@]}" "transformers==4.44.2" "peft==0.12.0" "accelerate==0.33.0" numpy tqdm packaging psutil
    "${pip[@]}" --no-deps "llm2vec==0.2.3"
    "$venv/bin/python" -c "import llm2vec, transformers; assert transformers.__version__ == '4.44.2'"
    touch "$venv/.installed"
fi
# llm2vec.dataset (E5Data, read by reference_training.py) logs through accelerate; a venv built
# before that comparison existed lacks it.
if ! "$venv/bin/python" -c "import accelerate" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "accelerate==0.33.0"
fi
echo "$venv/bin/python"
