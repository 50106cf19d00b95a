"""Micro-batching: concurrent requests share one model call, and no request holds the model for
more than one call at a time.

A request's texts are split, in order, into pieces of at most `max_batch_tokens` tokens. One
collector task waits up to `max_wait_ms` for company, then packs pieces into a model call (one
piece per request per call, up to `max_batch_tokens` in all) and runs it in a single worker
thread: the event loop never waits on the model, and the model runs one call at a time. A
request with pieces left goes to the back of the line, behind requests not served yet, so a
2,048-text request delays a 1-text request that arrives meanwhile by one call, not by all of its
own. A request whose caller stopped waiting (client gone, timeout: its future is cancelled)
has its remaining pieces dropped before they reach the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """Too many requests are waiting."""


@dataclass(eq=False)
class _Job:
    """One request: its texts, its pieces as (start, stop, tokens), and where it stands."""

    texts: list[str]
    instructions: list[str | None]
    pieces: list[tuple[int, int, int]]
    future: asyncio.Future
    rows: list = field(default_factory=list)  # one array per piece, filled as pieces come back
    next: int = 0  # the first piece not yet handed to the model
    served: bool = False  # has had a piece in a model call
    passed_over: bool = False  # its next piece did not fit into the last call: it goes first in the next

    @property
    def waiting(self) -> bool:
        return self.next < len(self.pieces) and not self.future.done()


def split(lengths: Sequence[int], max_tokens: int) -> list[tuple[int, int, int]]:
    """Consecutive pieces of at most `max_tokens` tokens (a single longer text is a piece alone)."""
    pieces, start, tokens = [], 0, 0
    for i, n in enumerate(lengths):
        if i > start and tokens + n > max_tokens:
            pieces.append((start, i, tokens))
            start, tokens = i, 0
        tokens += n
    pieces.append((start, len(lengths), tokens))
    return pieces


class MicroBatcher:
    """`await batcher.submit(texts, instructions, lengths)` -> (n, dim) float32 vectors, where
    `lengths[i]` is text i's token count.

    `encode(texts, instructions)` is called in the worker thread with pieces of several requests
    at once and must return one row per text. `observe(texts, tokens, seconds)` hears of every
    successful model call (metrics).
    """

    def __init__(
        self,
        encode: Callable[[list[str], list[str | None]], np.ndarray],
        *,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        observe: Callable[[int, int, float], None] | None = None,
    ):
        self.encode = encode
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.observe = observe
        self._jobs: list[_Job] = []  # requests with pieces not yet handed to the model, in line order
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False
        self.batches = 0  # model calls made, for /health and the load benchmark
        self.requests = 0  # requests answered
        self.texts = 0  # texts the model encoded (of cancelled requests too: their pieces in flight)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder2vec-model")
        self._task = asyncio.create_task(self._collect(), name="decoder2vec-batcher")

    async def close(self) -> None:
        """Finish what is queued or running, then stop the collector and the worker thread."""
        if self._task is None:
            return
        while (self.queued or self._busy) and not self._task.done():
            await asyncio.sleep(0.01)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._executor.shutdown(wait=True)
        self._task = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        """Requests waiting for (more of) the model."""
        return sum(job.waiting for job in self._jobs)

    async def submit(self, texts: Sequence[str], instructions: Sequence[str | None],
                     lengths: Sequence[int]) -> np.ndarray:
        if not self.alive:  # never queue work that nothing will pick up
            raise RuntimeError("the batcher is not running (not started, stopped, or crashed)")
        if not texts or not len(texts) == len(instructions) == len(lengths):
            raise ValueError(f"texts, instructions and lengths must be non-empty and of one length, got "
                             f"{len(texts)}, {len(instructions)}, {len(lengths)}")
        if self.queued >= self.max_queue:
            raise Overloaded(f"{self.max_queue} requests are already waiting")
        job = _Job(list(texts), list(instructions), split(lengths, self.max_batch_tokens),
                   asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._wake.set()
        # Cancelling the caller cancels the future; the collector then skips the job's pieces.
        return await job.future

    def _pending_tokens(self) -> int:
        return sum(job.pieces[job.next][2] for job in self._jobs if job.waiting)

    def _take(self) -> list[tuple[_Job, int]]:
        """The next model call: one piece per request, in line order, but requests passed over last
        time first and requests never served before those already served."""
        self._jobs = [job for job in self._jobs if job.waiting]
        line = sorted(self._jobs, key=lambda job: (not job.passed_over, job.served))  # stable: keeps arrival order
        batch, tokens = [], 0
        for job in line:
            piece = job.pieces[job.next][2]
            if batch and tokens + piece > self.max_batch_tokens:
                job.passed_over = True
                continue
            batch.append((job, job.next))
            tokens += piece
            job.next += 1
            job.served, job.passed_over = True, False
        # Served requests with pieces left go to the back of the line.
        taken = {id(job) for job, _ in batch}
        self._jobs = [j for j in self._jobs if id(j) not in taken] + [j for j, _ in batch if j.waiting]
        return batch

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queued:
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = loop.time() + self.max_wait
            # Polling (not an event per arrival) keeps this loop simple; 1 ms is below any model call.
            while loop.time() < deadline and self._pending_tokens() < self.max_batch_tokens:
                await asyncio.sleep(min(deadline - loop.time(), 0.001))
            batch = self._take()
            if batch:
                self._busy = True
                try:
                    await self._run(loop, batch)
                finally:
                    self._busy = False

    async def _run(self, loop, batch: list[tuple[_Job, int]]) -> None:
        try:
            results = await self._call(loop, batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("model call failed for a piece of %d texts", _count(batch))
                if not batch[0][0].future.done():
                    batch[0][0].future.set_exception(exc)
                return
            # One request's input may be what fails: run each piece alone so only its request
            # gets the error and the others their vectors.
            for item in batch:
                await self._run(loop, [item])
            return
        for (job, _), rows in zip(batch, results):
            if job.future.done():  # cancelled meanwhile: its caller is gone
                continue
            job.rows.append(rows)
            if len(job.rows) == len(job.pieces):
                self.requests += 1
                job.future.set_result(np.concatenate(job.rows) if len(job.rows) > 1 else job.rows[0])

    async def _call(self, loop, batch: list[tuple[_Job, int]]) -> list[np.ndarray]:
        spans = [job.pieces[i] for job, i in batch]
        texts = [t for (job, _), (a, b, _) in zip(batch, spans) for t in job.texts[a:b]]
        instructions = [t for (job, _), (a, b, _) in zip(batch, spans) for t in job.instructions[a:b]]
        start = time.perf_counter()
        vectors = await loop.run_in_executor(self._executor, self.encode, texts, instructions)
        seconds = time.perf_counter() - start
        if len(vectors) != len(texts):
            raise RuntimeError(f"the model returned {len(vectors)} rows for {len(texts)} texts")
        self.batches += 1
        self.texts += len(texts)
        if self.observe is not None:
            self.observe(len(texts), sum(tokens for _, _, tokens in spans), seconds)
        out, start = [], 0
        for a, b, _ in spans:
            out.append(vectors[start:start + b - a])
            start += b - a
        return out


def _count(batch) -> int:
    return sum(job.pieces[i][1] - job.pieces[i][0] for job, i in batch)
