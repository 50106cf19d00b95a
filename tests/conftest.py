import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting make torch 10-20x slower when the CPU is shared (a busy
# CI runner, several test runs at once); sleeping waiters cost little on an idle machine. Must be
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every skip fails the run unless the test is marked allow_skip (a missing optional package must not
# pass silently): tests/skip_policy.py.
pytest_plugins = ["skip_policy", "pytester"]  # pytester: tests/test_suite_policy.py runs small suites


@pytest.fixture(scope="session")
def smollm2():
    """The real packaged SmolLM2-135M as a bidirectional mean-pooling Encoder (loaded once)."""
    from decoder2vec import Encoder

    return Encoder.from_pretrained()
