"""The frozen layers' outputs as data: a view runs through them once and is kept; epochs cycle through the views."""

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from conftest import make_image
from transferlab.augment.pipeline import Pipeline
from transferlab.data.datasets import PhotoDataset
from transferlab.data.frozen_outputs import OUTPUTS_BYTES, FrozenOutputs, FrozenPart, OutputCache
from transferlab.data.sources import Sample
from transferlab.models.classifier import DataConfig

CONFIG = DataConfig(32, "bilinear", 1.0, (0.5,) * 3, (0.5,) * 3)


class CountingRuntime:
    """Frozen layers that keep every pixel (so different views give different outputs) and count the photos run."""

    name = "counting"

    def __init__(self):
        self.photos = 0

    def run(self, images: np.ndarray) -> np.ndarray:
        self.photos += len(images)
        return images * 2


@pytest.fixture
def samples(tmp_path):
    paths = [make_image(tmp_path / f"{i}.jpg", seed=i) for i in range(4)]
    return [Sample(path, i % 2) for i, path in enumerate(paths)]


def outputs(samples, views: int, augment: bool = True, budget: int | None = None, epochs: int | None = None) -> tuple[FrozenOutputs, CountingRuntime]:
    runtime = CountingRuntime()
    photos = PhotoDataset(samples, CONFIG, Pipeline.from_config("seed-keras") if augment else None, seed=3)
    return FrozenOutputs(photos, FrozenPart(runtime, views, epochs, OutputCache(budget)), "train"), runtime


def batch(dataset: FrozenOutputs, epoch: int, indices: Sequence[int] | None = None) -> torch.Tensor:
    keys = [(i, epoch) for i in (range(len(dataset)) if indices is None else indices)]
    return torch.stack([output for output, _ in dataset.__getitems__(keys)])


def test_epochs_cycle_through_views_each_run_once_through_the_frozen_layers(samples):
    dataset, runtime = outputs(samples, views=2)
    first, second = batch(dataset, 0), batch(dataset, 1)
    assert runtime.photos == 8
    assert torch.equal(batch(dataset, 2), first) and torch.equal(batch(dataset, 5), second)
    assert runtime.photos == 8  # epochs 3 and 6 loaded no photo and ran nothing
    assert not torch.equal(first, second)
    photos = dataset.photos
    assert torch.equal(first[1], torch.from_numpy(runtime.run(photos[(1, 0)][0][None].numpy()))[0])  # the augmentation epoch 0 draws
    assert [label for _, label in dataset.__getitems__([(2, 4), (3, 4)])] == [0, 1]


def test_a_batch_runs_only_its_photos_not_kept(samples):
    dataset, runtime = outputs(samples, views=1)
    kept = batch(dataset, 0, [0, 1])
    mixed = batch(dataset, 1, [2, 0, 3, 1])  # drawn with replacement, another process's shard: some kept, some not
    assert runtime.photos == 4
    assert torch.equal(mixed[1], kept[0]) and torch.equal(mixed[3], kept[1])
    assert torch.equal(batch(dataset, 2), mixed[[1, 3, 0, 2]]) and runtime.photos == 4


def test_outputs_are_kept_only_for_a_later_epoch_of_the_fit_and_as_copies_of_their_own(samples):
    dataset, runtime = outputs(samples, views=2, epochs=3)
    batch(dataset, 0), batch(dataset, 1)
    assert len(dataset.part.cache) == 4  # epoch 0's view shows again in epoch 2; epoch 1's in none of the three
    kept = dataset.part.cache.get(("train", 0, 0))
    assert kept.untyped_storage().nbytes() == kept.nbytes  # not a view holding its whole batch
    dataset.part.release()
    assert len(dataset.part.cache) == 0 and dataset.part.cache.bytes == 0


def test_without_views_every_epoch_is_a_fresh_view(samples):
    dataset, runtime = outputs(samples, views=0)
    assert not torch.equal(batch(dataset, 0), batch(dataset, 2))
    assert runtime.photos == 8 and len(dataset.part.cache) == 0


def test_unaugmented_photos_have_one_view_kept_whatever_views_says(samples):
    dataset, runtime = outputs(samples, views=0, augment=False)
    assert torch.equal(batch(dataset, 0), batch(dataset, 7)) and runtime.photos == 4


def test_the_budget_bounds_what_is_kept_and_the_rest_is_computed_again_alike(samples):
    one_photo = 3 * 32 * 32 * 4
    dataset, runtime = outputs(samples, views=1, budget=one_photo)
    first = batch(dataset, 0)
    assert len(dataset.part.cache) == 1 and dataset.part.cache.bytes == one_photo
    assert torch.equal(batch(dataset, 1), first)  # three photos missing: they run again, with the same answers
    assert runtime.photos == 7
    assert OutputCache(processes=4).budget == OUTPUTS_BYTES // 4  # the processes of a machine share it


def test_outputs_kept_in_bf16_take_half_the_memory_and_every_epoch_sees_the_same_values(samples):
    runtime = CountingRuntime()
    photos = PhotoDataset(samples, CONFIG, Pipeline.from_config("seed-keras"), seed=3)
    dataset = FrozenOutputs(photos, FrozenPart(runtime, 1, None, OutputCache(dtype=torch.bfloat16)), "train")
    first = batch(dataset, 0)
    assert first.dtype == torch.float32 and torch.equal(first, first.to(torch.bfloat16).float())  # rounded once, at once
    assert torch.equal(batch(dataset, 1), first) and runtime.photos == 4
    assert dataset.part.cache.bytes == first.numel() * 2


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_outputs_kept_in_a_file_come_back_the_same_and_leave_nothing_behind(samples, tmp_path, dtype):
    folder = tmp_path / "frozen-outputs"
    runtime = CountingRuntime()
    photos = PhotoDataset(samples, CONFIG, Pipeline.from_config("seed-keras"), seed=3)
    dataset = FrozenOutputs(photos, FrozenPart(runtime, 2, None, OutputCache(dtype=dtype, folder=folder)), "train")
    first, second = batch(dataset, 0), batch(dataset, 1)
    assert all(not isinstance(value, torch.Tensor) for value in dataset.part.cache._outputs.values()), "none held in memory"
    assert torch.equal(batch(dataset, 2), first) and torch.equal(batch(dataset, 3), second) and runtime.photos == 8
    assert dataset.part.cache.bytes == 2 * first.numel() * (2 if dtype else 4)
    assert list(folder.iterdir()) == [], "an unnamed file: nothing to clean up, even after a kill"
    dataset.part.release()
    assert len(dataset.part.cache) == 0 and batch(dataset, 2).shape == first.shape and runtime.photos == 12


def test_outputs_kept_in_memory_when_their_folder_cannot_take_them(samples, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    runtime = CountingRuntime()
    photos = PhotoDataset(samples, CONFIG, Pipeline.from_config("seed-keras"), seed=3)
    dataset = FrozenOutputs(photos, FrozenPart(runtime, 1, None, OutputCache(folder=blocked / "frozen-outputs")), "train")
    first = batch(dataset, 0)
    assert torch.equal(batch(dataset, 1), first) and runtime.photos == 4, "kept all the same"
    assert all(isinstance(value, torch.Tensor) for value in dataset.part.cache._outputs.values())


def test_the_report_says_how_many_views_the_epochs_cycled_through_and_why_that_precision():
    from transferlab.report.html import training_note

    note = training_note({"training_precision": "bf16-mixed", "trunk_views": 2})
    assert note.startswith("trained in bf16-mixed; its epochs cycled through 2 augmented view(s)")
    assert "views" not in (training_note({"training_precision": "32-true"}) or "")
    timed = training_note({"training_precision": "32-true", "bf16_training_speedup": 0.87})
    assert timed == "trained in 32-true (bf16 autocast timed at 0.87x fp32's speed on this CPU)"


def test_the_datamodule_gives_frozen_outputs_in_its_own_process_and_frees_them_when_the_fit_ends(samples, tmp_path):
    from transferlab.data.datasets import PhotoDataModule
    from transferlab.data.sources import DatasetIndex

    index = DatasetIndex(tmp_path, ("a", "b"), tuple(samples), tuple(samples[:2]))
    datamodule = PhotoDataModule(index, CONFIG, Pipeline.from_config("seed-keras"), batch_size=2, workers=2)
    assert datamodule.train_dataloader().num_workers == 2
    datamodule.frozen_part = FrozenPart(CountingRuntime(), views=1)
    loader = datamodule.val_dataloader()
    assert loader.num_workers == 0  # the runtime and the outputs kept live in this process
    outputs, labels = next(iter(loader))
    assert outputs.shape == (2, 3, 32, 32) and labels.tolist() == [0, 1]
    cache = datamodule.frozen_part.cache
    assert len(cache) == 2
    datamodule.teardown("fit")
    assert datamodule.frozen_part is None and len(cache) == 0
    datamodule.frozen_part = FrozenPart(CountingRuntime(), views=1)
    datamodule.on_exception(KeyboardInterrupt())
    assert datamodule.frozen_part is None
