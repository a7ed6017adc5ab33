"""report.html (one self-contained file, images inlined) and report.md, rebuilt from the run directory alone."""

import base64
import datetime
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..data.names import class_noun, plural
from ..data.resolve import data_title
from ..data.scan import thinness
from ..evaluate.curve import curve_finding
from ..evaluate.diagnose import Finding, diagnose
from ..train.strategies import costs, get_strategy, order, strategy_names
from ..evaluate.metrics import compute_metrics, read_predictions
from ..files import write_atomic
from ..rundir import RunDir
from .plots import compare_figure, coverage_at, history_figure, save_evaluation_figures, save_figure
from .jinja import environment

PHOTO_FIGURES = ("samples", "augment", "mistakes_")
"""Figures of photos, inlined as JPEG: a tenth of their PNG size, and the report stays one file of a few MB."""


def _data_uri(path: Path) -> str:
    if not path.stem.startswith(PHOTO_FIGURES):
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _metrics_rows(run: RunDir, histories: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    metrics = run.read_metrics()
    rows = []
    for strategy, history in histories.items():
        values = metrics.get(strategy, {})
        rows.append(
            {
                "strategy": strategy,
                "epochs": len(history),
                "train_acc": history[-1]["train_acc"],
                "val_acc": history[-1]["val_acc"],
                "val_loss": history[-1]["val_loss"],
                "best_val_acc": max(row["val_acc"] for row in history),
                "best_epoch": max(history, key=lambda row: row["val_acc"])["epoch"],
                "accuracy": values.get("accuracy"),
                "top5_accuracy": values.get("top5_accuracy"),
                "macro_f1": values.get("macro_f1"),
                "seconds_per_epoch": sum(row["seconds"] for row in history) / len(history),
                "seconds": sum(row["seconds"] for row in history),
                "feature_seconds": values.get("feature_seconds"),
                "training_note": training_note(values),
            }
        )
    return rows


def training_note(metrics: dict[str, Any]) -> str | None:
    """How a strategy trained and answers, in words: its training precision, the augmented views its epochs cycled
    through, and its inference precision with the accuracy gate's verdict (metrics.json)."""
    parts = []
    if metrics.get("training_precision"):
        speedup = metrics.get("bf16_training_speedup")
        timing = f" (bf16 autocast timed at {speedup:.2f}x fp32's speed on this CPU)" if speedup else ""
        parts.append(f"trained in {metrics['training_precision']}{timing}")
    if metrics.get("trunk_views"):
        parts.append(f"its epochs cycled through {metrics['trunk_views']} augmented view(s) of each photo, the frozen "
                     "trunk's outputs kept (--trunk-views)")
    record = metrics.get("inference_precision")
    if record:
        gate = record.get("gate")
        why = f": {gate['reason']}" if gate else f" ({record['requested']} asked for: {record['refused']})" if record.get("refused") else ""
        parts.append(f"answers in {record['used']}{why}")
    return "; ".join(parts) or None


SHOWN_CLASSES = 10
"""Per-class rows shown at once; the rest of a long table is folded (HTML) or left to evaluation.json (Markdown)."""


def calibration_summary(calibration: dict[str, Any] | None, predictions: Any) -> dict[str, Any]:
    """What the report says about a strategy's confidence: its temperature and errors (calibration.json) in words,
    and the accuracy and coverage at a few minimum confidences."""
    return {"text": calibration_text(calibration) if calibration else None, "coverage": coverage_at(predictions)}


def calibration_text(c: dict[str, Any]) -> str:
    errors = (
        f"expected calibration error {100 * c['ece_before']:.1f}% before, {100 * c['ece_after']:.1f}% after "
        f"({100 * c['ece_after_cross_fitted']:.1f}% when fitted on one half of the photos and measured on the other, "
        "as a new photo sees it)"
    )
    if c["temperature"] == 1.0 and c.get("temperature_nll", 1.0) != 1.0:
        return (
            f"Confidence: the raw probabilities are kept (T = 1): the temperature that fits these {c['photos']} validation "
            f"photos best (T = {c['temperature_nll']:.2f}, by likelihood) would have raised the calibration error on them; {errors}."
        )
    return f"Confidence: probabilities are calibrated by temperature scaling (T = {c['temperature']:.2f}, fitted on the {c['photos']} validation photos); {errors}."


def worst_first(accuracy: dict[str, float | None], predictions: Any, names: list[str]) -> list[dict[str, Any]]:
    """Per-class rows, lowest accuracy first: name, validation photos, accuracy."""
    photos = np.bincount(predictions.labels, minlength=len(names))
    rows = [{"name": name, "photos": int(photos[i]), "accuracy": accuracy[name]} for i, name in enumerate(names) if photos[i]]
    return sorted(rows, key=lambda row: (row["accuracy"], row["name"]))


def recipe_context(recipe: dict[str, Any]) -> dict[str, Any] | None:
    """What `--recipe auto` and `--lr find` tried and chose (recipe.json), as sentences and the head search's trials,
    best first."""
    if not recipe:
        return None
    lines, trials, rule = [], [], None
    for strategy, record in recipe.items():
        stage = record.get("stage")
        if "search" in record:
            search, chosen = record["search"], record["search"]["chosen"]
            lines.append(
                f"{strategy}: {len(search['trials'])} settings of the head tried in {search['seconds']:.0f} s, each trained on "
                f"{search['folds'] - 1} of {search['folds']} folds of the {search['photos']} training photos and scored on "
                f"the fold left out (the validation photos stay unseen). Chosen: learning rate {chosen['lr']:g}, "
                f"{chosen['epochs']} epochs, weight decay {chosen['weight_decay']:g}, dropout {chosen['dropout']:g}, label "
                f"smoothing {chosen['label_smoothing']:g}, {search.get('schedule', 'cosine')} schedule (held-out accuracy "
                f"{100 * chosen['accuracy']:.1f}%)." + ("" if search["complete"] else " The time budget ended the search before every setting was tried.")
            )
            trials = sorted(search["trials"], key=lambda t: (-t["accuracy"], t["loss"]))
            rule = search["rule"]
        elif "range_test" in record:
            text = f"{strategy}: learning rate {record['range_test']['suggestion']:.2g} from the range test (its plot below)"
            if stage:
                text += f", {stage['schedule']} schedule, at most {stage['epochs']} epochs"
                if stage.get("patience"):
                    text += f", stopping after {stage['patience']} without a lower validation loss"
            lines.append(text + ".")
    return {"lines": lines, "trials": trials, "rule": rule} if lines else None


def run_histories(run: RunDir) -> dict[str, list[dict[str, Any]]]:
    """history.csv per strategy, in the registry's order (the notebook's three first)."""
    rows = run.read_history()
    return {name: [row for row in rows if row["strategy"] == name] for name in order({row["strategy"] for row in rows})}


def run_findings(run: RunDir, histories: dict[str, list[dict[str, Any]]] | None = None, predictions: dict | None = None) -> list[Finding]:
    """The diagnosis of a run from its files: its curves, its predictions.csv when it was evaluated, and its
    curve.json (would more photos help?) when `tlab curve` ran into it."""
    histories = run_histories(run) if histories is None else histories
    if predictions is None:
        predictions = read_predictions(run.predictions_file) if run.predictions_file.is_file() else {}
    n_val = len(next(iter(predictions.values())).paths) if predictions else run.read_config()["data"]["val"]
    known = [name for name in histories if name in strategy_names()]
    continues = {name: get_strategy(name).starts_from for name in known if get_strategy(name).starts_from}
    counts = {entry["name"]: entry["train"] for entry in run.read_classes() if "train" in entry}
    findings = diagnose(
        histories, predictions, n_val, seed=run.read_config()["config"]["seed"], costs=costs(known), continues=continues,
        train_counts=counts if len(counts) == len(run.read_classes()) else None,
    )
    if run.curve_file.is_file():
        findings.append(curve_finding(run.read_json_if_there(run.curve_file)))
    return findings


def thin_class_names(classes: list[dict[str, Any]]) -> dict[str, str]:
    """Readable class name -> what makes it too thin to learn or to judge, from classes.json's counts (runs from
    before they were recorded have none: nothing to say)."""
    return {
        entry["name"]: why for entry in classes
        if "train" in entry and "val" in entry and (why := thinness(entry["train"], entry["val"]))
    }


def report_context(run: RunDir, explainer: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Everything the templates show, from the run directory's files; (re)draws the curves and writes diagnosis.json.
    Evaluation figures missing from the run are drawn, with Grad-CAM maps of the mistakes when an `explainer`
    (strategy → `Predictor`) is given."""
    config = run.read_config()
    names = [entry["name"] for entry in run.read_classes()]
    folders = [entry["folder"] for entry in run.read_classes()]
    histories = run_histories(run)
    for strategy, rows in histories.items():
        save_figure(history_figure(rows, strategy), run.plot_file(f"history_{strategy}"))
    if len(histories) > 1:
        save_figure(compare_figure(histories), run.plot_file("compare"))

    predictions = read_predictions(run.predictions_file) if run.predictions_file.is_file() else {}
    evaluation = {s: compute_metrics(p, names) for s, p in predictions.items()}
    per_class = {s: worst_first(metrics["per_class_accuracy"], predictions[s], names) for s, metrics in evaluation.items()}
    drawn = all(run.plot_file(f"{kind}_{name}").is_file() for name in predictions for kind in ("confusion", "calibration"))
    if predictions and not drawn:  # evaluation draws them; a run evaluated elsewhere, or before they existed, may lack them
        temperatures = {name: run.temperature(name) for name in predictions}
        save_evaluation_figures(run, names, predictions, class_noun(folders), explainer, temperatures)
    findings = run_findings(run, histories, predictions)
    run.write_json(run.diagnosis_file, [finding.as_dict() for finding in findings])

    def image(name: str) -> dict[str, str | None]:
        path = run.plot_file(name)
        return {"file": path.relative_to(run.path).as_posix(), "uri": _data_uri(path)} if path.is_file() else None

    settings = config["config"]
    on_features = [name for name in histories if name in strategy_names() and get_strategy(name).feature_cache]
    cached = settings.get("cache", True)
    cached_views = on_features and cached and config.get("augment_ops")
    return {
        "title": f"transferlab: {data_title(settings['data'])}",
        "noun": class_noun(folders),
        "nouns": plural(class_noun(folders)),
        "frozen_views": settings.get("views") if cached_views else None,
        "cached_strategies": on_features,
        "photo_strategies": [name for name in histories if name not in on_features or not cached],
        "run": str(run.path),
        "created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "config": config["config"],
        "data": config["data"],
        "versions": config["versions"],
        "machine": config.get("machine"),  # runs from before it was recorded have none
        "augment_ops": config.get("augment_ops", []),
        "classes": names,
        "thin_classes": thin_class_names(run.read_classes()),
        "strategies": list(histories),
        "metrics": _metrics_rows(run, histories),
        "findings": findings,
        "evaluation": evaluation,
        "per_class": per_class,
        "shown_classes": SHOWN_CLASSES,
        "images": {
            "samples": image("samples"),
            "class_counts": image("class_counts"),
            "augment": image("augment"),
            "compare": image("compare"),
            **{f"history_{s}": image(f"history_{s}") for s in histories},
            **{f"confusion_{s}": image(f"confusion_{s}") for s in histories},
            **{f"mistakes_{s}": image(f"mistakes_{s}") for s in histories},
            **{f"calibration_{s}": image(f"calibration_{s}") for s in histories},
            **{f"lr_find_{s}": image(f"lr_find_{s}") for s in histories},
            "curve": image("curve"),
        },
        "tta": {s: run.read_evaluation().get(s, {}).get("tta") for s in predictions},
        "audit": run.read_json_if_there(run.audit_file),
        "recipe": recipe_context(run.read_recipe()),
        "curve": run.read_json_if_there(run.curve_file),
        "augment_check": run.read_json_if_there(run.augment_check_file),
        "calibration": {s: calibration_summary(run.read_calibration().get(s), predictions[s]) for s in predictions},
    }


def build_report(run: RunDir | str | Path, explainer: Callable[[str], Any] | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md into the run directory; return their paths. `explainer`: see `report_context`."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    with run.claimed():
        context = report_context(run, explainer)
        write_atomic(run.report_file, environment().get_template("report.html.j2").render(context))
        write_atomic(run.report_markdown_file, environment(markdown=True).get_template("report.md.j2").render(context))
    return run.report_file, run.report_markdown_file
