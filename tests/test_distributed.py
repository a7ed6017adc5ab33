"""Distributed training: per-process shards, rank-0 writes, reduced metrics, Trainer options; two CPU processes
(gloo) on real photos."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from transferlab.augment.pipeline import seeded_generator
from transferlab.cli import app
from transferlab.config import TrainConfig
from transferlab.data.datasets import EpochSampler
from transferlab.train.distributed import is_rank_zero, resolve_precision, resolve_workers, trainer_options

runner = CliRunner()


def shards(length: int, world_size: int, shuffle: bool, epoch: int = 0) -> list[list[int]]:
    result = []
    for rank in range(world_size):
        sampler = EpochSampler(length, seed=3, shuffle=shuffle, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch)
        items = list(sampler)
        assert len(items) == len(sampler)
        assert all(item_epoch == epoch for _, item_epoch in items)
        result.append([index for index, _ in items])
    return result


@pytest.mark.parametrize("length,world_size", [(99, 2), (100, 3), (7, 7), (10, 4)])
def test_validation_shards_count_every_sample_once(length, world_size):
    parts = shards(length, world_size, shuffle=False)
    assert sorted(i for part in parts for i in part) == list(range(length))


@pytest.mark.parametrize("length,world_size", [(99, 2), (100, 3), (10, 4)])
def test_training_shards_have_one_length_and_cover_the_epoch(length, world_size):
    parts = shards(length, world_size, shuffle=True, epoch=2)
    assert len({len(part) for part in parts}) == 1
    flat = [i for part in parts for i in part]
    assert set(flat) == set(range(length))
    assert len(flat) - length < world_size  # padded by fewer than one sample per process


def test_every_process_reshuffles_each_epoch_in_step():
    first, second = shards(50, 2, shuffle=True, epoch=0), shards(50, 2, shuffle=True, epoch=1)
    assert first != second
    assert not set(first[0]) & set(first[1])


def test_one_process_takes_the_whole_order():
    sampler = EpochSampler(20, seed=3, shuffle=True)
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] == torch.randperm(20, generator=seeded_generator(3, 1)).tolist()


def test_fewer_samples_than_processes_is_an_error():
    with pytest.raises(ValueError, match="3 samples cannot be shared among 4"):
        EpochSampler(3, seed=0, world_size=4)


@pytest.mark.parametrize(
    "env,zero",
    [({}, True), ({"LOCAL_RANK": "1"}, False), ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False), ({"SLURM_PROCID": "3"}, False)],
)
def test_rank_zero_is_read_from_the_launchers_environment(monkeypatch, env, zero):
    for name in ("RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_rank_zero() is zero


def test_trainer_options_use_ddp_only_with_several_processes():
    single = trainer_options("cpu", 1, 1, "32")
    assert single["strategy"] == "auto" and single["precision"] == "32-true" and single["use_distributed_sampler"] is False
    several = trainer_options("cpu", 2, 1, "bf16-mixed")
    assert type(several["strategy"]).__name__ == "DDPStrategy" and several["precision"] == "bf16-mixed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU defaults")
def test_cpus_train_in_bf16_only_where_they_have_it_and_it_pays_and_decode_in_process():
    from transferlab.train.distributed import cpu_has_bf16

    assert resolve_precision("auto", "auto", lambda: True) == ("bf16-mixed" if cpu_has_bf16() else "32-true")
    assert resolve_precision("auto", "auto", lambda: False) == "32-true"
    assert resolve_workers(None, "auto", 1) == 0
    assert resolve_workers(3, "cpu", 1) == 3


def test_half_precision_on_cpu_is_refused_by_name(tmp_path):
    with pytest.raises(ValidationError, match="16-mixed needs a GPU"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), accelerator="cpu", precision="16-mixed")
    result = runner.invoke(app, ["train", str(tmp_path), "--accelerator", "cpu", "--precision", "16-mixed"])
    assert result.exit_code == 2 and "16-mixed needs a GPU" in result.output
    if not torch.cuda.is_available():  # accelerator auto on a machine without one: Lightning trained in bf16 silently
        with pytest.raises(ValidationError, match="16-mixed needs a GPU"):
            TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), precision="16-mixed")
    result = runner.invoke(app, ["train", str(tmp_path), "--precision", "64"])
    assert result.exit_code == 2 and "--precision" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", str(tmp_path), "--devices", "0"])
    assert result.exit_code == 2 and "--devices" in result.output


def odd_subset(woof_mini: Path, root: Path, breeds: int = 4) -> tuple[Path, int]:
    """The first `breeds` classes of woof-mini as symbolic links, one validation photo left out (an odd count)."""
    val_count = 0
    for split in ("train", "val"):
        for class_dir in sorted((woof_mini / split).iterdir())[:breeds]:
            photos = sorted(class_dir.iterdir())
            if split == "val" and class_dir.name == sorted((woof_mini / "val").iterdir())[0].name:
                photos = photos[1:]
            (root / split / class_dir.name).mkdir(parents=True)
            for photo in photos:
                (root / split / class_dir.name / photo.name).symlink_to(photo)
            val_count += len(photos) if split == "val" else 0
    return root, val_count


def test_two_cpu_processes_write_one_complete_run_and_count_every_val_photo_once(woof_mini, tmp_path):
    data, val_count = odd_subset(woof_mini, tmp_path / "data")
    assert val_count % 2 == 1  # two shards of unequal size: a padded sampler would count one photo twice
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "transferlab", "train", str(data), "--strategy", "finetune", "--frozen-epochs", "2",
        "--epochs", "1", "--devices", "2", "--accelerator", "cpu", "--runtime", "torch", "--image-size", "96", "--out", str(out),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("run directory:") == 1  # only rank 0 reports

    for name in ("config.yaml", "classes.json", "skipped.csv", "history.csv", "metrics.json", "plots/history_frozen.png", "plots/history_finetune.png"):
        assert (out / name).is_file(), name
    for strategy in ("frozen", "finetune"):
        assert (out / "checkpoints" / strategy / "best.ckpt").is_file()
        assert (out / "checkpoints" / strategy / "last.ckpt").is_file()
    assert not list(out.rglob(".*partial*")) and not list(out.rglob("*.tmp"))

    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["strategy"], r["epoch"]) for r in rows] == [("frozen", "1"), ("frozen", "2"), ("finetune", "1")]
    assert all(int(r["val_photos"]) == val_count for r in rows)
    for row in rows:
        correct = float(row["val_acc"]) * val_count
        assert abs(correct - round(correct)) < 1e-3, row  # a whole number of photos out of val_count

    import transferlab

    predictor = transferlab.load(out / "checkpoints" / "finetune" / "last.ckpt", runtime="torch")
    photos = sorted((data / "val").rglob("*.JPEG"))
    predictions = predictor.predict(photos, top_k=1)
    truth = [photo.parent.name for photo in photos]
    correct = sum(p.predictions[0].class_name == t for p, t in zip(predictions, truth))
    assert round(float(rows[-1]["val_acc"]) * val_count) == correct


def test_loaders_follow_the_trainers_process_and_pin_memory_for_cuda():
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    from transferlab.data.datasets import Placement, epoch_loader

    dataset = list(range(10))
    loader = epoch_loader(dataset, 4, seed=0, shuffle=False, placement=Placement.of(SimpleNamespace(global_rank=1, world_size=3, accelerator=CUDAAccelerator())))
    assert loader.pin_memory and [i for i, _ in loader.sampler] == [1, 4, 7]
    on_cpu = Placement.of(SimpleNamespace(global_rank=0, world_size=1, accelerator=CPUAccelerator()))
    assert not epoch_loader(dataset, 4, seed=0, shuffle=True, placement=on_cpu).pin_memory
    assert Placement.of(None) == Placement()


def test_torchrun_starts_every_process_at_once_and_overwrite_is_safe(woof_mini, tmp_path):
    """torchrun (like SLURM) starts all processes together: rank 0 alone empties and writes the run directory."""
    data, val_count = odd_subset(woof_mini, tmp_path / "data", breeds=3)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}

    def torchrun(*flags: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "transferlab",
            "train", str(data), "--strategy", "frozen", "--devices", "2", "--accelerator", "cpu", "--runtime", "torch",
            "--augment", "none", "--image-size", "96", "--out", str(out), *flags,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    first = torchrun("--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun("--epochs", "2", "--overwrite")
    assert second.returncode == 0, second.stderr[-3000:]
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(int(r["val_photos"]) == val_count for r in rows)
    assert (out / "checkpoints" / "frozen" / "best.ckpt").is_file() and (out / "metrics.json").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpus_that_are_not_there_are_refused_before_anything_is_written(image_tree, tmp_path):
    root = image_tree({"a": 4, "b": 4})
    for flags in (["--accelerator", "gpu"], ["--accelerator", "gpu", "--devices", "2"]):
        result = runner.invoke(app, ["train", str(root), "--out", str(tmp_path / "run"), *flags])
        assert result.exit_code == 2 and "no CUDA GPU" in result.output, result.output
        assert not (tmp_path / "run").exists()
