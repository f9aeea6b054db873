"""The ``evaluate`` stage: test metrics of every experiment, significance, per-class L1~, figures, report.

Reads ``sample.parquet``, the feature tables (a few columns, for Fig. 6 and the E9 classes) and
``models/gbm/`` (``predictions.parquet``, ``<experiment>.json``, ``importance.json``, the interval
calibrations ``intervals_<model>.json``) written by
``train-gbm`` (the stage's declared inputs); fits the baselines that need no
GBM (constant, g-i power laws, Zibetti+09) on the same galaxies' training split; writes
``results/metrics.json`` (DESIGN §4, :class:`~morphomass.metrics_schema.MetricsFile`),
``results/figures/fig*.{png,pdf}``, ``results/tables/*.csv`` and the self-contained ``results/report.html``.
lightgbm is not needed here.

The stage only reads (:mod:`~morphomass.evaluate.inputs`), computes (:mod:`~morphomass.evaluate.results`,
:mod:`~morphomass.evaluate.report_figures`, :mod:`~morphomass.evaluate.tables`,
:mod:`~morphomass.evaluate.context`) and writes.
"""

from __future__ import annotations

import io
import time

import pandas as pd
from matplotlib.figure import Figure

from morphomass.config import EvaluateConfig, PipelineConfig
from morphomass.evaluate.context import make_report_context
from morphomass.evaluate.inputs import load_inputs
from morphomass.evaluate.report import render_report
from morphomass.evaluate.report_figures import make_figures
from morphomass.evaluate.results import compute_classes, compute_predictions, compute_results, count_classes
from morphomass.evaluate.tables import make_tables
from morphomass.evaluate.uncertainty import compute_uncertainty
from morphomass.metrics_schema import write_metrics
from morphomass.progress import progress_bar
from morphomass.workdir import StageResult, WorkDir, atomic_path, write_bytes_atomic, write_text_atomic

__all__ = ["run_evaluate"]


def _save_figure(fig: Figure, stem: str, workdir: WorkDir, cfg: EvaluateConfig) -> tuple[bytes, list[str]]:
    """Write the figure in every configured format; return its PNG bytes (for the report) and the paths."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=cfg.figure_dpi)
    png = buf.getvalue()
    paths = []
    for ext in cfg.figure_formats:
        path = workdir.figures / f"{stem}.{ext}"
        if ext == "png":
            write_bytes_atomic(path, png)
        else:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=cfg.figure_dpi)
        paths.append(workdir.relative(path))
    return png, paths


def _write_csv(frame: pd.DataFrame, name: str, workdir: WorkDir) -> str:
    path = workdir.tables / name
    write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))
    return workdir.relative(path)


def run_evaluate(config: PipelineConfig, workdir: WorkDir, *, progress: bool = True) -> StageResult:
    """Evaluate every experiment on the test split and write results/ (see the module docstring).

    Parameters
    ----------
    config : PipelineConfig
        Uses the ``evaluate`` section (experiments, bootstrap size, thresholds, figure formats).
    workdir : WorkDir
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    StageResult
        Summary: test galaxies, L1~ of the main experiments.

    Raises
    ------
    InputDataError
        Missing or inconsistent inputs (named in the message).
    ConfigError
        ``evaluate.experiments`` names an experiment that does not exist.
    """
    start = time.perf_counter()
    cfg = config.evaluate
    workdir.ensure()
    with progress_bar("evaluate", total=6, enabled=progress) as advance:
        inputs = load_inputs(workdir, cv_search=config.gbm.cv_search)
        predictions = compute_predictions(
            inputs.meta, inputs.gbm_predictions, inputs.gbm_info, cfg, target=inputs.target
        )
        advance(1)
        classes = compute_classes(inputs.cnn, cfg)
        uncertainty = compute_uncertainty(
            inputs.meta,
            inputs.gbm_predictions,
            inputs.interval_calibrations,
            classes,
            levels=config.gbm.interval_levels,
        )
        results = compute_results(
            inputs.meta,
            predictions,
            classes,
            inputs.importance,
            preset=config.preset,
            cfg=cfg,
            uncertainty=uncertainty,
        )
        advance(1)
        write_metrics(workdir.metrics, results)
        outputs = [workdir.relative(workdir.metrics)]
        advance(1)
        figures: dict[str, tuple[bytes, str]] = {}
        for stem, fig, caption in make_figures(inputs, predictions, results, classes, cfg):
            png, paths = _save_figure(fig, stem, workdir, cfg)
            figures[stem] = (png, caption)
            outputs.extend(paths)
        advance(1)
        class_counts = count_classes(classes, inputs.meta["split"].to_numpy())
        outputs += [
            _write_csv(frame, name, workdir) for name, frame in make_tables(results, class_counts).items()
        ]
        advance(1)
        context = make_report_context(
            results,
            inputs,
            config=config,
            fits=predictions.fits,
            class_counts=class_counts,
            seconds=time.perf_counter() - start,
        )
        write_text_atomic(workdir.report, render_report(context, figures))
        outputs.append(workdir.relative(workdir.report))
        advance(1)

    summary = {"test_galaxies": results.n["test"], "experiments": len(results.experiments)}
    for name in ("reference_lg_z", "g_morph", "gi_gbm", "gi_morph"):
        if name in results.experiments:
            summary[f"l1_{name}"] = round(results.experiments[name].l1, 3)
    return StageResult(
        stage="evaluate", outputs=outputs, seconds=time.perf_counter() - start, summary=summary
    )
