"""`compare(config)`: the notebook's experiment — scratch, frozen, then finetune from the frozen model —
on one split, one augmentation and one seed, evaluated and reported in one run directory."""

import copy
import logging
from dataclasses import replace
from typing import Sequence

import lightning as L

from ..augment.gallery import gallery_figure, gallery_image
from ..augment.pipeline import build_augment
from ..config import CompareConfig
from ..evaluate.evaluation import evaluate_models, record_summary
from ..models.backbones import resolve_backbone
from ..models.classifier import build_classifier
from ..report.html import build_report
from ..report.plots import class_counts_figure, sample_grid_figure, save_figure
from ..files import runtimes_dir
from .distributed import is_rank_zero, training_device
from ..rundir import RunDir
from .runner import StageResult, claim_run, feature_datamodule, fit_stage, load_data, make_datamodule, open_run, write_run_header
from .strategies import RECIPES, Strategy

log = logging.getLogger(__name__)


def compare_strategies(config: CompareConfig) -> dict[str, Strategy]:
    """The recipe's strategies, in the notebook's order, with the config's per-strategy epochs and lr."""
    recipe = RECIPES[config.recipe]
    return {
        name: replace(recipe[name], epochs=config.epochs.get(name, recipe[name].epochs), lr=config.lr.get(name, recipe[name].lr))
        for name in ("scratch", "frozen", "finetune")
        if name in config.strategies
    }


def write_data_figures(run: RunDir, config: CompareConfig, index) -> None:
    """plots/samples.png, plots/class_counts.png and plots/augment.png (augmented copies of one training photo)."""
    save_figure(sample_grid_figure(index, 9, config.seed), run.plot_file("samples"))
    save_figure(class_counts_figure(index), run.plot_file("class_counts"))
    pipeline = build_augment(config.augment, config.augment_set)
    if pipeline is not None and pipeline.ops:
        photo, _ = gallery_image(index.train[0].path)
        save_figure(gallery_figure(photo, pipeline, 7, config.seed), run.plot_file("augment"))


def compare(config: CompareConfig, callbacks: Sequence[L.Callback] = ()) -> RunDir:
    """Train every strategy of `config` into `config.out`, evaluate each best model on the validation photos,
    diagnose the curves and write report.html / report.md; return the run directory."""
    with claim_run(config):
        L.seed_everything(config.seed, workers=True, verbose=False)
        spec = resolve_backbone(config.backbone)
        index = load_data(config)
        strategies = compare_strategies(config)
        run = open_run(config, index, list(strategies))

        pretrained, weights = build_classifier(spec, len(index.classes), True, config.weights, config.dropout)
        if is_rank_zero():
            write_run_header(run, config, index, weights)
            write_data_figures(run, config, index)
        datamodule = make_datamodule(config, index, pretrained, config.image_size)
        frozen_data = feature_datamodule(config, index, pretrained, config.image_size) if config.cache else datamodule

        stages: dict[str, StageResult] = {}
        for name, strategy in strategies.items():
            if name == "scratch":
                model, _ = build_classifier(spec, len(index.classes), False, dropout=config.dropout)
            elif name == "frozen":
                model = pretrained
            else:
                model = copy.deepcopy(stages["frozen"].model)
            log.info("%s: %d epochs at lr %g", name, strategy.epochs, strategy.lr)
            data = frozen_data if name == "frozen" else datamodule
            stages[name] = fit_stage(run, data, model, strategy, config, index.classes, callbacks)
        if not is_rank_zero():
            return run  # the other processes of a distributed run only train

        image_size = datamodule.config.image_size
        models = {name: stage.model for name, stage in stages.items()}
        results = evaluate_models(
            run, models, index.val, index.readable_names, image_size, config.batch_size,
            runtime=config.runtime,
            device=training_device(config.accelerator),
            export_dir=runtimes_dir(config.data_dir),
        )
        record_summary(run, results)
        build_report(run)
        return run
