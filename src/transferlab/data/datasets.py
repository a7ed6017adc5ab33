"""Datasets and the Lightning DataModule: decode, augment (train only), resize and normalise."""

from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ..augment.pipeline import Augment
from ..models.classifier import DataConfig
from .decode import load_rgb
from .sources import DatasetIndex, Sample


def resize_and_crop(config: DataConfig) -> v2.Transform:
    """PIL image -> uint8 tensor: resize the short side to size / crop_pct, centre crop to size (timm's eval)."""
    resize_to = int(config.image_size / config.crop_pct)
    return v2.Compose(
        [
            v2.Resize(resize_to, interpolation=v2.InterpolationMode(config.interpolation), antialias=True),
            v2.CenterCrop(config.image_size),
            v2.PILToTensor(),
        ]
    )


def normalize(config: DataConfig) -> v2.Transform:
    """uint8 tensor -> float tensor normalised with the backbone's mean and std."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)])


class PhotoDataset(Dataset):
    """Labelled photos as normalised tensors; `augment` (on uint8 tensors) runs between crop and normalise."""

    def __init__(self, samples: Sequence[Sample], config: DataConfig, augment: Augment | None = None):
        self.samples = list(samples)
        self.config = config
        self.augment = augment
        self._to_tensor = resize_and_crop(config)
        self._normalize = normalize(config)
        self._draft_size = int(config.image_size / config.crop_pct)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        image = self._to_tensor(load_rgb(sample.path, draft_size=self._draft_size))
        if self.augment is not None:
            image = self.augment(image)
        return self._normalize(image), sample.label


class PhotoDataModule(L.LightningDataModule):
    """Train (shuffled, augmented) and validation loaders over a `DatasetIndex`."""

    def __init__(
        self,
        index: DatasetIndex,
        config: DataConfig,
        augment: Augment | None,
        batch_size: int = 64,
        workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.index = index
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.train_set = PhotoDataset(index.train, config, augment)
        self.val_set = PhotoDataset(index.val, config)

    def _loader(self, dataset: PhotoDataset, shuffle: bool) -> DataLoader:
        """A lone last training sample is dropped: the head's BatchNorm cannot train on a batch of one."""
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=shuffle and len(dataset) % self.batch_size == 1,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
