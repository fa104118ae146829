"""Dynamic batching: a bounded queue of requests and one worker that turns them into forward passes.

A request enters `Batcher.submit` already validated (a malformed one is refused with a 4xx before it
gets here, so it can never poison a batch). The worker takes the oldest request, then keeps collecting
until the batch holds `max_batch` samples, or `max_wait_s` has passed since that first request, or no
other request is queued or arriving (then waiting could only add latency), and runs
the batch in one worker thread (the model is not thread-safe, and one forward at a time is what 2 cores
can do anyway). Each request gets its own result back through its future.

- Full queue: `submit` raises `QueueFull` at once (the route answers 503 with Retry-After).
- Timeout / disconnect: the route cancels the request's future; the worker skips cancelled requests when
  it builds a batch, and a running batch can ask `Job.cancelled` to stop work for them early
  (generation does, step by step).
- A batch that raises is retried request by request, so an unexpected failure of one request fails only
  that request.
- Versions: every job carries the predictor it was validated against; a batch holds jobs of one
  predictor only, so after a reload queued jobs finish on the old version and new ones run on the new.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.serving.metrics import ServingMetrics

log = logging.getLogger("shrinkwrap.serving")


class QueueFull(Exception):
    """The request queue holds `max_queue` requests; retry after `retry_after_s`."""

    def __init__(self, depth: int, retry_after_s: float):
        super().__init__(f"the request queue is full ({depth} requests waiting); retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclasses.dataclass(eq=False)
class Job:
    """One request: its validated payload, how many samples it counts for, the predictor that validated
    it, and the future its result goes to."""

    payload: Any
    size: int
    predictor: Any
    future: asyncio.Future
    enqueued: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def cancelled(self) -> bool:
        return self.future.done()


class Batcher:
    def __init__(self, *, max_batch: int, max_wait_s: float, max_queue: int, metrics: ServingMetrics):
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1:
            raise ValueError(f"need max_batch >= 1, max_wait_s >= 0, max_queue >= 1; got {max_batch}, "
                             f"{max_wait_s}, {max_queue}")
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.metrics = metrics
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self._held: collections.deque[Job] = collections.deque()  # taken from the queue, not yet batched
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shrinkwrap-forward")
        self._task: asyncio.Task | None = None
        self._seconds_per_batch = 0.05  # running estimate for Retry-After
        self.arriving = 0  # requests inside a route, not yet queued (see `arrival`)

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name="shrinkwrap-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def arrival(self):
        """Routes hold this from the moment a request arrives until it is queued (or refused): while no
        request is arriving and the queue is empty, nobody can join the batch being collected, so it
        runs at once instead of waiting out max_wait (a lone client pays no batching delay)."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    def retry_after_s(self) -> float:
        batches = self.depth / self.max_batch + 1
        return max(1.0, round(batches * self._seconds_per_batch))

    def submit(self, payload: Any, *, size: int, predictor: Any) -> Job:
        """Queue a validated request; its result (or exception) arrives on `job.future`."""
        if size > self.max_batch:
            raise ValueError(f"a request of {size} samples exceeds max_batch={self.max_batch}; send at most "
                             f"{self.max_batch} inputs per request")
        job = Job(payload, size, predictor, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.rejected += 1
            raise QueueFull(self.depth, self.retry_after_s()) from None
        self.metrics.queue_depth = self.depth
        return job

    async def _next_job(self, timeout: float | None) -> Job | None:
        while True:
            if self._held:
                job = self._held.popleft()
            elif timeout is None:
                job = await self._queue.get()
            else:
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    return None
            if not job.cancelled:
                return job
            self.metrics.dropped += 1  # timed out or disconnected before its batch: drop its work

    async def _collect(self) -> list[Job]:
        first = await self._next_job(None)
        batch, size = [first], first.size
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch:
            if not self._held and self._queue.empty() and not self.arriving:
                break  # nobody is on the way: waiting would only add latency
            job = await self._next_job(max(0.0, deadline - time.perf_counter()))
            if job is None:
                break
            if job.predictor is not first.predictor or size + job.size > self.max_batch:
                self._held.appendleft(job)  # starts the next batch
                break
            batch.append(job)
            size += job.size
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.metrics.queue_depth = self.depth
            start = time.perf_counter()
            self.metrics.running = 1
            try:
                results = await loop.run_in_executor(self._executor, _run, batch)
            finally:
                self.metrics.running = 0
            elapsed = time.perf_counter() - start
            self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
            self.metrics.observe_batch(sum(j.size for j in batch), elapsed)
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)


def _run(batch: list[Job]) -> list[Any]:
    """One forward pass over `batch` (in the worker thread); on failure, each job alone."""
    predictor = batch[0].predictor
    live = [job for job in batch if not job.cancelled]
    if not live:
        return [None] * len(batch)
    try:
        out = dict(zip(map(id, live), predictor.run_batch(live), strict=True))
    except Exception as err:  # noqa: BLE001 - isolate the failing request
        if len(live) == 1:
            log.exception("batch of 1 failed")
            out = {id(live[0]): err}
        else:
            out = {id(job): _run([job])[0] for job in live}
    return [out.get(id(job)) for job in batch]
