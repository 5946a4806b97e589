"""Dynamic batching: the texts of concurrent requests merged into one call of the prediction engine.

Requests wait in a bounded queue (counted in texts). One task takes the oldest request, then every
request that arrives within `max_wait_ms` (or is already waiting) while the merged batch holds at most
`max_batch` texts, and hands the texts to `Predictor.run` on one worker thread: the same engine as
`runner predict`, which tokenizes them once, sorts them by token count and pads each forward batch to
its longest text. While a batch is computing, new requests gather, so under load batches fill without
waiting. A full queue refuses at once (`QueueFull`: the server answers 503 with Retry-After) rather
than growing memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from runner.use.output import output_columns
from runner.use.predict import Prediction


class QueueFull(Exception):
    """The queue holds `limit` texts already; the caller should retry later."""

    def __init__(self, limit: int):
        super().__init__(f"the server's queue is full ({limit} texts waiting); retry shortly")
        self.limit = limit


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


def part(prediction: Prediction, start: int, stop: int) -> Prediction:
    """Rows start:stop of a merged prediction: one request's share."""
    rows = slice(start, stop)
    return Prediction(prediction.probs[rows], {m: p[rows] for m, p in prediction.members.items()},
                      {m: p[rows] for m, p in prediction.raw_members.items()}, prediction.raw_probs[rows],
                      prediction.calibrated)


class Batcher:
    """`await batcher.predict(texts)` -> that request's `Prediction`, computed in a merged batch.

    `start()` and `stop()` run inside the event loop (the app's lifespan); `stop()` lets the batch
    being computed finish and answers every request still queued."""

    def __init__(self, predictor, calibrated: bool = False, max_batch: int = 64, max_wait_ms: float = 5.0,
                 max_queue: int = 1024):
        self.predictor = predictor
        self.calibrated = calibrated
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.queued = 0  # texts waiting, not yet handed to the engine
        self.batches = 0  # engine calls made (for /metadata and the tests)
        self._waiting: deque[_Request] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # one thread: the engine's forward passes use every core torch is allowed; two at once would
        # only contend for them
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runner-serve")

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        while self._waiting:  # drain: what was accepted is answered
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def predict(self, texts: list[str]) -> Prediction:
        if self.queued + len(texts) > self.max_queue:
            raise QueueFull(self.max_queue)
        request = _Request(list(texts), asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self.queued += len(texts)
        self._arrived.set()
        return await request.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather(loop)
            texts = [t for r in batch for t in r.texts]
            try:
                prediction = await loop.run_in_executor(self._pool, self._run, texts)
            except Exception as e:  # noqa: BLE001 - a fault of the engine answers the requests it concerns
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            self.batches += 1
            start = 0
            for r in batch:
                if not r.future.done():  # a client that went away leaves a cancelled future
                    r.future.set_result(part(prediction, start, start + len(r.texts)))
                start += len(r.texts)

    async def _gather(self, loop) -> list[_Request]:
        """The oldest request and those that fit beside it, waiting up to max_wait for more."""
        batch = [self._take()]
        size = len(batch[0].texts)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            if self._waiting:
                if size + len(self._waiting[0].texts) > self.max_batch:
                    break  # it starts the next batch
                request = self._take()
                batch.append(request)
                size += len(request.texts)
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        return batch

    def _take(self) -> _Request:
        request = self._waiting.popleft()
        self.queued -= len(request.texts)
        return request

    def _run(self, texts: list[str]) -> Prediction:
        return self.predictor.run(texts, calibrated=self.calibrated)


def rows_of(prediction: Prediction, labels: list[str], members: bool) -> list[dict]:
    """Each text's answer as `runner predict --format jsonl` writes its row (runner.use.output's
    columns: pred_label, pred_id, p_<label>, and <member>.p_<label> with `members`), full floats."""
    cols = output_columns(prediction, labels, members)
    values = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in cols.items()}
    return [{k: v[i] for k, v in values.items()} for i in range(len(prediction.probs))]
