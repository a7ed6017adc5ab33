"""`Experiment`: the one orchestrator — data → strategies' stages → evaluation → diagnosis → report — that the
CLI's `train` and `compare` and a notebook all go through. The run directory is its durable record.

    import transferlab as tl
    exp = tl.Experiment("photos/", augment="seed-keras")   # out= optional: runs/<data>-<time>
    exp.show_batch()                 # the data grid (a matplotlib Figure)
    exp.fit("frozen", epochs=5)
    exp.fit("finetune", epochs=3)    # continues from the frozen model
    exp.history                      # history.csv as a pandas DataFrame
    exp.plot()                       # the notebook's accuracy and loss curves
    exp.evaluate(); exp.diagnose(); exp.report()
    exp.predict(["dog.jpg"]); exp.export("dogs.onnx")

Fitting a strategy again replaces its results, in memory and in the run directory, and says so.
"""

import copy
import datetime
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import lightning as L
import torch

from .augment.gallery import gallery_figure, gallery_image
from .augment.pipeline import build_augment
from .config import CompareConfig, RunSettings, TrainConfig
from .data.names import class_noun
from .data.resolve import data_name, data_title, load_index
from .data.sources import DatasetIndex, Sample
from .evaluate.diagnose import Finding
from .evaluate.evaluation import evaluate_run
from .inference import run_explainer
from .files import runtimes_dir
from .models.backbones import resolve_backbone
from .models.checkpoints import find_checkpoint, load_checkpoint_classifier
from .models.classifier import Classifier, build_classifier
from .models.runtime import eval_mode
from .models.weights import RANDOM_INIT, WeightsError, WeightsInfo
from .report.html import build_report, run_findings, run_histories
from .report.plots import class_counts_figure, compare_figure, history_figure, sample_grid_figure, save_evaluation_figures, save_figure
from .rundir import RunDir, RunDirError
from .train.distributed import check_devices, is_rank_zero, training_device
from .train.fit import PrecisionUnavailable, StageResult, feature_datamodule, fit_stage, make_datamodule, prepare_run, run_precision, write_run_header
from .train.precision_gate import gate_on_features, gate_on_photos, precision_record
from .train.quiet import quiet_lightning, quiet_warnings
from .train.strategies import Stage, StrategyError, get_strategy, lineage, order, plan

if TYPE_CHECKING:
    import numpy as np
    import pandas
    from matplotlib.figure import Figure

    from .data.resolve import DataSpec
    from .inference import PhotoPrediction
    from .evaluate.curve import Curve
    from .train.lr_find import LrFinding

log = logging.getLogger(__name__)


def default_out(data: str) -> str:
    """runs/<name of DATA>-<date and time>: a new run directory for each new `Experiment` in a notebook."""
    return str(Path("runs") / f"{data_name(data)}-{datetime.datetime.now():%Y%m%d-%H%M%S}")


class Experiment:
    """One run: its settings, data, trained models and the run directory they are recorded in.

    `data` is a folder, a CSV manifest or `stanford-dogs` (then `settings` are `RunSettings` fields: backbone,
    augment, batch_size, seed...), or a whole `RunSettings` (a CLI command's config). `recipe` gives each
    strategy's default epochs and learning rate (`seed`: the notebook's; `quick`: a few epochs each).
    """

    def __init__(self, data: "str | Path | RunSettings", out: str | Path | None = None, *, recipe: str = "seed", **settings: Any):
        if isinstance(data, RunSettings):
            self.settings = data
        else:
            self.settings = RunSettings(data=str(data), out=str(out or default_out(str(data))), **settings)
        self.recipe = recipe
        self.results: dict[str, StageResult] = {}
        self._index: DatasetIndex | None = None
        self._run: RunDir | None = None
        self._pretrained: tuple[Classifier, WeightsInfo] | None = None
        self._photo_data: dict[int | None, Any] = {}
        self._feature_data = None
        self._feature_data_asked: str | None = None  # the precision asked for (the features may be fp32: refused)

    @classmethod
    def open(cls, run: str | Path, **overrides: Any) -> "Experiment":
        """The experiment recorded in a run directory, from its config.yaml (with `overrides`, e.g. batch_size):
        its models load from checkpoints."""
        if not RunDir(run).config_file.is_file():
            raise RunDirError(f"{run}: not a run directory (no config.yaml)")
        config = RunDir(run).read_config()["config"]
        settings = RunSettings(**{key: value for key, value in config.items() if key in RunSettings.model_fields})
        experiment = cls(settings.model_copy(update={**overrides, "out": str(run), "overwrite": False}), recipe=config.get("recipe", "seed"))
        experiment._run = RunDir(run)
        return experiment

    # -- what it holds -------------------------------------------------------------------------------------------

    @property
    def index(self) -> DatasetIndex:
        """The photos: DATA indexed, breeds kept, unreadable files dropped (read once)."""
        if self._index is None:
            self._index = load_index(self.settings.data_spec)
        return self._index

    @property
    def run(self) -> RunDir:
        """The run directory, prepared on first use (see `prepare_run`)."""
        if self._run is None:
            self._run = self._prepare()
        return self._run

    @property
    def strategies(self) -> list[str]:
        """The strategies trained in the run directory, in the registry's order."""
        return order(self.run.trained_strategies())

    @property
    def classes(self) -> list[str]:
        return [entry["name"] for entry in self.run.read_classes()]

    @property
    def history(self) -> "pandas.DataFrame":
        """history.csv: one row per epoch and strategy."""
        import pandas

        return pandas.DataFrame(self.run.read_history())

    def model(self, strategy: str) -> Classifier:
        """A trained strategy's best model: in memory after `fit`, else from its checkpoint."""
        return self._trained(strategy)[0]

    # -- training ------------------------------------------------------------------------------------------------

    def fit(
        self,
        strategy: str,
        epochs: int | None = None,
        lr: float | None = None,
        *,
        init: str | Path | None = None,
        callbacks: Sequence[L.Callback] = (),
        keep_finished: bool = False,
    ) -> StageResult:
        """Train one strategy and record it. A strategy that continues another (finetune, gradual: from frozen)
        starts from that one's model — loaded from the run directory when it finished there, else trained first
        with its defaults — or from `init` (a run directory or checkpoint). With `keep_finished` a stage already
        finished in the run directory is loaded instead of trained again (the CLI's resume, and every distributed
        run); an interrupted one always continues."""
        stage = plan(strategy, self.recipe, epochs, lr, self.settings.schedule)
        if self.recipe == "auto" and lr is None and not (keep_finished and self.run.finished([strategy])):  # a finished one is loaded
            stage = self._fitted_stage(stage, epochs, init)
        check_devices(self.settings.accelerator, self.settings.devices)
        if self.settings.devices * self.settings.num_nodes > 1:
            keep_finished = True  # every process must make the same choice, before they can talk to each other
        with self._claimed():
            model, image_size = self._starting_model(stage, init, callbacks)
            self._write_header(init)
            cached = stage.strategy.feature_cache and self.settings.cache and init is None
            data = self._features() if cached else self._photos(model, image_size)
            result = fit_stage(self.run, data, copy.deepcopy(model), stage, self.settings, self.index.classes, callbacks, keep_finished)
            if is_rank_zero() and "inference_precision" not in result.metrics:
                result = self._gated(result, model, image_size, callbacks)
        self.results[strategy] = result
        return result

    def lr_find(
        self, strategy: str = "frozen", min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100, init: str | Path | None = None,
    ) -> "LrFinding":
        """The learning-rate range test of `strategy` from where it would start (`train.lr_find`): the frozen head on
        the cached features in seconds; a continuing strategy from `init` or its base's model (trained first when
        needed). Returns the curve, its figure and the suggested rate."""
        from .train.distributed import trainer_options
        from .train.strategies import Unfreeze
        from .train.fit import bf16_probe, training_module
        from .train.lr_find import range_test

        stage = plan(strategy, self.recipe, None, None, self.settings.schedule)
        with self._claimed():
            model, image_size = self._starting_model(stage, init, ())
            cached = stage.strategy.feature_cache and self.settings.cache and init is None
            data = self._features() if cached else self._photos(model, image_size)
            model = copy.deepcopy(model)
            stage.strategy.apply(model, Unfreeze(self.settings.unfreeze_layers, self.settings.unfreeze_blocks))
            module, _ = training_module(model, stage, self.settings, self.index.classes, data)
            options = trainer_options(self.settings.accelerator, 1, 1, self.settings.precision, bf16_pays=bf16_probe(self.settings, model, module, data.config.image_size))
            L.seed_everything(self.settings.seed, workers=True, verbose=False)
            return range_test(module, data, strategy, options, min_lr, max_lr, steps, root=str(self.run.path))

    def curve(self, points: Sequence[int] | None = None, seeds: int = 3, epochs: int = 10, finetune: Sequence[int] = ()) -> "Curve":
        """Data efficiency of the frozen strategy: its head trained on the cached features of `points` training photos
        per class (and all of them), `seeds` draws each, validation accuracy on every validation photo; at the points
        in `finetune` the finetune strategy (the recipe's epochs and rate) also trains on the first draw's photos,
        continuing from its frozen head. Written to curve.json and plots/curve.png (the report shows it)."""
        import time

        import numpy as np

        from .evaluate.curve import POINTS, Curve, subset
        from .train.distributed import trainer_options
        from .train.features import FeatureDataModule, FeatureDataset
        from .train.fit import stage_module
        from .train.strategies import Unfreeze

        started = time.perf_counter()
        self.run  # a run directory that cannot take the curve is refused before the training, not after
        data = self._features()
        features, labels = data.train_set.features.numpy(), np.array(data.train_set.labels)
        largest = int(np.bincount(labels).max())
        photos = sorted({p for p in (points or POINTS) if p < largest} | {largest})
        tuned_at = {min(p, largest) for p in finetune}
        photos = sorted(set(photos) | tuned_at)
        stage = plan("frozen", self.recipe, epochs, None, self.settings.schedule)
        options = trainer_options(self.settings.accelerator, 1, 1, self.settings.precision)
        accuracy, tuned = [], {}
        for per_class in photos:
            row = []
            for seed in range(seeds):
                chosen = subset(labels, per_class, self.settings.seed + seed)
                train = FeatureDataset(features[chosen], labels[chosen].tolist(), self.settings.seed + seed, draw_views=True)
                datamodule = FeatureDataModule(train, data.val_set, data.config, self.settings.batch_size, self.settings.seed + seed)
                model = copy.deepcopy(self._pretrained_model()[0])
                stage.strategy.apply(model, Unfreeze(None, None))
                L.seed_everything(self.settings.seed + seed, workers=True, verbose=False)
                row.append(_fit_for_accuracy(stage_module(model, stage, self.settings, self.index.classes, datamodule), datamodule, stage.epochs, options))
                if seed == 0 and per_class in tuned_at:
                    tuned[per_class] = self._finetuned_accuracy(model, [self.index.train[i] for i in chosen])
            accuracy.append(row)
            log.info("curve: %d photos per class, accuracy %.3f (mean of %d seeds)", per_class, float(np.mean(row)), seeds)
        result = Curve(photos, accuracy, "frozen", time.perf_counter() - started, len(data.val_set), finetune=tuned)
        with self._claimed():
            save_figure(result.figure(), self.run.plot_file("curve"))
            self.run.write_json(self.run.curve_file, result.as_dict())
        return result

    def _finetuned_accuracy(self, frozen: Classifier, photos: Sequence[Sample]) -> float:
        """Validation accuracy of the finetune strategy trained on `photos`, continuing from the `frozen` model."""
        import dataclasses

        from .train.distributed import trainer_options
        from .train.fit import bf16_probe, make_datamodule, training_module
        from .train.module import FrozenBatchNormEval
        from .train.strategies import Unfreeze

        stage = plan("finetune", self.recipe, None, None, self.settings.schedule)
        model = copy.deepcopy(frozen)
        stage.strategy.apply(model, Unfreeze(self.settings.unfreeze_layers, self.settings.unfreeze_blocks))
        datamodule = make_datamodule(self.settings, dataclasses.replace(self.index, train=tuple(photos)), model, self.settings.image_size)
        module, _ = training_module(model, stage, self.settings, self.index.classes, datamodule)
        options = trainer_options(self.settings.accelerator, 1, 1, self.settings.precision, bf16_pays=bf16_probe(self.settings, model, module, datamodule.config.image_size))
        L.seed_everything(self.settings.seed, workers=True, verbose=False)
        return _fit_for_accuracy(module, datamodule, stage.epochs, options, [FrozenBatchNormEval()])

    def found_lr(self, strategy: str, steps: int = 100, max_lr: float = 1.0, init: str | Path | None = None, min_lr: float = 1e-6) -> "LrFinding":
        """`lr_find`, kept: the plot saved as plots/lr_find_<strategy>.png and the suggested rate in recipe.json (the
        report shows both). `.suggestion` is the rate."""
        finding = self.lr_find(strategy, min_lr=min_lr, max_lr=max_lr, steps=steps, init=init)
        if is_rank_zero():
            with self._claimed():
                save_figure(finding.figure(), self.run.plot_file(f"lr_find_{strategy}"))
        self._record_recipe(strategy, {"range_test": {"suggestion": finding.suggestion, "rule": finding.rule, "steps": steps, "max_lr": max_lr}})
        log.info("%s: learning rate %.2g from the range test", strategy, finding.suggestion)
        return finding

    def _fitted_stage(self, stage: Stage, epochs: int | None, init: str | Path | None) -> Stage:
        """`--recipe auto`: the frozen head's hyperparameters searched on the training photos' cached features
        (`train.recipe`); a strategy that fine-tunes the backbone from frozen at the range test's learning rate with
        early stopping; others (scratch) at the recipe's defaults. What was tried and chosen goes to recipe.json, which
        a resumed run reads instead of searching again."""
        from dataclasses import replace

        from .train.auto import searches_head, uses_range_test
        from .train.recipe import PATIENCE, PHOTO_RAMP_MAX_LR, PHOTO_RAMP_STEPS, fitted_fields, search_head

        recorded = self.run.read_recipe().get(stage.name, {})  # every process reads rank 0's choice when it is there
        if "stage" in recorded:
            return replace(stage, **{**recorded["stage"], **({"epochs": epochs} if epochs else {})})
        if searches_head(stage.strategy) and self.settings.cache and init is None:
            data = self._features()
            search = search_head(self._pretrained_model()[0].head, data.train_set.features.numpy(), data.train_set.labels,
                                 self.settings.seed, self.settings.batch_size, schedule=stage.schedule)
            stage = search.stage(stage, epochs)
            self._record_recipe(stage.name, {"search": search.as_dict()})
        elif uses_range_test(stage.strategy):
            stage = replace(stage, lr=self.found_lr(stage.name, PHOTO_RAMP_STEPS, PHOTO_RAMP_MAX_LR, init).suggestion, patience=PATIENCE)
        else:
            return stage
        self._record_recipe(stage.name, {"stage": fitted_fields(stage)})
        return stage

    def _record_recipe(self, strategy: str, entry: dict[str, Any]) -> None:
        """Add `entry` to what recipe.json holds for `strategy` (rank 0 alone writes)."""
        if is_rank_zero():
            with self._claimed():
                recipe = self.run.read_recipe()
                self.run.write_json(self.run.recipe_file, {**recipe, strategy: {**recipe.get(strategy, {}), **entry}})

    def _starting_model(self, stage: Stage, init: str | Path | None, callbacks: Sequence[L.Callback]) -> tuple[Classifier, int | None]:
        """The model a stage starts from, and its input size: `init`'s, the model of the strategy it continues
        (trained first when it is not there), or a new one."""
        if init is not None:
            model, hparams = load_checkpoint_classifier(init)
            if list(hparams["classes"]) != list(self.index.classes):
                raise WeightsError(f"{init}: trained on other classes than {self.settings.data}")
            return model, self.settings.image_size or hparams["image_size"]
        base = stage.strategy.starts_from
        if base is not None:
            if base not in self.results:
                log.info("%s continues from %s: its model from the run directory, or trained first", stage.name, base)
                self.fit(base, callbacks=callbacks, keep_finished=True)
            return copy.deepcopy(self.results[base].model), self.results[base].image_size
        return self._new_model(stage.strategy.pretrained), self.settings.image_size

    def _gated(self, result: StageResult, start: Classifier, image_size: int | None, callbacks: Sequence[L.Callback]) -> StageResult:
        """The accuracy gate of the run's reduced inference precision on the trained stage (`train.precision_gate`),
        recorded in metrics.json and config.yaml. When it fails, a stage that trained on the reduced precision's
        outputs is trained again in fp32 from `start`."""
        requested = self.settings.inference_precision
        precision = result.trained_precision if result.cached_features else run_precision(self.settings)
        verdict, refused = None, result.precision_refused
        try:
            if precision != "fp32" and result.cached_features:
                verdict = gate_on_features(self.settings, result.model, self._pretrained_model()[0], self.index.val,
                                           self._features(precision).val_set.features.numpy()[:, 0], precision, image_size)
            elif precision != "fp32":
                verdict = gate_on_photos(self.settings, result.model, self.index.val, precision, result.image_size, self.index.train)
        except PrecisionUnavailable as error:
            log.warning("%s: %s; it runs in fp32", result.stage.name, error)
            precision, refused = "fp32", str(error)
        if verdict is not None:
            (log.info if verdict.passed else log.warning)("%s: inference precision %s", result.stage.name, verdict.reason)
        used = precision if verdict is None or verdict.passed else "fp32"
        if used == "fp32" and result.trained_precision != "fp32":
            fp32 = self.settings.model_copy(update={"inference_precision": "fp32"})
            log.warning("%s: training it again with its frozen part in fp32", result.stage.name)
            data = self._features("fp32") if result.cached_features else self._photos(start, image_size)
            result = fit_stage(self.run, data, copy.deepcopy(start), result.stage, fp32, self.index.classes, callbacks, False)
        record = precision_record(requested, used, verdict, refused)
        result.metrics["inference_precision"] = record
        self.run.update_metrics(result.stage.name, {**self.run.read_metrics()[result.stage.name], "inference_precision": record})
        self.run.record_setting("inference_precision_used", {result.stage.name: used})
        return result

    # -- evaluation, diagnosis, report ---------------------------------------------------------------------------

    def evaluate(self, data: "DataSpec | None" = None, precision: str = "auto", tta: bool = False) -> dict[str, dict[str, Any]]:
        """Every trained strategy's best model on the validation photos (or on another labelled set, `data`):
        predictions.csv, evaluation.json, calibration.json and the confusion, calibration and mistakes figures;
        returns the metrics. `precision` "auto": each model in the inference precision its gate kept (metrics.json);
        or fp32, bf16, int8. `tta`: answers averaged over each photo and its flips (see `evaluate.tta`)."""
        with self._claimed():
            results, out = evaluate_run(
                self.run.path, data, self.settings.batch_size, self.settings.runtime,
                strategies=self.strategies,
                models={name: (result.model, result.image_size) for name, result in self.results.items()},
                samples=list(self.index.val) if self._index is not None else None,
                device=training_device(self.settings.accelerator),
                export_dir=runtimes_dir(self.settings.data_dir),
                known_logits=self._logits_from_cached_features() if data is None else None,
                precision=precision,
                known_precision=self._feature_data.precision if self._feature_data is not None else "fp32",
                data_dir=self.settings.data_dir,
                tta=tta,
            )
            save_evaluation_figures(
                out, self.classes, noun=class_noun([entry["folder"] for entry in self.run.read_classes()]),
                explainer=run_explainer(self.run), temperatures={name: self.run.temperature(name) for name in results},
            )
        return results

    def _logits_from_cached_features(self) -> dict[str, "np.ndarray"]:
        """Logits on the validation photos of each model whose backbone is the cached one (frozen): its head on
        the cached features, with no photo decoded and no backbone run again."""
        if self._feature_data is None:
            return {}
        features = self._feature_data.val_set.features[:, 0]
        logits = {}
        for name, result in self.results.items():
            if result.cached_features:
                with eval_mode(result.model), torch.inference_mode():
                    logits[name] = result.model.head.forward_pooled(features).float().numpy()
        return logits

    def diagnose(self) -> list[Finding]:
        """The curves and (after `evaluate`) the paired predictions read as a teacher would; see `evaluate.diagnose`."""
        return run_findings(self.run)

    def audit(self) -> "pandas.DataFrame":
        """The data audit of this experiment's photos (`audits`): duplicates and leaks, likely label errors, off-topic
        photos, imbalance, from the frozen strategy's cached features (computed if absent). Writes audit.html,
        audit.csv and audit.json into the run directory; returns the findings (summary in `.attrs["summary"]`)."""
        from .audits.findings import audit_index
        from .report.audit import write_audit

        with self._claimed():
            result = audit_index(self.settings, self.index)
            write_audit(result, self.run.path, f"Audit of {data_title(self.settings.data)}")
            self.run.write_json(self.run.audit_file, {
                "summary": result.summary(), "photos": result.photos,
                "issues": {issue: int((result.findings["issue"] == issue).sum()) for issue in result.findings["issue"].unique()},
            })
        result.findings.attrs["summary"] = result.summary()
        return result.findings

    def check_augmentation(
        self, strategy: str | None = None, augment: "str | list[dict[str, Any]] | None" = None, photos: int = 500,
    ) -> dict[str, Any]:
        """The model's accuracy on up to `photos` validation photos changed by each op of the run's augmentation (or
        of `augment`), against the clean photos; ops that cost far more than the others are flagged
        (`evaluate.augment_check`). Written to augment_check.json and shown in the report."""
        from .augment.pipeline import resolve_ops
        from .evaluate.augment_check import check_ops, check_summary
        from .evaluate.evaluation import run_samples
        import numpy as np

        from .data.datasets import PhotoDataset
        from .data.decoded import DecodedStore
        from .inference import best_strategy, load

        strategy = strategy or best_strategy(self.run)
        predictor = load(self.run.path, strategy, runtime="auto")
        configs = resolve_ops(augment) if augment is not None else self.run.read_config().get("augment_ops", [])
        samples = run_samples(self.run)
        chosen = [samples[i] for i in sorted(np.random.default_rng(self.settings.seed).permutation(len(samples))[:photos])]
        dataset = PhotoDataset(chosen, predictor.config, decoded=DecodedStore.for_config(predictor.config, self.settings.data_dir))
        clean, checks = check_ops(lambda batch: predictor.logits(torch.from_numpy(batch)), dataset, configs, self.settings.seed)
        record = {
            "strategy": strategy, "photos": len(chosen), "clean_accuracy": clean, "ops": [c.as_dict() for c in checks],
            "summary": check_summary(clean, checks, len(chosen)),
        }
        with self._claimed():
            self.run.write_json(self.run.augment_check_file, record)
        return record

    def report(self) -> tuple[Path, Path]:
        """report.html (self-contained) and report.md, with the data figures; returns their paths."""
        with self._claimed():
            self._write_data_figures()
            return build_report(self.run, run_explainer(self.run))

    # -- figures -------------------------------------------------------------------------------------------------

    def show_batch(self, n: int = 9) -> "Figure":
        """The notebook's grid of random training photos titled with their class."""
        return sample_grid_figure(self.index, n, self.settings.seed)

    def show_augmentations(self, n: int = 7) -> "Figure":
        """One training photo and `n` augmented copies, each captioned with the ops it got."""
        photo, _ = gallery_image(self.index.train[0].path)
        return gallery_figure(photo, build_augment(self.settings.augment, self.settings.augment_set), n, self.settings.seed)

    def plot(self, strategy: str | None = None) -> "Figure":
        """Accuracy and loss per epoch: one strategy's (the notebook's plot_hist), or every strategy's overlaid."""
        if strategy is not None:
            return history_figure(self.run.read_history(strategy), strategy)
        return compare_figure(run_histories(self.run))

    # -- using the models ----------------------------------------------------------------------------------------

    def predict(self, items: Any, top_k: int = 5, strategy: str | None = None) -> list["PhotoPrediction"]:
        """Top-k classes of photos (paths, PIL images or decoded RGB uint8 tensors) by the recommended strategy's model,
        or `strategy`'s."""
        from .inference import load

        return load(self.run.path, strategy, runtime="auto").predict(items, top_k)

    def export(self, path: str | Path, strategy: str | None = None, photos: int = 32) -> Path:
        """The recommended (or `strategy`'s) classifier as ONNX, preprocessing and classes in its metadata; checked
        against PyTorch on `photos` validation photos (a `ValueError` when the two disagree)."""
        from .export import PARITY_TOLERANCE, export_and_check

        written, parity = export_and_check(self.run.path, Path(path), strategy, photos)
        if parity is not None and not parity.passed:
            raise ValueError(
                f"{written}: differs from PyTorch by {parity.max_relative_logit_difference:.1e} (limit {PARITY_TOLERANCE:.0e}), "
                f"same top-1 on {parity.same_top1}/{parity.photos} photos"
            )
        return written

    # -- inside --------------------------------------------------------------------------------------------------

    def _claimed(self) -> AbstractContextManager:
        """Rank 0 alone writes the run directory, and no other process meanwhile."""
        return RunDir(self.settings.out).claimed() if is_rank_zero() else nullcontext()

    def _prepare(self, refuse_finished: Sequence[str] | None = None) -> RunDir:
        return prepare_run(self.settings, self.index, refuse_finished)

    def _write_header(self, init: str | Path | None) -> None:
        """config.yaml and classes.json: the settings, versions, data counts and where the weights came from."""
        if not is_rank_zero():
            return
        if init is not None:
            weights = WeightsInfo("checkpoint", str(find_checkpoint(init)))
        else:
            weights = self._pretrained[1] if self._pretrained is not None else RANDOM_INIT
        saved = self.run.read_config()["config"] if self.run.config_file.is_file() else {}
        write_run_header(self.run, self.settings, self.index, weights, keep={**saved, "recipe": self.recipe})

    def _trained(self, strategy: str) -> tuple[Classifier, int]:
        """A trained strategy's best model and its input size: in memory after `fit`, else from its checkpoint."""
        if strategy in self.results:
            return self.results[strategy].model, self.results[strategy].image_size
        model, hparams = load_checkpoint_classifier(self.run.path, strategy)
        return model, hparams["image_size"]

    def _pretrained_model(self) -> tuple[Classifier, WeightsInfo]:
        """The backbone with its pretrained weights and a new head (seeded), built once: features and data
        settings come from it, and `frozen` trains a copy."""
        if self._pretrained is None:
            torch.manual_seed(self.settings.seed)
            spec = resolve_backbone(self.settings.backbone)
            self._pretrained = build_classifier(spec, len(self.index.classes), True, self.settings.weights, self.settings.dropout)
        return self._pretrained

    def _new_model(self, pretrained: bool) -> Classifier:
        if pretrained:
            return copy.deepcopy(self._pretrained_model()[0])
        torch.manual_seed(self.settings.seed)
        return build_classifier(resolve_backbone(self.settings.backbone), len(self.index.classes), False, dropout=self.settings.dropout)[0]

    def _photos(self, model: Classifier, image_size: int | None):
        """Photos decoded, augmented and batched for `model`'s backbone (one datamodule per input size)."""
        if image_size not in self._photo_data:
            self._photo_data[image_size] = make_datamodule(self.settings, self.index, model, image_size)
        return self._photo_data[image_size]

    def _features(self, precision: str | None = None):
        """The pretrained backbone's cached features, in `precision` (default: the run's, `run_precision`)."""
        precision = precision or run_precision(self.settings)
        if self._feature_data is None or self._feature_data_asked != precision:
            self._feature_data = feature_datamodule(self.settings, self.index, self._pretrained_model()[0], self.settings.image_size, precision)
            self._feature_data_asked = precision
        return self._feature_data

    def _write_data_figures(self) -> None:
        """plots/samples.png, plots/class_counts.png and plots/augment.png, when not there yet."""
        run = self.run
        if not run.plot_file("samples").is_file():
            save_figure(self.show_batch(), run.plot_file("samples"))
        if not run.plot_file("class_counts").is_file():
            save_figure(class_counts_figure(self.index), run.plot_file("class_counts"))
        pipeline = build_augment(self.settings.augment, self.settings.augment_set)
        if pipeline is not None and pipeline.ops and not run.plot_file("augment").is_file():
            save_figure(self.show_augmentations(), run.plot_file("augment"))


def _fit_for_accuracy(module: L.LightningModule, datamodule: L.LightningDataModule, epochs: int, options: dict, callbacks: Sequence[L.Callback] = ()) -> float:
    """Train `module` without a run directory (no checkpoint, log or bar); its validation accuracy at the end."""
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks), **options)
    with quiet_warnings(), quiet_lightning():
        trainer.fit(module, datamodule)
    return float(trainer.callback_metrics["val_acc"])


def _rate(experiment: Experiment, strategy: str, lr: float | str | None) -> float | None:
    """A `--lr` value as a rate: "find" is the range test's suggestion (none for a finished stage, which is loaded)."""
    if lr != "find":
        return lr
    return None if experiment.run.finished([strategy]) else experiment.found_lr(strategy).suggestion


def train(config: TrainConfig, callbacks: Sequence[L.Callback] = ()) -> RunDir:
    """`tlab train`: one strategy (and the strategies it continues, unless `init`) into `config.out`.

    A finished run is refused without `overwrite`; an interrupted one with the same settings is resumed, its
    finished stages loaded, not trained again."""
    stages = [config.strategy] if config.init else lineage(config.strategy)
    check_devices(config.accelerator, config.devices)
    experiment = Experiment(config, recipe=config.recipe)
    with experiment._claimed():
        L.seed_everything(config.seed, workers=True, verbose=False)
        experiment._run = experiment._prepare(refuse_finished=stages)
        for name in stages:
            last = name == config.strategy
            epochs = config.epochs if last else (config.frozen_epochs if name == "frozen" else None)
            lr = _rate(experiment, name, config.lr) if last else None
            experiment.fit(name, epochs, lr, init=config.init if last else None,
                           callbacks=callbacks, keep_finished=True)
    return experiment.run


def compare(config: CompareConfig, callbacks: Sequence[L.Callback] = ()) -> RunDir:
    """`tlab compare`: the strategies of `config` on one split, in order (a continuing one after the one it
    continues), then evaluation, diagnosis and report.html / report.md."""
    for name in config.strategies:
        base = get_strategy(name).starts_from
        if base is not None and base not in config.strategies[: config.strategies.index(name)]:
            raise StrategyError(f"{name} continues from the {base} model: list {base} before it in --strategies")
    check_devices(config.accelerator, config.devices)
    experiment = Experiment(config, recipe=config.recipe)
    with experiment._claimed():
        L.seed_everything(config.seed, workers=True, verbose=False)
        experiment._run = experiment._prepare(refuse_finished=config.strategies)
        for name in config.strategies:
            experiment.fit(name, config.epochs.get(name), _rate(experiment, name, config.lr.get(name)), callbacks=callbacks, keep_finished=True)
        if not is_rank_zero():
            return experiment.run  # the other processes of a distributed run only train
        experiment.evaluate()
        if audit_available():
            experiment.audit()
        else:
            log.info("no data audit in the report: pip install 'transferlab[audit]' for one")
        experiment.report()
    return experiment.run


def audit_available() -> bool:
    from .audits.findings import missing_packages

    return not missing_packages()


__all__ = ["Experiment", "train", "compare"]
