"""Micro-batching: concurrent requests share one ONNX call, so a busy server runs batches like the CLI does.

The first waiting item opens a batch; the batch closes when it is full or ``max_wait_s`` after that
item arrived, whichever comes first. Batches run one at a time on a worker thread, off the event loop;
while one runs, the next fills. At most ``max_pending`` items wait: beyond that ``submit`` refuses at
once (``QueueFull``) instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class QueueFull(Exception):
    """More items are waiting than the batcher accepts."""


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    future: asyncio.Future
    arrived: float


class MicroBatcher(Generic[Item]):
    """Collects items into batches for ``run_batch(items) -> results`` (same order, same length)."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Any]],
        executor: Executor,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        max_pending: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.on_batch = on_batch
        self._waiting: collections.deque[_Waiting[Item]] = collections.deque()
        self._wakeup = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    async def submit(self, item: Item) -> Any:
        """The result for ``item`` once its batch has run; ``QueueFull`` at once when too many wait."""
        if len(self._waiting) >= self.max_pending:
            raise QueueFull(f"{len(self._waiting)} requests already waiting")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        self._wakeup.set()
        return await waiting.future

    async def _next_batch(self) -> list[_Waiting[Item]]:
        loop = asyncio.get_running_loop()
        while not self._waiting:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._waiting[0].arrived + self.max_wait_s
        while len(self._waiting) < self.max_batch and (remaining := deadline - loop.time()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]

    async def run(self) -> None:
        """Serve batches until cancelled; a failing batch fails only its own requests."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [w.item for w in batch])
            except Exception as exc:
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, result in zip(batch, results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(result)
