import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tbensemble.serve.batcher import MicroBatcher, QueueFull


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_items_share_batches_up_to_the_limit():
    sizes = []

    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(lambda items: [i * 2 for i in items], pool, max_batch=4, max_wait_s=0.2)
            batcher.on_batch = sizes.append
            worker = asyncio.create_task(batcher.run())
            results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
            worker.cancel()
            return results

    assert _run(main()) == [i * 2 for i in range(10)]
    assert sizes == [4, 4, 2]


def test_a_lone_item_waits_at_most_max_wait():
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(lambda items: items, pool, max_batch=8, max_wait_s=0.05)
            worker = asyncio.create_task(batcher.run())
            loop = asyncio.get_running_loop()
            began = loop.time()
            await batcher.submit("x")
            worker.cancel()
            return loop.time() - began

    assert _run(main()) < 1.0


def test_queue_full_is_refused_at_once():
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(lambda items: items, pool, max_batch=8, max_wait_s=5.0, max_pending=2)
            waiting = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFull):
                await batcher.submit(3)
            for task in waiting:
                task.cancel()

    _run(main())


def test_a_failing_batch_fails_only_its_own_requests():
    def run_batch(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(run_batch, pool, max_batch=2, max_wait_s=0.05)
            worker = asyncio.create_task(batcher.run())
            first = await asyncio.gather(batcher.submit("bad"), batcher.submit("a"), return_exceptions=True)
            second = await batcher.submit("ok")
            worker.cancel()
            return first, second

    first, second = _run(main())
    assert all(isinstance(r, ValueError) for r in first)
    assert second == "ok"


def test_two_batches_run_at_once_with_max_running_two():
    import threading

    both_started = threading.Barrier(2, timeout=5)

    def run_batch(items):
        both_started.wait()  # raises BrokenBarrierError if the second batch never starts alongside
        return items

    async def main():
        with ThreadPoolExecutor(2) as pool:
            batcher = MicroBatcher(run_batch, pool, max_batch=2, max_wait_s=0.01, max_running=2)
            worker = asyncio.create_task(batcher.run())
            results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
            worker.cancel()
            return results

    assert _run(main()) == [0, 1, 2, 3]


def test_stopping_the_batcher_lets_running_batches_answer():
    import threading

    release = threading.Event()

    def run_batch(items):
        release.wait(5)
        return items

    async def main():
        with ThreadPoolExecutor(2) as pool:
            batcher = MicroBatcher(run_batch, pool, max_batch=1, max_wait_s=0.0, max_running=2)
            worker = asyncio.create_task(batcher.run())
            answers = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
            await asyncio.sleep(0.05)
            worker.cancel()
            release.set()
            await asyncio.gather(worker, return_exceptions=True)
            return await asyncio.gather(*answers)

    assert _run(main()) == [0, 1]
