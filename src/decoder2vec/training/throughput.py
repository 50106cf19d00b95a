"""Honest speed figures: tokens/s and the share of the machine's measured matmul peak.

Peak: one timed square matmul in the training dtype, measured at the start of each run (under a
second), never cached: a peak measured while the machine was busy would inflate every later figure.
Model FLOPs per token with LoRA: forward 2N plus backward 2N (gradients w.r.t. activations; the
frozen weights get none, LoRA's own are negligible), so 4 x N x tokens, N = parameters of the
decoder layers (embeddings are a lookup). A full fine-tune would be the usual 6N.
"""

from __future__ import annotations

import time

import torch

from .lora import decoder_layers


FLOPS_PER_PARAM_TOKEN = 4


def measure_peak_flops(device: torch.device | str = "cpu", dtype=torch.float32, size: int = 2048) -> float:
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def layer_parameters(model: torch.nn.Module) -> int:
    """N for the FLOPs formula: parameters inside the decoder layers."""
    return sum(p.numel() for p in decoder_layers(model).parameters())


class Throughput:
    """Turns a running token count into tokens/s and % of peak between two log lines."""

    def __init__(self, params: int, peak_flops: float):
        self.params, self.peak = params, peak_flops
        self.last_time, self.last_tokens = time.perf_counter(), 0

    def figures(self, tokens: int) -> dict:
        now = time.perf_counter()
        seconds, new = now - self.last_time, tokens - self.last_tokens
        self.last_time, self.last_tokens = now, tokens
        if seconds <= 0 or new <= 0:
            return {}
        rate = new / seconds
        return {"tokens_per_s": round(rate, 1),
                "peak_percent": round(100 * FLOPS_PER_PARAM_TOKEN * self.params * rate / self.peak, 2)}
