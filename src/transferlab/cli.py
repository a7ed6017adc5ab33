"""The `tlab` command line: parses flags, calls the library, prints. No logic of its own."""

import inspect
import logging
import sys
import types
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal, Optional, Sequence, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined
from rich.console import Console

from .config import CompareConfig, RunSettings, TrainConfig
from .models.backbones import DEFAULT_BACKBONE
from .train.distributed import is_rank_zero
from .train.quiet import LIGHTNING_LOGGERS
from .train.strategies import get_strategy, strategy_names

app = typer.Typer(
    help="transferlab: train, evaluate and explain an image classifier on a folder of photos, "
    "by transfer learning and data augmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)

USAGE_ERROR = 2
FOUND_ERRORS = 1

STRATEGIES_HELP = "; ".join(f"{name}: {get_strategy(name).summary}" for name in strategy_names()) + "."


def _cli_type(annotation: Any) -> Any:
    """The type typer parses a config field as: the field's own for plain values, `str` for choices and unions with
    text (pydantic validates), an optional repeatable list for lists and mappings ("name=value")."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return str
    if origin in (list, dict):
        return Optional[list[str]]
    if origin in (Union, types.UnionType):
        plain = [arg for arg in args if arg is not type(None)]
        if len(plain) == 1 and type(None) in args:
            return Optional[_cli_type(plain[0])]
        return str
    return annotation


def _field_option(model: type[BaseModel], name: str, *declarations: str, **overrides: Any) -> Any:
    """`Annotated[type, typer.Option]` for one config field, with its help from the field's description."""
    field = model.model_fields[name]
    help_text = overrides.pop("help", field.description)
    return Annotated[_cli_type(field.annotation), typer.Option(*declarations, help=help_text, **overrides)]


def _field_default(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    return None if field.default is PydanticUndefined or field.default_factory is not None else field.default


def _config_command(
    model: type[RunSettings], run: Callable[[typer.Context, dict[str, Any]], None], first: Sequence[inspect.Parameter] = (),
    spelled: dict[str, inspect.Parameter | None] | None = None,
) -> Callable[..., None]:
    """A typer command whose options are `model`'s fields, each typed, defaulted and explained by the field itself;
    `first` come before them, `spelled` replaces a field's generic option (None: no option). It calls
    `run(ctx, parameters)`."""
    spelled = spelled or {}

    def command(ctx: typer.Context, **parameters: Any) -> None:
        run(ctx, parameters)

    parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *first]
    for name in model.model_fields:
        if name in spelled:
            if spelled[name] is not None:
                parameters.append(spelled[name])
            continue
        parameters.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=_field_option(model, name), default=_field_default(model, name),
        ))
    command.__signature__ = inspect.Signature(parameters)
    return command


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


DataArgument = Annotated[str, typer.Argument(metavar="DATA", help=RunSettings.model_fields["data"].description)]
BreedsOption = _field_option(RunSettings, "breeds")
DataDirOption = _field_option(RunSettings, "data_dir")
SourceUrlOption = _field_option(RunSettings, "source_url")
RuntimeOption = _field_option(RunSettings, "runtime")
InferencePrecisionOption = _field_option(
    RunSettings, "inference_precision",
    help="auto (the precision the run's accuracy gate kept for the strategy, where this CPU runs it natively; else fp32), fp32, bf16 or int8.",
)
def calibration_line(calibration: dict) -> str:
    """'calibration error 0.081 -> 0.023 (temperature 1.62, fitted on these photos)' for an evaluation's metrics."""
    where = "fitted on these photos" if calibration.get("fitted_here") else "the run's"
    return (
        f"calibration error (ECE) {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f} "
        f"(temperature {calibration['temperature']:.2f}, {where})"
    )


TtaOption = Annotated[bool, typer.Option(
    "--tta", help="Test-time augmentation: average each photo's answer with its flips' (those the run trained with; else the horizontal flip). Slower by that many passes.",
)]
MinConfidenceOption = Annotated[float, typer.Option(
    min=0.0, max=1.0,
    help="Answer 'not sure' (label null, with the reason) when the top calibrated probability is below this; the report's accuracy-coverage plot shows what each value costs.",
)]


INTERRUPTED = 130


def _fail(message: str, code: int = USAGE_ERROR) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)  # [brackets] in a path or value stay
    raise typer.Exit(code)


def _input_errors() -> tuple[type[Exception], ...]:
    """The library's errors about what it was given (data, model files, run directories, settings): each says what
    is wrong and where, in one line."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .augment.pipeline import AugmentConfigError
    from .data.decode import UnreadableImageError
    from .data.sources import DataSourceError
    from .explain.gradcam import ExplainError
    from .models.backbones import BackboneError
    from .models.precision import PrecisionError
    from .models.runtime import UnknownRuntimeError
    from .models.weights import WeightsError
    from .train.distributed import DeviceError
    from .train.strategies import StrategyError
    from .rundir import RunDirError
    from .serve import CannotListenError

    return (
        DataSourceError, BackboneError, WeightsError, UnreadableImageError, RunDirError, DeviceError, AugmentConfigError,
        StrategyError, PrecisionError, UnknownRuntimeError, ExplainError, CannotListenError, MisconfigurationException,
        FileNotFoundError,
    )


@contextmanager
def _one_line_errors(exit_code: int = USAGE_ERROR) -> Iterator[None]:
    """Bad input inside the block is one line on stderr and `exit_code`; a full disk one line and exit 1; Ctrl-C
    says how to go on and exits 130."""
    from .files import is_disk_full

    try:
        yield
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/] — run the same command (without --overwrite) to resume", highlight=False)
        raise typer.Exit(INTERRUPTED) from None
    except _input_errors() as error:
        _fail(str(error), exit_code)
    except OSError as error:
        if not is_disk_full(error):
            raise
        _print_disk_full(error)
        raise typer.Exit(FOUND_ERRORS) from None


def _validation_message(error: ValidationError, config_file: Path | None = None, from_file: AbstractSet[str] = frozenset()) -> str:
    """Each wrong setting, named as the user gave it: a flag, or a key of `config_file` for the fields in `from_file`."""
    parts = []
    for item in error.errors():
        if not item["loc"]:
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
        if item["loc"][0] in from_file:
            field = f"{config_file}: {'.'.join(str(loc) for loc in item['loc'])}"
        else:
            field = "--" + "-".join(str(loc) for loc in item["loc"]).replace("_", "-")
        parts.append(f"{field}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)


def _print_version(asked: bool) -> None:
    if asked:
        from . import __version__

        typer.echo(f"transferlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library log messages.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit (`tlab info` says more).", is_eager=True, callback=_print_version)] = False,
) -> None:
    """Set up logging; Lightning's own INFO lines (accelerator, tips) are shown with --verbose only."""
    level = logging.INFO if verbose else logging.WARNING
    if not is_rank_zero():
        level = logging.ERROR  # the other processes of a distributed run: rank 0 reports
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level == logging.INFO:  # also where basicConfig does nothing (a handler there before): Lightning's lines too
        logging.getLogger("transferlab").setLevel(level)
    _LIGHTNING_LINES.setLevel(level)
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).handlers = [_LIGHTNING_LINES]  # also instead of Lightning's own, if it came first
        logging.getLogger(name).propagate = False


class _StderrLines(logging.StreamHandler):
    """Bare lines to whatever `sys.stderr` is when one is logged (tests swap it between commands)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_LIGHTNING_LINES = _StderrLines()
"""Lightning's log lines, bare as Lightning prints them, at the level `_main` sets: its loggers are set up here,
before Lightning is imported (only commands that train import it), since its import sets them to INFO."""


def _merge_config(ctx: typer.Context, config_file: Path | None, values: dict) -> tuple[dict, set[str]]:
    """`values` (config field -> flag value) over a config file's settings: only flags typed on the command line win;
    and the fields whose value came from the file."""
    if config_file is None:
        return values, set()
    import yaml

    try:
        saved = yaml.safe_load(config_file.read_text())
    except OSError as error:
        _fail(f"--config {config_file}: cannot read it ({error.strerror or error})")
    except yaml.YAMLError as error:
        from .files import yaml_error_reason

        _fail(f"--config {config_file}: not valid YAML ({yaml_error_reason(error)})")
    saved = saved.get("config", saved) if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        _fail(f"--config {config_file}: expected a mapping of settings (a run's config.yaml or your own)")
    given = {field for field in values if _typed(ctx, field)}
    return {**saved, **{field: values[field] for field in given}}, set(saved) - given


def _flag_values(parameters: dict[str, Any], model: type[RunSettings]) -> dict[str, Any]:
    """A command's parameters that are `model`'s fields, as field values: paths as text, an unset list empty."""
    values = {name: str(value) if isinstance(value, Path) else value for name, value in parameters.items() if name in model.model_fields}
    values["augment_set"] = values["augment_set"] or []
    return values


def _validated(model: type[RunSettings], values: dict[str, Any], config_file: Path | None = None, from_file: AbstractSet[str] = frozenset()) -> Any:
    """`values` as `model`; a wrong setting is one line and exit 2 (`_validation_message` names it)."""
    try:
        return model(**values)
    except ValidationError as error:
        _fail(_validation_message(error, config_file, from_file))


def _configure_and_run(
    model: type[RunSettings], values: dict[str, Any], run: Callable[[Any], Any], config_file: Path | None = None,
    from_file: AbstractSet[str] = frozenset(),
) -> Any:
    """Validate `values` as `model` and run it: bad input is one line and exit 2 (a setting from `config_file`, one of
    `from_file`, named as its key there). None on the processes of a distributed run other than rank 0 (it alone reports)."""
    config = _validated(model, values, config_file, from_file)
    with _one_line_errors():
        result = run(config)
    return result if is_rank_zero() else None


def _typed(ctx: typer.Context, name: str) -> bool:
    """Was the flag given on the command line (not left at its default)?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _train(ctx: typer.Context, parameters: dict[str, Any]) -> None:
    from .experiment import train as run_training

    values = _flag_values(parameters, TrainConfig)
    values["out"] = str(parameters["out"] or Path("runs") / parameters["strategy"])
    config_file, resume = parameters["config_file"], parameters["resume"]
    if resume is not None:
        if config_file is not None:
            _fail("give --resume RUN or --config FILE, not both")
        config_file = resume / "config.yaml"
        if not config_file.is_file():
            _fail(f"--resume {resume}: no run there (no config.yaml)")
    values, from_file = _merge_config(ctx, config_file, values)
    if resume is not None:
        values["out"] = str(resume)
    if not values.get("data"):
        _fail("DATA is missing: give a folder, a CSV manifest or stanford-dogs (or --config with a data setting)")
    run = _configure_and_run(TrainConfig, values, run_training, config_file, from_file)
    if run is None:
        return
    for name, metrics in run.read_metrics().items():
        console.print(
            f"{name}: val_acc {metrics['val_acc']:.3f} (best {metrics['best_val_acc']:.3f} at epoch "
            f"{metrics['best_epoch']}), val_loss {metrics['val_loss']:.3f}, {metrics['epochs']} epochs, "
            f"{metrics['seconds']:.0f} s" + (f" + {metrics['feature_seconds']:.0f} s to cache features" if metrics.get("feature_seconds") else ""),
            highlight=False,
        )
    console.print(f"run directory: {run.path}")


train = app.command("train", help="Train a classifier with one strategy; writes history, checkpoints, metrics and plots to the run directory.")(
    _config_command(
        TrainConfig, _train,
        first=[
            _option("data", Annotated[Optional[str], typer.Argument(metavar="DATA", help=RunSettings.model_fields["data"].description, show_default=False)]),
            _option("config_file", Annotated[Optional[Path], typer.Option("--config", help="A config.yaml (a run directory's, or your own): its settings, with the flags given on the command line taking precedence.")]),
            _option("resume", Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this directory, with its own settings (the same as running its command again).")]),
        ],
        spelled={
            "data": None,
            "out": _option("out", Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<strategy>).")]),
            "strategy": _option("strategy", Annotated[str, typer.Option(help=STRATEGIES_HELP)], "frozen"),
            "lr": _option("lr", Annotated[Optional[str], typer.Option(help=TrainConfig.model_fields["lr"].description)]),
        },
    )
)


def _per_strategy(values: list[str] | None, flag: str, cast) -> dict[str, float]:
    """`--epochs 3` (every strategy) or `--epochs frozen=5` (repeatable) as {strategy: value}."""
    result: dict[str, float] = {}
    for value in values or []:
        name, _, number = value.rpartition("=")
        try:
            parsed = cast(number)
        except ValueError:
            _fail(f"{flag}: expected a number or strategy=number{' (or find)' if flag == '--lr' else ''}, got {value!r}")
        for strategy in [name] if name else strategy_names():
            if strategy not in strategy_names():
                _fail(f"{flag}: unknown strategy {strategy!r} in {value!r} ({', '.join(strategy_names())})")
            result[strategy] = parsed
    return result


def _compare(ctx: typer.Context, parameters: dict[str, Any]) -> None:
    from .experiment import compare as run_compare

    values = _flag_values(parameters, CompareConfig)
    values["epochs"] = _per_strategy(parameters["epochs"], "--epochs", int)
    values["lr"] = _per_strategy(parameters["lr"], "--lr", lambda value: value if value == "find" else float(value))
    values["strategies"] = [name.strip() for name in (parameters["strategies"] or "").split(",") if name.strip()]
    run = _configure_and_run(CompareConfig, values, run_compare)
    if run is None:
        return
    _print_summary(run)
    console.print(f"report: {run.report_file}")


compare = app.command("compare", help=(
    "The notebook's experiment: several strategies (scratch, frozen and finetune from the frozen model by default) "
    "on one split, evaluated, diagnosed and reported (report.html, report.md) in one run directory."
))(
    _config_command(
        CompareConfig, _compare,
        first=[_option("data", DataArgument, ...)],
        spelled={
            "data": None,
            "out": _option("out", Annotated[Path, typer.Option(help="Run directory.")], Path("runs/compare")),
            "strategies": _option("strategies", Annotated[Optional[str], typer.Option(help=(
                CompareConfig.model_fields["strategies"].description + " Registered: " + ", ".join(strategy_names()) + "."
            ), show_default=False)], None),
        },
    )
)


@app.command()
def strategies() -> None:
    """The registered training strategies: what each trains, what it continues from, its recipes' defaults."""
    from .train.auto import auto_summary

    out = Console(soft_wrap=True)
    for name in strategy_names():
        strategy = get_strategy(name)
        recipes = ", ".join(
            auto_summary(strategy) if recipe == "auto" else f"{recipe} {d.epochs} epochs at lr {d.lr:g}" for recipe, d in strategy.recipes.items()
        )
        continues = f"; continues from {strategy.starts_from}" if strategy.starts_from and "continues from" not in strategy.summary else ""
        out.print(f"{name}: {strategy.summary}{continues} ({recipes})", highlight=False)


@app.command()
def info(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """This machine as a run sees it: versions, the CPU and its extensions (what `auto` chooses here, and why), GPUs,
    the fast runtimes installed and what the cache folder holds. Paste it into a bug report."""
    import json

    from .machine import machine_info

    described = machine_info(data_dir)
    if as_json:
        typer.echo(json.dumps(described.as_dict(), indent=2))
        return
    rows = described.lines()
    width = max(len(label) for label, _ in rows)
    out = Console(soft_wrap=True)
    for label, text in rows:
        out.print(f"{label:<{width}}  {text}", highlight=False, markup=False)


def _print_summary(run) -> None:
    """Per strategy: accuracy of the best model, its epoch and time; then the recommendation."""
    import json

    for name, values in run.read_metrics().items():
        accuracy = f"accuracy {values['accuracy']:.3f}, " if "accuracy" in values else ""
        features = f" + {values['feature_seconds']:.0f} s to cache features" if values.get("feature_seconds") else ""
        console.print(
            f"{name}: {accuracy}best val_acc {values['best_val_acc']:.3f} at epoch {values['best_epoch']}, "
            f"{values['epochs']} epochs, {values['seconds']:.0f} s{features}",
            highlight=False,
        )
    if run.diagnosis_file.is_file():
        for finding in json.loads(run.diagnosis_file.read_text()):
            if finding["topic"] in ("finetune", "choice"):
                console.print(finding["text"], highlight=False)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (from tlab train or tlab compare).")],
    data: Annotated[Optional[str], typer.Option(help="Evaluate on another labelled set with the same classes (its val split, or every photo when it has none).")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="The strategy whose metrics are printed in full (default: the one the run recommends).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON (top-1 under 'accuracy').")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    runtime: RuntimeOption = "auto",
    inference_precision: InferencePrecisionOption = "auto",
    tta: TtaOption = False,
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
) -> None:
    """Accuracy, top-5, macro-F1, per-class accuracy, confusion matrix, most-confused classes, the most confident
    mistakes and predictions.csv for every trained strategy of a run."""
    import json

    from .data.resolve import DataSpec
    from .evaluate.evaluation import evaluation_dir
    from .experiment import Experiment
    from .inference import best_strategy
    from .models.precision import check_precision
    from .models.runtime import check_runtime

    with _one_line_errors():
        check_runtime(runtime)
        check_precision(inference_precision)
        spec = DataSpec(data, breeds, data_dir=data_dir, source_url=source_url) if data else None
        experiment = Experiment.open(run_dir, batch_size=batch_size, runtime=runtime)
        results = experiment.evaluate(spec, inference_precision, tta)
        where = evaluation_dir(experiment.run, spec)
        chosen = strategy or best_strategy(experiment.run)
    if chosen not in results:
        _fail(f"--strategy {chosen}: the run has {', '.join(results)}")
    if as_json:
        payload = {"strategy": chosen, **results[chosen], "strategies": {k: {m: v[m] for m in ("accuracy", "top5_accuracy", "macro_f1", "n_images")} for k, v in results.items()}}
        typer.echo(json.dumps(payload, indent=2))
        return
    out = Console(soft_wrap=True)
    for name, metrics in results.items():
        out.print(
            f"{name}: accuracy {metrics['accuracy']:.3f}, top-5 {metrics['top5_accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f} on {metrics['n_images']} photos; {calibration_line(metrics['calibration'])}",
            highlight=False,
        )
        for pair in metrics["most_confused"][:3]:
            out.print(f"  {pair['true']} taken for {pair['predicted']}: {pair['count']}", highlight=False)
    out.print(f"predictions, confusion matrices and mistakes: {where.path}", highlight=False)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")]) -> None:
    """Rebuild report.html and report.md from the run directory alone."""
    from .inference import run_explainer
    from .report.html import build_report
    from .rundir import RunDir

    run = RunDir(run_dir)
    if not run.config_file.is_file() or not run.history_file.is_file():
        _fail(f"{run_dir}: not a run directory (no config.yaml and history.csv)")
    with _one_line_errors():
        html, markdown = build_report(run, run_explainer(run))
    console.print(f"{html}\n{markdown}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory, a .ckpt checkpoint, or a model exported with tlab export (.onnx).")],
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Photos, folders (searched recursively) or glob patterns.")],
    strategy: Annotated[Optional[str], typer.Option(help="Which strategy's model of a run directory (default: the one the run recommends: the most accurate, unless a cheaper one is not significantly worse).")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=1000, help="Answers per photo.")] = 5,
    output_format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    runtime: Annotated[str, typer.Option(help="torch, or auto / openvino / onnxruntime (faster for many photos; exported on first use).")] = "torch",
    inference_precision: InferencePrecisionOption = "auto",
    min_confidence: MinConfidenceOption = 0.0,
    tta: TtaOption = False,
) -> None:
    """Label new photos with a trained model: the top-k classes and their calibrated probabilities."""
    import csv
    import json
    import sys

    from rich.progress import Progress

    from .inference import expand_paths, load

    if output_format not in ("table", "csv", "json"):
        _fail(f"--format: expected table, csv or json, got {output_format!r}")
    with _one_line_errors():
        predictor = load(run_dir, strategy, runtime, inference_precision, tta)
        files = expand_paths(paths)
    if not files:
        _fail(f"no image files in {' '.join(paths)}")
    with Progress(console=console, transient=True, disable=len(files) < 64) as bar:
        task = bar.add_task("predicting", total=len(files))
        results = predictor.predict(files, top_k, progress=lambda n: bar.advance(task, n), min_confidence=min_confidence)
    for result in results:
        if result.error:
            console.print(f"[yellow]skipped[/] {result.error}", highlight=False)
    answered = [r for r in results if not r.error]
    if output_format == "json":
        typer.echo(json.dumps([r.as_dict() for r in answered], indent=2))
    elif output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["path", "rank", "label", "class", "probability", "raw_probability", "not_sure"])
        for r in answered:
            for rank, p in enumerate(r.predictions, start=1):
                writer.writerow([r.path, rank, p.label, p.class_name, f"{p.probability:.6f}", f"{p.raw_probability:.6f}", r.not_sure or ""])
    else:
        out = Console(soft_wrap=True)
        for r in answered:
            answers = ", ".join(f"{p.label} {p.probability:.1%}" for p in r.predictions)
            out.print(f"{r.path}: {'NOT SURE — ' if r.not_sure else ''}{answers}", highlight=False)
    if len(answered) < len(results):
        raise typer.Exit(FOUND_ERRORS)


@app.command("lr-find")
def lr_find(
    data: DataArgument,
    strategy: Annotated[str, typer.Option(help="The strategy whose learning rate to find (frozen: the head on cached features, in seconds).")] = "frozen",
    out: Annotated[Path, typer.Option(help="Run directory (a continuing strategy trains its base there first); the plot goes into it.")] = Path("runs/lr-find"),
    image_size: Annotated[Optional[int], typer.Option(min=32, max=1024, help="Input size (default: the backbone's).")] = None,
    batch_size: Annotated[int, typer.Option(min=2, max=4096, help="Images per batch.")] = 64,
    backbone: Annotated[str, typer.Option(help="Backbone, as in tlab train.")] = DEFAULT_BACKBONE,
    steps: Annotated[int, typer.Option(min=10, max=10_000, help="Steps of the ramp.")] = 100,
    min_lr: Annotated[float, typer.Option(min=1e-10, max=1, help="First learning rate of the ramp.")] = 1e-6,
    max_lr: Annotated[float, typer.Option(min=1e-8, max=100, help="Last learning rate of the ramp.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the split and the batches.")] = 42,
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
) -> None:
    """The learning-rate range test: loss against an exponentially growing rate, a suggested rate and its plot."""
    from .experiment import Experiment

    with _one_line_errors():
        experiment = Experiment(data, out, image_size=image_size, batch_size=batch_size, backbone=backbone, seed=seed,
                                breeds=breeds, data_dir=data_dir, source_url=source_url)
        finding = experiment.found_lr(strategy, steps, max_lr, min_lr=min_lr)
        plot = experiment.run.plot_file(f"lr_find_{strategy}")
    console.print(f"{strategy}: suggested learning rate {finding.suggestion:.2g} ({finding.rule}); plot: {plot}", highlight=False)
    console.print(f"use it: tlab train {data} --strategy {strategy} --lr {finding.suggestion:.2g}", highlight=False)


def _whole_numbers(flag: str, value: str | None) -> list[int] | None:
    """`--points 1,5,10` as [1, 5, 10]; None when not given; positive whole numbers, else exit 2."""
    if not value:
        return None
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        _fail(f"{flag}: expected whole numbers from 1 up, separated by commas, got {value!r}")
    return numbers


@app.command("curve")
def curve(
    data: DataArgument,
    out: Annotated[Path, typer.Option(help="Run directory for curve.json and plots/curve.png (a run's own: its report, rebuilt by tlab report, shows the curve).")] = Path("runs/curve"),
    points: Annotated[Optional[str], typer.Option(help="Training photos per class to try, comma-separated (default 1,2,5,10,20,50,...; all of them is always the last point).")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=50, help="Draws per point (the band narrows with more).")] = 3,
    epochs: Annotated[int, typer.Option(min=1, max=1000, help="Epochs of the frozen head at each point.")] = 10,
    finetune: Annotated[Optional[str], typer.Option(help="Points (photos per class, comma-separated) where the finetune strategy also trains, on the first draw's photos from its frozen head (a few seconds to minutes each).")] = None,
    image_size: Annotated[Optional[int], typer.Option(min=32, max=1024, help="Input size (default: the backbone's).")] = None,
    backbone: Annotated[str, typer.Option(help="Backbone, as in tlab train.")] = DEFAULT_BACKBONE,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the first draw.")] = 42,
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
) -> None:
    """How many photos do you need? Validation accuracy of the frozen strategy against training photos per class."""
    from .experiment import Experiment

    chosen, tuned = (_whole_numbers(flag, value) for flag, value in (("--points", points), ("--finetune", finetune)))
    with _one_line_errors():
        experiment = Experiment(data, out, image_size=image_size, backbone=backbone, seed=seed, breeds=breeds,
                                data_dir=data_dir, source_url=source_url)
        result = experiment.curve(chosen, seeds, epochs, tuned or ())
    for line in result.table():
        console.print(line, highlight=False)
    console.print(result.verdict(), highlight=False)
    console.print(f"{experiment.run.plot_file('curve')}\n{experiment.run.curve_file}", highlight=False)


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory or a .ckpt checkpoint (an exported .onnx model has no gradients to explain with).")],
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Photos, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option(help="Folder for the overlays, one <photo>.gradcam.png each.")] = Path("explanations"),
    class_name: Annotated[Optional[str], typer.Option("--class", help="Explain this class (folder or readable name) instead of each photo's top answer.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Which strategy's model of a run directory (default: the one the run recommends).")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=20, help="Answers shown above each overlay.")] = 3,
) -> None:
    """Show what the model looked at: a Grad-CAM heatmap over each photo, with its top-k answers."""
    from .data.decode import UnreadableImageError
    from .explain.explanation import output_names
    from .inference import expand_paths, load

    with _one_line_errors():
        predictor = load(run_dir, strategy, "torch", "fp32")
        predictor.require_model()
        files = expand_paths(paths)
        if class_name is not None:
            predictor.class_index(class_name)
    if not files:
        _fail(f"no image files in {' '.join(paths)}")
    skipped = 0
    for path, name in zip(files, output_names(files)):
        try:
            explanation = predictor.explain(path, top_k, class_name)[0]
        except UnreadableImageError as error:
            console.print(f"[yellow]skipped[/] {error}", highlight=False)
            skipped += 1
            continue
        with _one_line_errors():
            written = explanation.save(out / name)
        console.print(f"{path}: {explanation.caption()} -> {written}", highlight=False, soft_wrap=True)
    if skipped:
        raise typer.Exit(FOUND_ERRORS)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory or a .ckpt checkpoint.")],
    output_format: Annotated[str, typer.Option("--format", help="onnx (the only format for now).")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="File to write (default RUN/model_<strategy>.onnx).")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Which strategy's model of a run directory (default: the one the run recommends: the most accurate, unless a cheaper one is not significantly worse).")] = None,
    photos: Annotated[int, typer.Option(min=1, max=1000, help="Validation photos for the parity check.")] = 32,
) -> None:
    """Export the whole classifier (preprocessing and class names in its metadata), then check it against PyTorch on real photos."""
    from .export import PARITY_TOLERANCE, export_and_check

    if output_format != "onnx":
        _fail(f"--format: only onnx is supported, got {output_format!r}")
    with _one_line_errors():
        written, report = export_and_check(run_dir, out, strategy, photos)
    console.print(f"exported {written} ({written.stat().st_size / 1e6:.1f} MB)")
    if report is None:
        console.print("parity check skipped: it needs the run directory's validation photos")
        return
    console.print(
        f"parity on {report.photos} validation photos: max relative logit difference "
        f"{report.max_relative_logit_difference:.1e} (limit {PARITY_TOLERANCE:.0e}), same top-1 on "
        f"{report.same_top1}/{report.photos}: {'OK' if report.passed else 'FAILED'}",
        highlight=False,
    )
    if not report.passed:
        raise typer.Exit(FOUND_ERRORS)


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory, a .ckpt checkpoint, or an exported .onnx model.")],
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only; 0.0.0.0: every network this machine is on).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    strategy: Annotated[Optional[str], typer.Option(help="Which strategy's model of a run directory (default: the one the run recommends: the most accurate, unless a cheaper one is not significantly worse).")] = None,
    max_mb: Annotated[float, typer.Option(min=0.01, max=1024, help="Largest upload accepted, per file, in MB.")] = 10.0,
    max_megapixels: Annotated[float, typer.Option(min=1, max=10_000, help="Pixels one request may make the server decode, in millions (JPEGs count at the reduced scale they decode at).")] = 100.0,
    token: Annotated[Optional[str], typer.Option(help="Require this token (Authorization: Bearer <token>; the page asks for it) on every endpoint but the page and /health. Default: $TLAB_SERVE_TOKEN.")] = None,
    inference_precision: InferencePrecisionOption = "auto",
    min_confidence: MinConfidenceOption = 0.0,
    tta: TtaOption = False,
) -> None:
    """A local web service (POST /predict, POST /explain, GET /classes, /health, /report, /openapi.json) and a page at / to try the model."""
    from .serve import TOKEN_ENV, is_loopback, resolve_token
    from .serve import serve as run_server

    token = resolve_token(token)
    if not is_loopback(host):
        console.print(
            f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this machine on port {port} can use the "
            "model and read its report" + ("" if token else f"; pass --token (or set {TOKEN_ENV}) to require a token"),
            highlight=False,
        )
    with _one_line_errors():
        run_server(run_dir, host, port, strategy, int(max_mb * 1024 * 1024), max_megapixels, token, inference_precision, min_confidence, tta)


data_app = typer.Typer(help="Look at a dataset before training on it.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _open_index(data: str, val_fraction: float, seed: int, breeds, data_dir, source_url, exit_code: int = USAGE_ERROR):
    from .data.resolve import DataSpec, open_data

    with _one_line_errors(exit_code):
        return open_data(DataSpec(data, breeds, val_fraction, seed, data_dir, source_url))


UNREADABLE_SHOWN = 20


@data_app.command("check")
def data_check(
    data: DataArgument,
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
    val_fraction: Annotated[float, typer.Option(help="Share of each class held out when DATA has no split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split when DATA has none.")] = 42,
) -> None:
    """Classes, photos per split, unreadable files, and identical photos in both train and val; exit 1 on errors."""
    from rich.table import Table

    from .data.photo_cache import PhotoCache
    from .data.scan import find_unreadable, thin_classes, train_val_duplicates

    index = _open_index(data, val_fraction, seed, breeds, data_dir, source_url, exit_code=FOUND_ERRORS)
    out = Console(soft_wrap=True)
    train_counts, val_counts = index.counts("train"), index.counts("val")
    table = Table(title=f"{data}: {len(index.classes)} classes", title_justify="left")
    for column, justify in (("#", "right"), ("folder", "left"), ("name", "left"), ("train", "right"), ("val", "right")):
        table.add_column(column, justify=justify)
    for i, (folder, name) in enumerate(zip(index.classes, index.readable_names)):
        table.add_row(str(i), folder, name, str(train_counts[folder]), str(val_counts[folder]))
    table.add_row("", "total", "", str(len(index.train)), str(len(index.val)), style="bold")
    out.print(table)

    photos = PhotoCache.in_cache(data_dir)
    unreadable = list(index.skipped) + find_unreadable([s.path for s in index.train + index.val], photos)
    for skipped in unreadable[:UNREADABLE_SHOWN]:
        out.print(f"unreadable: {skipped.path}: {skipped.reason}", highlight=False)
    if len(unreadable) > UNREADABLE_SHOWN:
        out.print(f"... and {len(unreadable) - UNREADABLE_SHOWN} more unreadable file(s)", highlight=False)
    duplicates = train_val_duplicates(index, photos)
    for group in duplicates:
        out.print(f"in train and val (identical): {', '.join(map(str, group.train + group.val))}", highlight=False)
    for folder, why in thin_classes(index, {skipped.path for skipped in unreadable}).items():
        out.print(f"too thin to learn or to judge: {folder}: {why}", highlight=False)
    errors = len(unreadable) + len(duplicates)
    out.print(
        f"{len(unreadable)} unreadable file(s), {len(duplicates)} photo(s) in both train and val"
        + ("" if errors else ": no errors")
    )
    if errors:
        raise typer.Exit(FOUND_ERRORS)


@data_app.command("audit")
def data_audit(
    data: DataArgument,
    out: Annotated[Path, typer.Option(help="Folder for audit.html (thumbnails by finding) and audit.csv (path,issue,score,suggested).")] = Path("audit"),
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
    val_fraction: Annotated[float, typer.Option(help="Share of each class held out when DATA has no split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split when DATA has none, and of the cross-validation.")] = 42,
    backbone: Annotated[str, typer.Option(help="Backbone whose features compare the photos (as in tlab train).")] = DEFAULT_BACKBONE,
) -> None:
    """Duplicates and train/val leaks, likely label errors, off-topic photos and class imbalance, from the pretrained
    backbone's features (cached: the frozen strategy reuses them). Advice only: exit 0, 1 when photos were unreadable."""
    from .audits.findings import audit_index, missing_packages
    from .data.resolve import data_title, load_index
    from .report.audit import write_audit

    if missing_packages():
        _fail(f"tlab data audit needs {', '.join(missing_packages())}: pip install 'transferlab[audit]'")

    settings = _validated(RunSettings, dict(data=data, out=str(out), breeds=breeds, data_dir=data_dir, source_url=source_url,
                                            val_fraction=val_fraction, seed=seed, backbone=backbone))
    with _one_line_errors():
        index = load_index(settings.data_spec)
        result = audit_index(settings, index)
        page, table = write_audit(result, out, f"Audit of {data_title(data)}")
    for line in result.summary():
        console.print(line, highlight=False)
    if index.skipped:
        console.print(f"{len(index.skipped)} unreadable file(s) left out (tlab data check lists them)", highlight=False)
    console.print(f"{page}\n{table}", highlight=False)
    if index.skipped:
        raise typer.Exit(FOUND_ERRORS)


@data_app.command("show")
def data_show(
    data: DataArgument,
    n: Annotated[int, typer.Option(min=1, max=100, help="Number of photos in the grid (9: the notebook's 3x3).")] = 9,
    image_size: Annotated[int, typer.Option(min=32, max=1024, help="Side of each photo in the grid, in pixels.")] = 224,
    seed: Annotated[int, typer.Option(help="Seed of the photos picked (and of the split when DATA has none).")] = 0,
    out: Annotated[Path, typer.Option(help="PNG of the grid; the bar chart goes beside it as <name>_counts.png.")] = Path("samples.png"),
    breeds: BreedsOption = None,
    data_dir: DataDirOption = None,
    source_url: SourceUrlOption = None,
    val_fraction: Annotated[float, typer.Option(help="Share of each class held out when DATA has no split.")] = 0.2,
) -> None:
    """A grid of random training photos titled with their class, and a bar chart of images per class."""
    from .report.plots import class_counts_figure, sample_grid_figure, save_figure

    index = _open_index(data, val_fraction, seed, breeds, data_dir, source_url)
    counts_file = out.with_name(f"{out.stem}_counts{out.suffix or '.png'}")
    save_figure(sample_grid_figure(index, n, seed, image_size), out)
    save_figure(class_counts_figure(index), counts_file)
    console.print(f"{out}\n{counts_file}")


augment_app = typer.Typer(help="See what data augmentation does to a photo.", no_args_is_help=True)
app.add_typer(augment_app, name="augment")


@augment_app.command("show")
def augment_show(
    source: Annotated[str, typer.Argument(help="An image file, or DATA (a folder, a CSV manifest, stanford-dogs): a seeded random training photo is used.")],
    preset: Annotated[str, typer.Option(help="none, seed-keras, seed-all, or a YAML file listing ops.")] = "seed-keras",
    augment_set: Annotated[Optional[list[str]], typer.Option("--augment-set", help="Override one op setting, op.param=value (repeatable).")] = None,
    n: Annotated[int, typer.Option(min=1, max=64, help="Number of augmented copies.")] = 9,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random draws (and of the photo picked from a folder).")] = 0,
    per_op: Annotated[bool, typer.Option("--per-op", help="One row per op at its weakest, middle and strongest setting.")] = False,
    image_size: Annotated[int, typer.Option(min=32, max=1024, help="Size the photo is resized and cropped to.")] = 224,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("augment.png"),
) -> None:
    """Draw a grid of the original photo and augmented copies, each captioned with the ops and parameters it got."""
    from .augment.gallery import gallery_figure, gallery_image, per_op_figure
    from .augment.pipeline import Pipeline
    from .report.plots import save_figure

    with _one_line_errors():
        pipeline = Pipeline.from_config(preset, augment_set or [])
        image, path = gallery_image(source, image_size, seed)
    if not pipeline.ops:
        _fail(f"preset {preset!r} has no ops to show")
    figure = per_op_figure(image, pipeline) if per_op else gallery_figure(image, pipeline, n, seed)
    save_figure(figure, out)
    console.print(f"{path} -> {out}")


@augment_app.command("check")
def augment_check(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (from tlab train or tlab compare).")],
    strategy: Annotated[Optional[str], typer.Option(help="Whose model (default: the one the run recommends).")] = None,
    augment: Annotated[Optional[str], typer.Option(help="Check these ops instead of the run's: a preset or a YAML file.")] = None,
    photos: Annotated[int, typer.Option(min=10, max=100_000, help="Validation photos used (a seeded sample).")] = 500,
) -> None:
    """Is each augmentation label-preserving for this data? The model's accuracy on validation photos changed by one op
    at a time, against the clean photos; ops that cost far more than the others are flagged (augment_check.json, report)."""
    from .experiment import Experiment

    with _one_line_errors():
        record = Experiment.open(run_dir).check_augmentation(strategy, augment, photos)
    for line in record["summary"]:
        console.print(line, highlight=False)
    console.print(f"{Path(run_dir) / 'augment_check.json'}", highlight=False)


def main() -> None:
    """`tlab`: a full disk, wherever it happens, is one line and exit code 1 (a fault, not bad input)."""
    from .files import is_disk_full

    try:
        app()
    except OSError as error:
        if not is_disk_full(error):
            raise
        _print_disk_full(error)
        sys.exit(FOUND_ERRORS)


def _print_disk_full(error: OSError) -> None:
    where = f" while writing {error.filename}" if error.filename else ""
    console.print(f"[bold red]error:[/] disk full{where}; free space and run the same command to resume", highlight=False)


if __name__ == "__main__":
    main()
