"""--balance: a class-weighted loss or a balanced sampler; the diagnosis names small classes that are missed."""

import numpy as np
import pytest
import torch

import transferlab as tl
from transferlab.data.datasets import EpochSampler, balanced_weights
from transferlab.evaluate.diagnose import imbalance_finding
from transferlab.evaluate.metrics import Predictions


def test_balanced_weights_are_inverse_to_the_class_sizes():
    per_class, per_sample = balanced_weights([0] * 30 + [1] * 10, 2)
    assert per_class == pytest.approx([40 / 60, 40 / 20])
    assert sum(w for w, label in zip(per_sample, [0] * 30 + [1] * 10) if label == 0) == pytest.approx(1.0)
    assert per_sample[-1] == pytest.approx(0.1)


def test_a_balanced_sampler_draws_every_class_equally_often_the_same_way_in_every_process():
    labels = [0] * 90 + [1] * 10
    weights = balanced_weights(labels, 2)[1]
    sampler = EpochSampler(100, seed=3, weights=weights)
    sampler.set_epoch(1)
    drawn = [index for index, _ in sampler]
    assert len(drawn) == 100 and 35 <= sum(labels[i] for i in drawn) <= 65
    again = EpochSampler(100, seed=3, weights=weights)
    again.set_epoch(1)
    assert [index for index, _ in again] == drawn
    shards = []
    for rank in range(2):
        shard = EpochSampler(100, seed=3, rank=rank, world_size=2, weights=weights)
        shard.set_epoch(1)
        shards.append([index for index, _ in shard])
    assert sorted(shards[0] + shards[1]) == sorted(drawn)
    validation = EpochSampler(100, seed=3, shuffle=False, weights=None)
    assert [index for index, _ in validation] == list(range(100))


def _predictions(recall_small: float) -> Predictions:
    labels = np.array([0] * 50 + [1] * 50 + [2] * 10)
    predicted = labels.copy()
    predicted[100 : 100 + int(10 * (1 - recall_small))] = 0
    return Predictions("frozen", tuple(f"p{i}" for i in range(len(labels))), labels, predicted, np.full(len(labels), 0.9),
                       np.stack([predicted, labels], 1))


def test_the_diagnosis_names_a_small_class_that_is_missed():
    counts = {"cats": 200, "dogs": 200, "ferrets": 20}
    finding = imbalance_finding("frozen", _predictions(0.3), counts)
    assert finding is not None and "ferrets 30% (20 photos)" in finding.text and "--balance" in finding.text
    assert imbalance_finding("frozen", _predictions(1.0), counts) is None
    assert imbalance_finding("frozen", _predictions(0.3), {"cats": 30, "dogs": 30, "ferrets": 20}) is None


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_training_with_balance_runs_and_records_it(image_tree, tmp_path, balance):
    data = image_tree({"big": 24, "small": 6})
    experiment = tl.Experiment(data, out=tmp_path / "run", image_size=48, batch_size=4, augment="none", runtime="torch", balance=balance)
    experiment.fit("frozen", epochs=1)
    assert experiment.run.read_config()["config"]["balance"] == balance
    assert [entry["train"] + entry["val"] for entry in experiment.run.read_classes()] == [24, 6]


def test_the_weighted_loss_weighs_the_small_class_up_and_validation_stays_plain():
    from transferlab.models.classifier import build_classifier
    from transferlab.train.module import ClassifierModule

    model, _ = build_classifier("efficientnet_lite0", 2, pretrained=False)
    features = torch.randn(8, model.backbone.num_features)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    losses = {}
    for name, weights in (("plain", None), ("weighted", [0.5, 5.0])):
        module = ClassifierModule(model.eval(), 1e-3, "frozen", "efficientnet_lite0", ["a", "b"], 0.2, 48, class_weights=weights)
        module.log = lambda *args, **kwargs: None
        losses[name] = {stage: float(module._step((features, labels), stage).detach()) for stage in ("train", "val")}
    assert losses["weighted"]["train"] != pytest.approx(losses["plain"]["train"])
    assert losses["weighted"]["val"] == pytest.approx(losses["plain"]["val"])
