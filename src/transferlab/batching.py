"""Micro-batching: photos of concurrent requests go through the model together, in one thread.

A request's photos join a bounded queue; the model thread takes what is there, and while other requests are
still being read or decoded (`incoming`) it waits up to `wait_s` for them to fill the batch. A lone request is
never held back, so latency at concurrency 1 stays what it was. When the queue holds `max_waiting` photos, new
ones are refused at once (`QueueFull`: the server answers 503 with Retry-After) instead of waiting unboundedly.
"""

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

import torch

Answer = TypeVar("Answer")


class QueueFull(RuntimeError):
    """More photos wait for the model than the queue holds."""


@dataclass
class _Job(Generic[Answer]):
    photos: list[torch.Tensor]
    future: "Future[list[Answer]]" = field(default_factory=Future)


class MicroBatcher(Generic[Answer]):
    """`run` maps a batch (N, C, H, W) to one answer per photo; `submit` hands a request's photos in and gives a
    future of their answers, in order."""

    def __init__(
        self, run: Callable[[torch.Tensor], Sequence[Answer]], max_batch: int = 32, wait_s: float = 0.004, max_waiting: int = 256,
    ):
        self.run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self._jobs: "queue.Queue[_Job[Answer] | None]" = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._incoming = 0
        self.batches: list[int] = []
        """Photos per batch run so far (the most recent 1,000): what /health reports."""
        self._thread = threading.Thread(target=self._serve, name="tlab-model", daemon=True)
        self._thread.start()

    # -- called from the request side -----------------------------------------------------------------------------

    def expect(self) -> None:
        """A request is on its way (being read or decoded): worth waiting a few milliseconds for."""
        with self._lock:
            self._incoming += 1

    def arrived(self) -> None:
        """An expected request will not be submitted (it failed on its way)."""
        with self._lock:
            self._incoming -= 1

    def submit(self, photos: Sequence[torch.Tensor], expected: bool = False) -> "Future[list[Answer]]":
        """Queue `photos` (of a request announced by `expect` when `expected`: it is no longer on its way);
        raises `QueueFull` (nothing queued) when they do not fit."""
        with self._lock:
            self._incoming -= expected
            if self._waiting + len(photos) > self.max_waiting:
                raise QueueFull(f"{self._waiting} photos are waiting for the model (at most {self.max_waiting})")
            self._waiting += len(photos)
        job: _Job[Answer] = _Job(list(photos))
        self._jobs.put(job)
        return job.future

    @property
    def waiting(self) -> int:
        return self._waiting

    def close(self) -> None:
        self._jobs.put(None)

    # -- the model thread -----------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            size = len(job.photos)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if self._incoming == 0 or remaining <= 0:
                        break
                    try:
                        nxt = self._jobs.get(timeout=remaining)
                    except queue.Empty:
                        break
                if nxt is None:
                    self._jobs.put(None)
                    break
                batch.append(nxt)
                size += len(nxt.photos)
            self._run(batch, size)

    def _run(self, batch: list[_Job[Answer]], size: int) -> None:
        with self._lock:
            self._waiting -= size
        self.batches = [*self.batches[-999:], size]
        try:
            answers = list(self.run(torch.stack([photo for job in batch for photo in job.photos])))
        except BaseException as error:  # every waiting request gets the error, the thread goes on
            for job in batch:
                job.future.set_exception(error)
            return
        start = 0
        for job in batch:
            job.future.set_result(answers[start : start + len(job.photos)])
            start += len(job.photos)
