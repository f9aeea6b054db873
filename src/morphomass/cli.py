"""The ``morphomass`` command line (DESIGN §1): one subcommand per stage, plus ``run`` and ``predict``.

Exit status: 0 on success; 2 for bad input, configuration or work directory (one line on stderr naming the
file or field: every :class:`~morphomass.errors.MorphomassError`, and a user's file that is not UTF-8, not
JSON, nested too deeply or not readable); 1 for a bug (one line; ``-v`` shows the traceback). The commands
that write into the work directory hold its lock; ``--wait`` waits for another process holding it. Only this
module configures logging. Heavy libraries (torch, lightgbm) are imported by the stages themselves, so
``--help`` stays fast. After ``morphomass run`` a table gives each stage's status, wall-clock and CPU time
and key figures; the full stage summaries are in ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from morphomass import __version__
from morphomass.config import PRESETS, PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError, MorphomassError
from morphomass.pipeline import (
    PipelineSummary,
    distributed_launch,
    execute_predict,
    execute_stage,
    make_mock_preview,
    run_pipeline,
)
from morphomass.workdir import StageResult, WorkDir, cores_busy, load_manifest, workdir_lock

__all__ = ["cli", "key_figures", "main", "summary_table"]

logger = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path("morphomass-work")
#: CNN names accepted by ``train-cnn --nets`` besides the configured ones (CNN4 is a switch, not a backbone).
CNN4 = "cnn4"


def _configure_logging(verbose: bool, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("morphomass").setLevel(level)


class _State:
    """Options of the command group, shared with the subcommands."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet


def _common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every subcommand takes: --workdir, --preset, --config, --force."""
    options = [
        click.option(
            "--workdir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_WORKDIR,
            show_default=True,
            help="Work directory (raw/, sample.parquet, models/, results/, manifest.json).",
        ),
        click.option(
            "--preset",
            type=click.Choice(sorted(PRESETS)),
            default="quick",
            show_default=True,
            help="Configuration preset: paper (SPEC exactly), quick (minutes on a laptop), tiny (tests).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="TOML file overriding values of the preset (same tables as the configuration sections).",
        ),
        click.option(
            "--force", is_flag=True, help="Redo the stage even if the manifest shows it is up to date."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _wait_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --wait to a command that writes into the work directory."""
    return click.option(
        "--wait",
        is_flag=True,
        help="If another morphomass process is using the work directory, wait for it instead of exiting.",
    )(func)


def _progress() -> bool:
    """Progress bars are shown unless the group's ``--quiet`` was given."""
    state = click.get_current_context().find_object(_State)
    return not (state and state.quiet)


def _report_stage(result: StageResult) -> None:
    if result.skipped:
        click.echo(f"{result.stage}: up to date, skipped (use --force to redo it)")
        return
    outputs = ", ".join(result.outputs) or "-"
    click.echo(
        f"{result.stage}: done in {result.seconds:.1f} s ({result.cpu_seconds:.1f} CPU-s); outputs: {outputs}"
    )
    for key, value in result.summary.items():
        click.echo(f"  {key}: {value}")


def _run_stage(name: str, config: PipelineConfig, workdir: Path, force: bool, wait: bool) -> None:
    result = execute_stage(name, config, WorkDir(workdir), force=force, progress=_progress(), wait=wait)
    _report_stage(result)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="morphomass")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging details.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Stellar mass-to-light ratios from galaxy images and morphology (Dobbels et al. 2019)."""
    if verbose and quiet:
        msg = "--verbose and --quiet exclude each other"
        raise click.UsageError(msg)
    _configure_logging(verbose, quiet)
    ctx.obj = _State(quiet=quiet)


@cli.command()
@_common_options
@_wait_option
@click.option(
    "--n-galaxies", type=int, default=None, help="Galaxies with images in the survey (mock.n_galaxies)."
)
@click.option("--seed", type=int, default=None, help="Random seed of the survey (mock.seed).")
@click.option("--preview", is_flag=True, help="Also write a preview figure of the survey and print its path.")
def mock(
    workdir: Path,
    preset: str,
    config_path: Path | None,
    force: bool,
    wait: bool,
    n_galaxies: int | None,
    seed: int | None,
    preview: bool,
) -> None:
    """Write raw/ with the built-in synthetic survey (real formats)."""
    overrides = {k: v for k, v in {"n_galaxies": n_galaxies, "seed": seed}.items() if v is not None}
    config = load_config(preset, config_path, {"mock": overrides} if overrides else None)
    distributed_launch("mock")  # refused on a rank of torchrun/srun before the lock is taken
    with workdir_lock(WorkDir(workdir), wait=wait):
        _run_stage("mock", config, workdir, force, wait)
        if preview:
            click.echo(f"preview: {make_mock_preview(config, WorkDir(workdir))}")


@cli.command()
@_common_options
@_wait_option
@click.option("--limit", type=int, default=None, help="Download at most N galaxies (fetch.limit).")
@click.option(
    "--region",
    type=float,
    nargs=4,
    default=None,
    metavar="RA1 RA2 DEC1 DEC2",
    help="Only this sky box, degrees; RA1 > RA2 wraps through RA 0 (fetch.region).",
)
def fetch(
    workdir: Path,
    preset: str,
    config_path: Path | None,
    force: bool,
    wait: bool,
    limit: int | None,
    region: tuple[float, float, float, float] | None,
) -> None:
    """Download raw/ from the real archives (network); --force fetches what an earlier run missed."""
    options = {"limit": limit, "region": list(region) if region else None}
    overrides = {k: v for k, v in options.items() if v is not None}
    config = load_config(preset, config_path, {"fetch": overrides} if overrides else None)
    _run_stage("fetch", config, workdir, force, wait)


@cli.command()
@_common_options
@_wait_option
def catalog(workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool) -> None:
    """raw/ -> sample.parquet (cross-match, selection, targets, split)."""
    _run_stage("catalog", load_config(preset, config_path), workdir, force, wait)


@cli.command()
@_common_options
@_wait_option
@click.option("--workers", type=int, default=None, help="Worker processes of the local Dask cluster.")
@click.option(
    "--scheduler", default=None, metavar="ADDR", help="Address of a running Dask scheduler instead."
)
def preprocess(
    workdir: Path,
    preset: str,
    config_path: Path | None,
    force: bool,
    wait: bool,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """sample.parquet + raw/images -> images.zarr, features/photometric.parquet."""
    if workers is not None and scheduler is not None:
        msg = "--workers and --scheduler exclude each other"
        raise click.UsageError(msg)
    overrides = {k: v for k, v in {"workers": workers, "scheduler": scheduler}.items() if v is not None}
    config = load_config(preset, config_path, {"preprocess": overrides} if overrides else None)
    _run_stage("preprocess", config, workdir, force, wait)


def _select_nets(config: PipelineConfig, nets: str) -> None:
    wanted = [n.strip() for n in nets.split(",") if n.strip()]
    known = [*config.cnn.nets, CNN4]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        msg = f"--nets: expected a comma-separated subset of {known}, got {nets!r}"
        raise ConfigError(msg)
    config.cnn.nets = {name: net for name, net in config.cnn.nets.items() if name in wanted}
    config.cnn.train_cnn4 = CNN4 in wanted


@cli.command("train-cnn")
@_common_options
@_wait_option
@click.option("--nets", default=None, metavar="cnn1,cnn2,cnn3,cnn4", help="Train only these networks.")
def train_cnn(
    workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool, nets: str | None
) -> None:
    """-> models/cnn/ (the GZ2 networks and CNN4)."""
    config = load_config(preset, config_path)
    if nets is not None:
        _select_nets(config, nets)
    _run_stage("train-cnn", config, workdir, force, wait)


@cli.command()
@_common_options
@_wait_option
def extract(workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool) -> None:
    """-> features/cnn.parquet (CNN outputs and trunk features)."""
    _run_stage("extract", load_config(preset, config_path), workdir, force, wait)


@cli.command("train-gbm")
@_common_options
@_wait_option
def train_gbm(workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool) -> None:
    """-> models/gbm/ (every GBM experiment, its predictions and importances)."""
    _run_stage("train-gbm", load_config(preset, config_path), workdir, force, wait)


@cli.command()
@_common_options
@_wait_option
def bundle(workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool) -> None:
    """-> models/bundle.json (the prediction bundle of the trained models, for 'morphomass predict')."""
    _run_stage("bundle", load_config(preset, config_path), workdir, force, wait)


@cli.command()
@_common_options
@_wait_option
@click.option(
    "--experiments", default=None, metavar="all|NAMES", help="'all' or comma-separated experiment names."
)
def evaluate(
    workdir: Path,
    preset: str,
    config_path: Path | None,
    force: bool,
    wait: bool,
    experiments: str | None,
) -> None:
    """-> results/metrics.json, results/figures/*.png, results/report.html."""
    overrides = None
    if experiments is not None:
        names = [n.strip() for n in experiments.split(",") if n.strip()]
        overrides = {"evaluate": {"experiments": names}}
    _run_stage("evaluate", load_config(preset, config_path, overrides), workdir, force, wait)


#: Experiments quoted in the final summary of ``morphomass run`` (DESIGN §4 names), as (label, name).
_SUMMARY_EXPERIMENTS: tuple[tuple[str, str], ...] = (
    ("g-band + morphology", "g_morph"),
    ("reference L_g + z", "reference_lg_z"),
    ("constant", "constant"),
    ("g+i + morphology", "gi_morph"),
    ("g+i GBM", "gi_gbm"),
)


def _split(counts: Mapping[str, Any]) -> str:
    return "/".join(str(counts[name]) for name in ("train", "val", "test"))


def _net_losses(nets: Mapping[str, Any]) -> str:
    return "val loss " + ", ".join(f"{name} {net['best_val_loss']:.3g}" for name, net in nets.items())


def _net_status(nets: Mapping[str, Any]) -> str:
    trained = [name for name, net in nets.items() if net["status"] == "trained"]
    kept = [name for name in nets if name not in trained]
    return f"{len(trained)} trained" + (f", {len(kept)} kept" if kept else "")


#: Key figures of each stage's summary (:attr:`StageResult.summary`) in the run summary; a figure whose keys
#: a summary lacks is left out. The full summaries are in the manifest.
_FIGURES: dict[str, tuple[Callable[[Mapping[str, Any]], str], ...]] = {
    "mock": (
        lambda s: f"{s['galaxies_with_images']} galaxies with images",
        lambda s: f"{s['gswlc_rows']} GSWLC rows",
        lambda s: f"{s['stars_catalogued']} stars",
    ),
    "fetch": (
        lambda s: f"{s['targets']} targets",
        lambda s: f"{s['images_written'] + s['images_kept']} images",
        lambda s: f"{s['failures']} failures",
    ),
    "catalog": (
        lambda s: f"sample {s['sample']}",
        lambda s: f"train/val/test {_split(s['split'])}",
        lambda s: f"GZ2 matched {100 * s['gz2_match_fraction']:.0f} %",
    ),
    "preprocess": (
        lambda s: f"{s['preprocessed']} ok, {s['failed']} failed",
        lambda s: f"median a {s['median_scaling_a']:.3g}",
    ),
    "train-cnn": (lambda s: _net_status(s["nets"]), lambda s: _net_losses(s["nets"])),
    "extract": (
        lambda s: f"{s['n_galaxies']} galaxies",
        lambda s: f"{s['n_features']} features ({s['n_dropped']} dead dropped)",
    ),
    "train-gbm": (
        lambda s: f"{s['experiments']} experiments",
        lambda s: f"train/val/test {_split(s['galaxies'])}",
        lambda s: f"g_morph val loss {s['g_morph_val_loss']:.3g}",
    ),
    "bundle": (
        lambda s: "models " + ", ".join(s["models"]),
        lambda s: f"{s['files']} files",
        lambda s: f"{s['n_train']} training galaxies",
    ),
    "evaluate": (
        lambda s: f"{s['test_galaxies']} test galaxies",
        lambda s: f"g_morph L1~ {s['l1_g_morph']:.2f}",
        lambda s: f"reference L1~ {s['l1_reference_lg_z']:.2f}",
    ),
}


def key_figures(stage: str, summary: Mapping[str, Any]) -> str:
    """Return the two or three key figures of a stage's summary, comma-separated (see :data:`_FIGURES`)."""
    figures = []
    for figure in _FIGURES.get(stage, ()):
        try:
            figures.append(figure(summary))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return ", ".join(figures)


def _key_results(summary: PipelineSummary, workdir: WorkDir) -> list[str]:
    """Lines with the main test metrics, the report and the bundle, when the evaluate stage is up to date."""
    evaluate = next((o for o in summary.outcomes if o.stage == "evaluate"), None)
    if evaluate is None or evaluate.status not in ("ran", "skipped"):
        return []
    lines = []
    try:
        experiments = json.loads(workdir.metrics.read_text(encoding="utf-8"))["experiments"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("cannot quote the metrics of %s (%s)", workdir.metrics, err)
        experiments = {}
    quoted = [(label, experiments[name]) for label, name in _SUMMARY_EXPERIMENTS if name in experiments]
    if quoted:
        n_test = quoted[0][1].get("n_test", "?")
        parts = [f"{label} {m['l1']:.2f}" for label, m in quoted]
        lines.append(f"test L1~ ({n_test} galaxies): " + ", ".join(parts))
        main = experiments.get("g_morph")
        if main is not None:
            lines.append(
                f"g-band + morphology: RMSLE {main['rmsle']:.3f} dex, "
                f"{100 * main['frac_within_015dex']:.1f} % within 0.15 dex"
            )
    for label, path in (
        ("metrics", workdir.metrics),
        ("report", workdir.report),
        ("prediction bundle", workdir.bundle_manifest),
    ):
        if path.exists():
            lines.append(f"{label}: {path}")
    return lines


def _recorded_seconds(value: float | None) -> str:
    """Format a time the manifest recorded for a skipped stage: in parentheses, or ``-`` if none."""
    return "-" if value is None else f"({value:.1f})"


def summary_table(summary: PipelineSummary, workdir: WorkDir) -> list[str]:
    """Return the lines of the run summary: per stage its status, wall and CPU seconds and key figures.

    A skipped stage shows, in parentheses, the times of the run that made its outputs, and the key figures of
    that run, as the manifest recorded them.
    """
    recorded = load_manifest(workdir)["stages"] if workdir.manifest.exists() else {}
    rows = [("stage", "status", "wall s", "CPU s", "cores", "key figures")]
    for outcome in summary.outcomes:
        record = recorded.get(outcome.stage, {})
        if outcome.status == "ran":
            wall, cpu, details = f"{outcome.seconds:.1f}", f"{outcome.cpu_seconds:.1f}", outcome.summary
            busy = f"{cores_busy(outcome.cpu_seconds, outcome.seconds):.2f}"
        elif outcome.status == "skipped":
            wall = _recorded_seconds(record.get("seconds"))
            cpu = _recorded_seconds(record.get("cpu_seconds"))
            busy = "-" if record.get("cores_busy") is None else f"({record['cores_busy']:.2f})"
            details = record.get("summary") or {}
        else:
            wall, cpu, busy, details = "-", "-", "-", {}
        rows.append((outcome.stage, outcome.status, wall, cpu, busy, key_figures(outcome.stage, details)))
    total_busy = f"{cores_busy(summary.cpu_seconds, summary.seconds):.2f}"
    rows.append(("total", "", f"{summary.seconds:.1f}", f"{summary.cpu_seconds:.1f}", total_busy, ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            *(c.rjust(w) for c, w in zip(row[2:5], widths[2:5], strict=True)),
        ]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    return lines


def _print_summary(summary: PipelineSummary, workdir: WorkDir) -> None:
    for line in summary_table(summary, workdir):
        click.echo(line)
    click.echo(
        "CPU s: user + system time of morphomass and of the worker processes it waited for; cores: CPU s / "
        "wall s (cores busy); in parentheses: the run that made a skipped stage's outputs"
    )
    for line in _key_results(summary, workdir):
        click.echo(line)


@cli.command()
@_common_options
@_wait_option
def run(workdir: Path, preset: str, config_path: Path | None, force: bool, wait: bool) -> None:
    """Run every stage; make the mock survey first if raw/ is empty."""
    config = load_config(preset, config_path)
    summary = run_pipeline(config, WorkDir(workdir), force=force, progress=_progress(), wait=wait)
    _print_summary(summary, WorkDir(workdir))


@cli.command()
@_common_options
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model bundle folder (a work directory's models/).",
)
@click.option(
    "--images",
    "images_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of FITS images, <band>/<objid>.fits.",
)
@click.option(
    "--catalog",
    "catalog_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue of the galaxies (objid, ra, dec, z, ...).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Output table: CSV, FITS or Parquet, chosen by the extension; with --workers or --scheduler a "
    "folder of Parquet files, one per partition (a rerun skips the finished ones).",
)
@click.option(
    "--stars",
    "stars_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Star catalogue (ra, dec, type) whose stars are subtracted from the images; none by default.",
)
@click.option(
    "--recut",
    is_flag=True,
    help="Cut an image whose field of view is more than 25 % wider than 1.125 x D25 (and nowhere narrower) "
    "to the 1.125 x D25 square centred on the galaxy's catalogue position, then predict it (flag 'recut' "
    "instead of 'fov_mismatch'). A narrower image is still flagged 'fov_mismatch'.",
)
@click.option(
    "--use",
    "model_key",
    default="auto",
    show_default=True,
    metavar="KEY",
    help="The bundle's model: auto (g+i where the catalogue has g and i magnitudes, else g), g, gi, or "
    "g_<name> / gi_<name> for the models that add the encoder source <name>.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Predict on a local Dask cluster of N worker processes (one thread each); --out is then a folder.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDR",
    help="Predict on the running Dask scheduler at ADDR; --out is then a folder.",
)
@click.option(
    "--partition-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Galaxies per partition (one task, one output file) with --workers or --scheduler.",
)
def predict(
    workdir: Path,
    preset: str,
    config_path: Path | None,
    force: bool,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None,
    recut: bool,
    model_key: str,
    workers: int | None,
    scheduler: str | None,
    partition_size: int,
) -> None:
    """Apply a saved model bundle to new galaxies (no training data needed).

    Images wider or taller than 4096 pixels are refused (image_too_large); those above 2048 pixels are
    block-reduced (block_reduced). Every flag is explained in the README.
    """
    if workers is not None or scheduler is not None:
        _predict_on_dask(
            config_path,
            preset,
            force,
            model_dir,
            images_dir,
            catalog_path,
            out_path,
            stars_path,
            recut,
            model=model_key,
            workers=workers,
            scheduler=scheduler,
            partition_size=partition_size,
        )
        return
    if out_path.is_dir():
        msg = f"--out {out_path} is a folder; a folder of partitions needs --workers or --scheduler"
        raise InputDataError(msg)
    if out_path.suffix.lower() not in (".csv", ".fits", ".parquet"):
        msg = f"--out {out_path}: expected a .csv, .fits or .parquet file name"
        raise InputDataError(msg)
    if out_path.exists() and not force:
        msg = f"--out {out_path} already exists; pass --force to overwrite it"
        raise InputDataError(msg)
    config = load_config(preset, config_path)
    paths = {
        "model_dir": model_dir,
        "images_dir": images_dir,
        "catalog_path": catalog_path,
        "out_path": out_path,
        "stars_path": stars_path,
    }
    result = execute_predict(config, **paths, progress=_progress(), recut=recut, model=model_key)
    _report_stage(result)


def _predict_on_dask(
    config_path: Path | None,
    preset: str,
    force: bool,
    model_dir: Path,
    images_dir: Path,
    catalog_path: Path,
    out_path: Path,
    stars_path: Path | None,
    recut: bool,
    *,
    model: str,
    workers: int | None,
    scheduler: str | None,
    partition_size: int,
) -> None:
    """``morphomass predict --workers N | --scheduler ADDR``: partitioned Parquet in the folder ``--out``."""
    from morphomass.predict.distributed import predict_distributed

    if workers is not None and scheduler is not None:
        msg = "--workers and --scheduler exclude each other"
        raise InputDataError(msg)
    if out_path.suffix.lower() in (".csv", ".fits", ".parquet") or out_path.is_file():
        msg = f"--out {out_path}: with --workers or --scheduler, expected a folder (partitioned Parquet)"
        raise InputDataError(msg)
    config = load_config(preset, config_path)
    result = predict_distributed(
        model_dir,
        images_dir,
        catalog_path,
        out_dir=out_path,
        client=scheduler,
        n_workers=workers,
        partition_size=partition_size,
        stars=stars_path,
        batch_size=config.cnn.inference_batch_size,
        device=config.cnn.accelerator,
        recut=recut,
        model=model,
        resume=not force,
    )
    _report_stage(result)


#: click >= 8.2 raises this for a group called without arguments; older versions print the help themselves.
_NO_ARGS_IS_HELP: tuple[type[click.UsageError], ...] = tuple(
    cls for cls in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if cls is not None
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _wants_traceback(args: Sequence[str]) -> bool:
    """Tell whether the group's ``-v``/``--verbose`` comes before the subcommand in ``args``."""
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg == "--verbose" or (not arg.startswith("--") and "v" in arg[1:]):
            return True
    return False


def _input_error_line(err: BaseException) -> str | None:
    """One line for an error caused by the user's files (exit 2), or None if it is not one."""
    if isinstance(err, MorphomassError):
        return f"morphomass: error: {_one_line(str(err))}"
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        what = err.strerror or type(err).__name__
        return f"morphomass: error: {where}{_one_line(what)} ({type(err).__name__})"
    if isinstance(err, UnicodeDecodeError):
        return f"morphomass: error: an input file is not UTF-8 text ({_one_line(str(err))})"
    if isinstance(err, json.JSONDecodeError):
        return f"morphomass: error: an input file is not valid JSON ({_one_line(str(err))})"
    if isinstance(err, RecursionError):
        return "morphomass: error: an input file is nested too deeply to be read (RecursionError)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``morphomass`` command line; return its exit status (0, 1 or 2; see the module docstring)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        status = cli.main(args=args, prog_name="morphomass", standalone_mode=False)
    except _NO_ARGS_IS_HELP as err:  # bare ``morphomass``: show the help, as click does
        err.show()
        return err.exit_code
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else "morphomass"
        click.echo(f"{where}: error: {_one_line(err.format_message())} (see '{where} --help')", err=True)
        return err.exit_code
    except click.ClickException as err:
        click.echo(f"morphomass: error: {_one_line(err.format_message())}", err=True)
        return err.exit_code
    except click.Abort as err:
        if isinstance(err.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("morphomass: interrupted", err=True)
            return 130
        click.echo("morphomass: aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("morphomass: interrupted", err=True)
        return 130
    except Exception as err:  # noqa: BLE001 - every error reaching the user is one line
        verbose = _wants_traceback(args)
        if verbose:
            click.echo("".join(traceback.format_exception(err)).rstrip(), err=True)
        line = _input_error_line(err)
        if line is not None:
            click.echo(line, err=True)
            return 2
        hint = "" if verbose else "; run with -v for the traceback"
        click.echo(
            f"morphomass: internal error (a bug): {type(err).__name__}: {_one_line(str(err))}{hint}", err=True
        )
        return 1
    return status if isinstance(status, int) else 0
