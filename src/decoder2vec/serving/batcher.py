"""Micro-batching: concurrent requests share one model call.

Requests wait in a bounded asyncio queue; one collector task takes the first, gathers whatever
else arrives within `max_wait_ms` (up to `max_batch_tokens`), and runs the model in a single
worker thread. The event loop never waits on the model, and the model runs one call at a time,
so requests that arrive during a call form the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The request queue is full."""


@dataclass
class _Request:
    texts: list[str]
    instructions: list[str | None]
    tokens: int
    future: asyncio.Future


class MicroBatcher:
    """`await batcher.submit(texts, instructions, tokens)` -> (n, dim) float32 vectors.

    `encode(texts, instructions)` is called in the worker thread with the texts of several
    requests at once and must return one row per text.
    """

    def __init__(
        self,
        encode: Callable[[list[str], list[str | None]], np.ndarray],
        *,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
    ):
        self.encode = encode
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._idle: asyncio.Event | None = None
        self.batches = 0  # model calls made, for /health and the load benchmark
        self.requests = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder2vec-model")
        self._task = asyncio.create_task(self._collect(), name="decoder2vec-batcher")

    async def close(self) -> None:
        """Finish what is queued or running, then stop the collector and the worker thread."""
        if self._task is None:
            return
        while (not self._queue.empty() or not self._idle.is_set()) and not self._task.done():
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
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, texts: Sequence[str], instructions: Sequence[str | None], tokens: int) -> np.ndarray:
        if not self.alive:  # never queue work that nothing will pick up
            raise RuntimeError("the batcher is not running (not started, stopped, or crashed)")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Request(list(texts), list(instructions), tokens, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are already waiting") from None
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Request | None = None  # a request that did not fit into the previous batch
        while True:
            first = carry or await self._queue.get()
            carry = None
            self._idle.clear()
            batch, tokens = [first], first.tokens
            deadline = loop.time() + self.max_wait
            while tokens < self.max_batch_tokens:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    # Polling (not wait_for(queue.get())) so a timeout can never drop a dequeued item.
                    await asyncio.sleep(min(remaining, 0.001))
                    continue
                if tokens + item.tokens > self.max_batch_tokens:
                    carry = item
                    break
                batch.append(item)
                tokens += item.tokens
            await self._run(loop, batch)
            if carry is None and self._queue.empty():
                self._idle.set()

    async def _run(self, loop, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a client may have gone away meanwhile
        if not live:
            return
        texts = [t for r in live for t in r.texts]
        instructions = [i for r in live for i in r.instructions]
        try:
            vectors = await loop.run_in_executor(self._executor, self.encode, texts, instructions)
        except Exception as exc:  # every request of the batch gets the error
            log.exception("model call failed for a batch of %d texts", len(texts))
            for r in live:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        self.batches += 1
        self.requests += len(live)
        start = 0
        for r in live:
            rows = vectors[start:start + len(r.texts)]
            start += len(r.texts)
            if not r.future.done():
                r.future.set_result(rows)
