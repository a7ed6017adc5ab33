"""A batch's photos loaded on all of the process's cores: decoding, resizing and augmenting release the GIL, so a few
threads do in parallel what the training process would otherwise do on one core while the others wait.

Used by the datasets' `__getitems__` (a DataLoader without worker processes fetches a batch through it). Inside a
DataLoader worker process the workers are the parallelism, so items are loaded one by one there.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

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
