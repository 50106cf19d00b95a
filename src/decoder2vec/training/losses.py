"""Contrastive losses: InfoNCE over in-batch (and cross-process) negatives."""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def world() -> tuple[int, int]:
    """(rank, world size): from torch.distributed, or before it starts (the Trainer starts it) from
    the RANK / WORLD_SIZE variables that torchrun and accelerate launch set; (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate `x` from every process along dim 0, keeping the gradient to each process's own
    rows (torch.distributed.nn's all_gather is differentiable). Rows may differ in number across
    processes: they are padded to the largest count and the padding is dropped again.
    Returns (gathered rows, row count of each process)."""
    rank, size = world()
    if size == 1:
        return x, [x.shape[0]]

    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    longest = max(counts)
    if longest == 0:
        return x, counts
    padded = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])]) if x.shape[0] < longest else x
    parts = all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)]), counts


def text_keys(texts: list[str]) -> torch.Tensor:
    """A stable 63-bit key per text (the same in every process, unlike hash()), to find equal
    texts among the candidates."""
    return torch.tensor([int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                        "little") >> 1 for t in texts], dtype=torch.long)


def gather_keys(keys: torch.Tensor) -> torch.Tensor:
    """Concatenate a 1-D key tensor from every process (no gradient), in rank order."""
    if world()[1] == 1:
        return keys
    count = torch.tensor([keys.shape[0]], device=keys.device)
    counts = [torch.zeros_like(count) for _ in range(world()[1])]
    dist.all_gather(counts, count)
    longest = int(max(counts))
    padded = torch.cat([keys, keys.new_zeros(longest - keys.shape[0])])
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:int(n)] for part, n in zip(parts, counts)])


def info_nce(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, *,
             scale: float = 20.0, gather: bool = False, keys: tuple | None = None) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of each query against its own positive among every candidate.

    Candidates are all positives (in-batch negatives) plus the hard negatives; with gather=True
    they come from every process. Scores are computed in fp32. `keys` = (query keys, positive
    keys, negative keys) from text_keys: a candidate whose text equals the query's own text or
    its positive's (STS-B pairs appear in both directions) is a false negative and is left out.
    Returns (loss, candidates per query: the mean number actually scored) so callers can log
    how many negatives each query really saw.
    """
    offset = 0
    if keys is not None:
        query_keys, positive_keys, negative_keys = (k.to(queries.device) for k in keys)
        candidate_keys = torch.cat([positive_keys, negative_keys])
    if gather:
        rank, _ = world()
        positives, counts = gather_with_grad(positives)
        offset = sum(counts[:rank])  # where this process's positives start among all of them
        if negatives is not None:
            negatives, _ = gather_with_grad(negatives)
        if keys is not None:
            candidate_keys = torch.cat([gather_keys(positive_keys), gather_keys(negative_keys)])
    candidates = positives if negatives is None or negatives.shape[0] == 0 else torch.cat([positives, negatives])
    # fp32 scores even under bf16 autocast (fast CPU training): a softmax over a batch of cosines
    # times `scale` needs more than bf16's 3 digits.
    with torch.autocast(queries.device.type, enabled=False):
        scores = F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T * scale
    target = torch.arange(queries.shape[0], device=queries.device) + offset
    seen = candidates.shape[0]
    if keys is not None:
        same = (candidate_keys[None, :] == positive_keys[:, None]) | (candidate_keys[None, :] == query_keys[:, None])
        same[torch.arange(len(target), device=same.device), target] = False  # never the query's own positive
        scores = scores.masked_fill(same, float("-inf"))
        seen = round(candidates.shape[0] - same.sum().item() / max(1, len(target)), 2)
    return F.cross_entropy(scores, target), seen
