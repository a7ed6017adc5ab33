"""A batch's photos loaded on all of the process's cores: decoding, resizing and augmenting release the GIL, so a few
threads do in parallel what the training process would otherwise do on one core while the others wait; and the next
batch loaded while the model computes on this one (`prefetched`).

Used by the datasets' `__getitems__` (a DataLoader without worker processes fetches a batch through it). Inside a
DataLoader worker process the workers are the parallelism, so items are loaded one by one there.
"""

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from torch.utils.data import get_worker_info

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_THREADS = 8
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def loading_threads() -> int:
    """Threads for one batch: as many as the process computes with (`torch.get_num_threads()`, at most 8); one in a
    DataLoader worker."""
    if get_worker_info() is not None:
        return 1
    return max(1, min(MAX_THREADS, torch.get_num_threads()))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="tlab-load")
        return _pool


def _forget_pool() -> None:
    """A forked child (a DataLoader worker) has none of the parent's threads: it starts its own pool if it needs one."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def map_in_threads(function: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """`[function(item) for item in items]`, in order, computed by `loading_threads()` threads at a time."""
    threads = loading_threads()
    if threads < 2 or len(items) < 2:
        return [function(item) for item in items]
    chunks = [items[start::threads] for start in range(threads)]
    parts = list(_executor().map(lambda chunk: [function(item) for item in chunk], chunks))
    results: list[Result] = [None] * len(items)  # type: ignore[list-item]
    for start, part in enumerate(parts):
        results[start::threads] = part
    return results


class _Prefetched(Iterator[Item]):
    """See `prefetched`. The thread starts at the first `next`, not before: Lightning creates a loader's iterator,
    then sets its sampler's epoch, then takes the first batch (a resumed run would otherwise replay epoch 0's order).
    The thread holds the queue and the stop flag, not this object, so an iterator dropped before its end (Lightning's
    sanity check takes two batches) is collected and stops its thread."""

    def __init__(self, items: Iterable[Item], depth: int):
        self._items = iter(items)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._started = self._finished = False

    def __next__(self) -> Item:
        if self._finished:
            raise StopIteration
        if not self._started:
            self._started = True
            threading.Thread(target=_fill, args=(self._items, self._queue, self._stop), daemon=True, name="tlab-prefetch").start()
        loaded, value = self._queue.get()
        if loaded:
            return value
        self._finished = True
        if value is None:
            raise StopIteration
        raise value

    def close(self) -> None:
        self._stop.set()

    __del__ = close


def _fill(items: Iterator, batches: queue.Queue, stop: threading.Event) -> None:
    """Put (True, item) for each of `items`, then (False, None), or (False, the exception) where they raised."""

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                batches.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    try:
        for item in items:
            if not put((True, item)):
                return
        put((False, None))
    except BaseException as error:  # re-raised by the consumer, at the item that raised it
        put((False, error))


def prefetched(items: Iterable[Item], depth: int = 1) -> Iterator[Item]:
    """`items` in order, the next `depth` of them computed ahead in a background thread from the first `next` on: a
    DataLoader without worker processes then loads the next batch while the model computes on this one (its kernels
    release the GIL). An exception surfaces at the item that raised it."""
    return _Prefetched(items, depth)
