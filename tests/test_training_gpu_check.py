"""benchmarks/gpu_check.py --cpu: every stage (gradient checkpointing, chunked attention) and bf16-path
encoding run end to end on tiny models, and the speed figures come out."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_gpu_check_cpu_mode(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    report = gpu_check.main(["--cpu", "--output", str(tmp_path), "--json", str(tmp_path / "report.json")])
    assert set(report["models"]) == {"tiny-llama", "tiny-gemma3_text"}
    for figures in report["models"].values():
        assert set(figures) == {"mntp", "simcse", "supervised", "encode_padded"}
        assert all(f["tokens_per_s"] > 0 and f["peak_percent"] > 0 for f in figures.values())
    for model in ("tiny-llama", "tiny-gemma3_text"):
        assert (tmp_path / model / "supervised" / "decoder2vec_config.json").is_file()
    assert (tmp_path / "report.json").is_file()
    from decoder2vec.backends import torch as torch_backend

    assert torch_backend.CHUNKED_ATTENTION_ABOVE == 2**24  # the lowered threshold was put back
