import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2():
    """The real packaged SmolLM2-135M as a bidirectional mean-pooling Encoder (loaded once)."""
    from decoder2vec import Encoder

    return Encoder.from_pretrained()
