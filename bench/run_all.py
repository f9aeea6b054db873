"""Run every benchmark of bench/ with small arguments; write bench/results/<date>-<machine>.json and .md.

Each ``bench/bench_*.py`` runs in its own process with the arguments of :data:`ARGS` (chosen so that the
whole run stays under ~15 minutes on 2 cores; a script missing from the table runs with its defaults) and a
time limit. A script that accepts ``--json PATH`` (its source mentions ``"--json"``) writes its figures there
and they are kept as they are; from any other script the Markdown tables it prints are parsed into rows, and
the end of its output is kept in any case. The machine is named by host, CPU model and core count (and the
GPU when torch sees one), e.g. ``bench/results/2026-12-05-vm-intel-xeon-processor-2c.json``.

    .venv/bin/python bench/run_all.py                          # everything, ~15 min on 2 cores
    .venv/bin/python bench/run_all.py --only bench_gbm bench_catalog --out-dir /tmp/results
    .venv/bin/python bench/run_all.py --quick-bundle /path/to/quick/workdir   # + predict with that bundle
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: Small, fast arguments per benchmark script (a script not listed runs with its own defaults).
ARGS: dict[str, list[str]] = {
    "bench_catalog.py": ["--scale", "0.05"],
    "bench_cnn.py": ["--per-network", "--preset", "quick", "--n-train", "128", "--n-val", "32"],
    "bench_encoder.py": ["-n", "16", "--batch-size", "8"],
    "bench_gbm.py": ["--rows", "6000", "--variants", "default", "package", "top50"],
    "bench_mock_render.py": ["-n", "40", "--bands", "g", "ugriz", "--repeats", "1"],
    "bench_morphology.py": ["-n", "10", "--baseline", "3", "--sizes", "64", "128"],
    "bench_predict_memory.py": ["--sides", "512", "1024"],
    "bench_predict_throughput.py": [],  # builds a tiny-preset bundle (~1-2 min), then predicts its galaxies
    "bench_preprocess.py": ["-n", "120", "--preset", "quick", "--workers", "2"],
}
#: Time limit per script (seconds).
TIMEOUT_S = 900
#: Lines of each script's output kept in the JSON file.
OUTPUT_LINES = 120


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _headline_throughput(f: dict[str, Any]) -> str:
    return (
        f"predict {f['predict_cpu_ms_per_galaxy']:.1f} CPU ms/galaxy "
        f"({f['predict_galaxies_per_cpu_s']:.0f}/CPU-s) = {f['predict_vs_bare_forward']:.2f}x "
        f"the bare forward passes ({f['preset']} bundle)"
    )


def _headline_cnn(f: dict[str, Any]) -> str:
    rows = f.get("rows", [])
    if f.get("mode") == "per-network":
        return "train vs bare loop: " + ", ".join(f"{r['net']} {r['train_ratio']:.2f}x" for r in rows)
    return "train img/s ratio: " + ", ".join(f"{r['run']} {r['train_ratio']:.2f}x" for r in rows)


def _headline_gbm(f: dict[str, Any]) -> str:
    return ", ".join(
        f"{r['variant']} {r['cpu_s']:.1f} CPU-s"
        + (f" ({r['vs_default_cpu']:.2f}x)" if r["vs_default_cpu"] else "")
        for r in f["rows"]
    )


def _headline_rows(key: str, value: str, unit: str = "") -> Callable[[dict[str, Any]], str]:
    def headline(f: dict[str, Any]) -> str:
        return ", ".join(f"{r[key]}: {_fmt(r[value])}{unit}" for r in f["rows"])

    return headline


#: One line of figures per benchmark that writes JSON.
HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "bench_predict_throughput.py": _headline_throughput,
    "bench_cnn.py": _headline_cnn,
    "bench_gbm.py": _headline_gbm,
    "bench_catalog.py": _headline_rows("case", "ratio", "x baseline time"),
    "bench_mock_render.py": _headline_rows("bands", "mock_rate", " gal/s/core"),
    "bench_morphology.py": _headline_rows("images", "ours_cpu_ms_per_galaxy", " ms/galaxy"),
    "bench_preprocess.py": _headline_rows("run", "galaxies_per_cpu_s", " gal/CPU-s"),
}


def cpu_model() -> str:
    """Return the CPU model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """Return the name of the first CUDA device torch sees, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> dict[str, Any]:
    """Describe this machine: host, CPU model, cores (all, usable), memory, GPU, Python, packages."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("morphomass", "torch", "lightning", "timm", "lightgbm", "numpy", "galsim", "astropy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": memory,
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "load_average_start": os.getloadavg()[0],
    }


def machine_slug(info: dict[str, Any]) -> str:
    """File-name part naming the machine: host, CPU model, cores and GPU, lower case, ``[a-z0-9-]``."""
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$", "", info["cpu_model"].lower())
    parts = [info["hostname"], cpu, f"{info['cores']}c"]
    if info["gpu"]:
        parts.append(info["gpu"])
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def git_state() -> dict[str, Any]:
    """Return the commit checked out and whether the tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Parse the Markdown tables printed in ``text``: each a list of rows, header -> cell."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2 and all(set(c) <= set("-: ") for c in block[1]):
            header = block[0]
            tables.append([dict(zip(header, row, strict=False)) for row in block[2:]])
        block = []
    return tables


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_script(script: Path, args: list[str], *, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark script; return its command, status, wall and CPU time, figures and output tail."""
    takes_json = '"--json"' in script.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="run_all_") as tmp:
        json_path = Path(tmp) / "figures.json"
        command = [sys.executable, str(script.relative_to(ROOT)), *args]
        if takes_json:
            command += ["--json", str(json_path)]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        start, cpu = time.perf_counter(), _cpu_children()
        try:
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env
            )
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as err:
            returncode = None
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            stderr = f"stopped after {timeout_s:.0f} s"
        wall, cpu = time.perf_counter() - start, _cpu_children() - cpu
        figures = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else None
    result: dict[str, Any] = {
        "command": " ".join(["python", *command[1:]]).replace(str(json_path), "FIGURES.json"),
        "arguments": args,
        "status": "ok" if returncode == 0 else ("timeout" if returncode is None else f"exit {returncode}"),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "figures": figures,
        "tables": None if figures is not None else markdown_tables(stdout),
        "output": stdout.splitlines()[-OUTPUT_LINES:],
    }
    if returncode != 0:
        result["stderr"] = stderr.splitlines()[-40:]
    return result


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    """Return the Markdown summary: machine, one line per benchmark, then each benchmark's figures."""
    info, git = report["machine"], report["git"]
    lines = [
        f"# Benchmarks {report['date']}: {info['hostname']}",
        "",
        f"{info['cpu_model']}, {info['cores']} cores ({info['cores_usable']} usable), "
        f"{info['memory_gib']} GiB, GPU: {info['gpu'] or 'none'}; Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
        + f"; load average at the start {info['load_average_start']:.1f}.",
        f"Commit {git['commit'][:10]}{' with local changes' if git['dirty'] else ''}; "
        f"`python bench/run_all.py` in {report['wall_s'] / 60:.1f} min.",
        "",
        "| benchmark | status | wall s | CPU s | figures |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result in report["benchmarks"].items():
        headline = ""
        figures = result["figures"]
        script = name.split(" ")[0]  # "bench_x.py (quick bundle)" -> its script
        if result["status"] == "ok" and figures is not None and script in HEADLINES:
            try:
                headline = HEADLINES[script](figures)
            except (KeyError, TypeError, ZeroDivisionError):
                headline = "see below"
        elif result["status"] == "ok":
            headline = "see below"
        lines.append(f"| {name} | {result['status']} | {result['wall_s']} | {result['cpu_s']} | {headline} |")
    for name, result in report["benchmarks"].items():
        lines += ["", f"## {name}", "", f"`{result['command']}`", ""]
        figures = result["figures"]
        if figures is not None:
            scalars = {k: v for k, v in figures.items() if not isinstance(v, list | dict)}
            if scalars:
                lines += [", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items()), ""]
            for key, value in figures.items():
                if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                    lines += [f"{key}:", "", *_md_table(value), ""]
                elif isinstance(value, dict):
                    lines += [f"{key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()), ""]
        elif result["tables"]:
            for table in result["tables"]:
                lines += [*_md_table(table), ""]
        else:
            lines += ["```", *result["output"][-25:], "```"]
        if result["status"] != "ok":
            lines += ["", "stderr (end):", "", "```", *result.get("stderr", [])[-15:], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmarks and write the results files."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", default=None, help="script names (with or without .py)")
    parser.add_argument("--skip", nargs="+", default=[], help="script names to leave out")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per script")
    parser.add_argument(
        "--quick-bundle",
        type=Path,
        default=None,
        help="also run bench_predict_throughput.py on this bundle (e.g. a quick run's work directory)",
    )
    args = parser.parse_args()
    wanted = {n.removesuffix(".py") + ".py" for n in args.only} if args.only else None
    skipped = {n.removesuffix(".py") + ".py" for n in args.skip}
    scripts = [
        p
        for p in sorted(BENCH.glob("bench_*.py"))
        if (wanted is None or p.name in wanted) and p.name not in skipped
    ]
    info = machine()
    today = dt.date.today().isoformat()
    report: dict[str, Any] = {
        "date": today,
        "machine": info,
        "git": git_state(),
        "arguments": ARGS,
        "benchmarks": {},
    }
    start = time.perf_counter()
    runs = [(p.name, p, ARGS.get(p.name, [])) for p in scripts]
    if args.quick_bundle is not None:
        script = BENCH / "bench_predict_throughput.py"
        runs.append(
            (
                "bench_predict_throughput.py (quick bundle)",
                script,
                ["--bundle", str(args.quick_bundle), "--limit", "256"],
            )
        )
    for name, script, script_args in runs:
        if script.name not in ARGS:
            print(f"{name}: not in run_all.ARGS, running with its default arguments", flush=True)
        print(f"{name} {' '.join(script_args)} ...", end=" ", flush=True)
        result = run_script(script, script_args, timeout_s=args.timeout)
        report["benchmarks"][name] = result
        print(f"{result['status']}, {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} CPU-s", flush=True)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_average_end"] = os.getloadavg()[0]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"{today}-{machine_slug(info)}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown_report(report), encoding="utf-8")
    print(f"wrote {stem}.json and {stem}.md ({report['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
