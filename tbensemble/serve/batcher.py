"""Micro-batching: concurrent requests share one ONNX call, so a busy server runs batches like the CLI does.

The first waiting item opens a batch; the batch closes when it is full or ``max_wait_s`` after that
item arrived, whichever comes first. Up to ``max_running`` batches run at once on the executor's threads,
off the event loop; while they run, the next fills. Two at a time keeps a small CPU busy: one batch's
Python steps (decisions, answers) and its clients' round trip overlap the other's ONNX call, which a
single running batch leaves idle (measured: ``scripts/bench_serve.py --parallel-batches``). At most
``max_pending`` items wait: beyond that ``submit`` refuses at once (``QueueFull``) instead of letting
latency grow without bound.
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
        max_running: int = 1,
    ) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.on_batch = on_batch
        self.max_running = max_running
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
        """Serve batches until cancelled, at most ``max_running`` at once; a failing batch fails only its own
        requests. Cancelling waits for the batches already running, so none of their requests is dropped."""
        slots = asyncio.Semaphore(self.max_running)
        running: set[asyncio.Task] = set()
        try:
            while True:
                await slots.acquire()
                try:
                    batch = await self._next_batch()
                except BaseException:
                    slots.release()
                    raise
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                task = asyncio.create_task(self._run_batch(batch))
                running.add(task)
                task.add_done_callback(lambda done: (running.discard(done), slots.release()))
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run_batch(self, batch: list[_Waiting[Item]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [w.item for w in batch])
        except Exception as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)
