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
