"""A batch's photos loaded on all of the process's cores: decoding, resizing and augmenting release the GIL, so a few
threads do in parallel what the training process would otherwise do on one core while the others wait; and the next
batch loaded while the model computes on this one (`prefetched`).

Used by the datasets' `__getitems__` (a DataLoader without worker processes fetches a batch through it). Inside a
DataLoader worker process the workers are the parallelism, so items are loaded one by one there.
"""

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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


POLL_S = 0.1
"""How often a waiting prefetch thread, or a consumer waiting on one, checks whether the other side is gone."""


@dataclass(frozen=True)
class _Loaded:
    item: Any


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class _Prefetched(Iterator[Item]):
    """See `prefetched`.

    The thread starts at the first `next`, not before: Lightning creates a loader's iterator, then sets its sampler's
    epoch, then takes the first batch (a resumed run would otherwise replay epoch 0's order). It loads an item only
    with a permit, one per item the consumer has taken, so at most `depth` wait. It holds the queue, the permits and
    the stop flag, not this object: an iterator dropped before its end is collected and its thread stops (Lightning
    keeps a sanity check's or a limited epoch's iterator until the loader's next epoch: one batch stays loaded)."""

    def __init__(self, items: Iterable[Item], depth: int):
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self._stop = threading.Event()
        self._items = iter(items)
        self._entries: queue.SimpleQueue = queue.SimpleQueue()
        self._permits = threading.Semaphore(depth)
        self._thread: threading.Thread | None = None
        self._finished = False

    def __next__(self) -> Item:
        if self._finished:
            raise StopIteration
        if self._thread is None:
            thread = threading.Thread(target=_fill, args=(self._items, self._entries, self._permits, self._stop),
                                      daemon=True, name="tlab-prefetch")
            thread.start()
            self._thread = thread
        entry = self._next_entry(self._thread)
        if isinstance(entry, _Loaded):
            self._permits.release()
            return entry.item
        self._finished = True
        if isinstance(entry, _Failed):
            raise entry.error
        raise StopIteration

    def _next_entry(self, thread: threading.Thread) -> object:
        while True:
            try:
                return self._entries.get(timeout=POLL_S)  # a timeout keeps Ctrl-C responsive everywhere
            except queue.Empty:
                if not thread.is_alive() and self._entries.empty():
                    self._finished = True
                    raise RuntimeError("the prefetching thread stopped without a result") from None

    def close(self) -> None:
        """Stop the thread after its current item; later `next` calls raise StopIteration."""
        self._finished = True
        stop = getattr(self, "_stop", None)  # absent on an instance whose __init__ failed
        if stop is not None:
            stop.set()

    __del__ = close


def _fill(items: Iterator, entries: queue.SimpleQueue, permits: threading.Semaphore, stop: threading.Event) -> None:
    """Put `_Loaded(item)` for each of `items` as permits come, then `_END`, or `_Failed(error)` where they raised."""
    try:
        while True:
            while not permits.acquire(timeout=POLL_S):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                item = next(items)
            except StopIteration:
                entries.put(_END)
                return
            entries.put(_Loaded(item))
    except BaseException as error:  # noqa: BLE001 (re-raised by the consumer, at the item that raised it)
        entries.put(_Failed(error))


def prefetched(items: Iterable[Item], depth: int = 1) -> Iterator[Item]:
    """`items` in order, the next `depth` of them computed ahead in a background thread from the first `next` on: a
    DataLoader without worker processes then loads the next batch while the model computes on this one (its kernels
    release the GIL). An exception surfaces at the item that raised it."""
    return _Prefetched(items, depth)
