"""A batch's photos loaded by threads: the same tensors, in the same order, as one by one."""

import threading
import time

import pytest
import torch

from transferlab.augment.pipeline import build_augment
from transferlab.data import threads
from transferlab.data.datasets import PhotoDataset
from transferlab.data.sources import folder_source
from transferlab.models.classifier import DataConfig


@pytest.fixture
def three_threads(monkeypatch):
    monkeypatch.setattr(threads, "loading_threads", lambda: 3)


def test_map_in_threads_keeps_the_order_and_uses_the_threads(three_threads):
    seen = set()

    def square(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough that every thread gets a chunk
        return x * x

    assert threads.map_in_threads(square, list(range(10))) == [x * x for x in range(10)]
    assert len(seen) > 1 and all(name.startswith("tlab-load") for name in seen)


def test_an_error_in_one_item_reaches_the_caller(three_threads):
    def fail_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("item 3 is bad")
        return x

    with pytest.raises(ValueError, match="item 3 is bad"):
        threads.map_in_threads(fail_on_three, list(range(6)))


def test_a_threaded_batch_equals_the_photos_loaded_one_by_one(image_tree, three_threads):
    index = folder_source(image_tree({"a": 5, "b": 5}), val_fraction=0.2)
    dataset = PhotoDataset(index.train, DataConfig(32, "bilinear", 1.0, (0.5,) * 3, (0.5,) * 3), build_augment("seed-keras"), seed=3)
    keys = [(i, 2) for i in range(len(dataset))]
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(keys), sampler=keys)))
    one_by_one = [dataset[key] for key in keys]
    assert torch.equal(images, torch.stack([image for image, _ in one_by_one]))
    assert labels.tolist() == [label for _, label in one_by_one]


def test_a_dataloader_worker_loads_one_photo_at_a_time():
    counts = torch.utils.data.DataLoader(range(2), batch_size=1, num_workers=1, collate_fn=lambda _: threads.loading_threads())
    assert list(counts) == [1, 1]


# -- the next batch loaded while the model computes ------------------------------------------------------------------


def started_prefetch_thread(before: set[threading.Thread]) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == "tlab-prefetch" and t not in before]
    return thread


def test_prefetched_loads_the_next_item_while_the_caller_works_on_this_one():
    second_started = threading.Event()

    def items():
        yield 0
        second_started.set()
        yield 1

    batches = threads.prefetched(items())
    assert next(batches) == 0
    assert second_started.wait(5), "the second item was not loaded while the caller held the first"
    assert list(batches) == [1]
    with pytest.raises(StopIteration):  # still exhausted, not waiting for more
        next(batches)


def test_prefetched_raises_at_the_item_that_failed():
    def items():
        yield from range(3)
        raise OSError("photo 3 unreadable")

    batches = threads.prefetched(items())
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError, match="photo 3"):
        next(batches)


def test_an_abandoned_or_closed_prefetch_stops_its_thread():
    for close in (False, True):
        before = set(threading.enumerate())
        batches = threads.prefetched(iter(int, 1))  # endless: the thread waits for a permit until told to stop
        assert next(batches) == 0
        thread = started_prefetch_thread(before)
        if close:
            batches.close()
            with pytest.raises(StopIteration):
                next(batches)
        del batches
        thread.join(5)
        assert not thread.is_alive()


def test_prefetched_loads_only_depth_items_ahead():
    produced = []

    def items():
        for number in range(100):
            produced.append(number)
            yield number

    batches = threads.prefetched(items(), depth=1)
    assert next(batches) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # time enough to load more, were it allowed to
    assert produced == [0, 1]
    with pytest.raises(ValueError, match="depth"):
        threads.prefetched([], depth=0)


def test_the_photo_loaders_prefetch_and_give_the_same_batches(image_tree):
    from transferlab.data.datasets import PhotoDataModule, PrefetchingLoader

    index = folder_source(image_tree({"a": 6, "b": 6}), val_fraction=0.25)
    config = DataConfig(32, "bilinear", 1.0, (0.5,) * 3, (0.5,) * 3)
    module = PhotoDataModule(index, config, build_augment("seed-keras"), batch_size=4, seed=1)
    loader = module.train_dataloader()
    assert isinstance(loader, PrefetchingLoader) and isinstance(module.val_dataloader(), PrefetchingLoader)
    plain = torch.utils.data.DataLoader(loader.dataset, batch_size=4, sampler=loader.sampler)
    for (images, labels), (expected_images, expected_labels) in zip(loader, plain, strict=True):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_prefetching_starts_at_the_first_batch_so_the_epoch_set_after_iter_counts():
    """Lightning's order when it resumes a run: iter(loader), then sampler.set_epoch, then the first batch."""
    from transferlab.data.datasets import EpochSampler, PrefetchingLoader

    class Keys(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, key):
            return key

    sampler = EpochSampler(12, seed=0)
    loader = PrefetchingLoader(Keys(), batch_size=12, sampler=sampler, collate_fn=list)
    batches = iter(loader)
    time.sleep(0.2)  # time enough for a thread started by iter() to read the sampler's epoch too early
    sampler.set_epoch(3)
    assert next(batches) == list(sampler) and {epoch for _, epoch in list(sampler)} == {3}
