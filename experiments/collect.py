"""``paradox collect <folder>``: one ``runs.parquet`` from sweep shards or a Hydra multirun.

Two kinds of folder are understood:

- **sweep shards**: a folder holding ``sweep.json`` (one ``paradox sweep`` folder), or whose
  subfolders do (the shards of one design, e.g. the job folders of
  ``paradox sweep -m 'sweep.shard=range(0,4)' sweep.num_shards=4``). Their finished runs (final
  tables and the part files of shards that were stopped) are merged by run id, block by block,
  into ``<folder>/runs.parquet`` (and ``timeseries.parquet`` when the sweep kept per-step tables).
  All shards must come from the same design (same fingerprint in ``sweep.json``).
- **a Hydra multirun of** ``paradox run``: each job folder (``<folder>/<job.num>/``) becomes one
  row, from its ``config.yaml`` and ``summary.json``, with the same columns as a sweep's table;
  ``run_id`` is the job number, and jobs that differ only in ``seed`` share a ``point_id``.
  The jobs' ``timeseries.parquet`` files are concatenated into ``<folder>/timeseries.parquet``.

The path of the merged ``runs.parquet`` is printed last. Exit status: 0 if every run is there
and ok, 1 if some failed or are missing, 2 if the folder holds nothing to collect. A multirun's
expected number of jobs comes from its ``multirun.yaml`` (written before the first job starts),
so jobs of a multirun that was killed before they started count as missing.

The module also holds :class:`PrintMultirunFolder`, the Hydra callback that prints a multirun's
folder as the last line of ``paradox run -m`` / ``paradox sweep -m``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sim.config import Config
from sim.outcomes import OUTCOMES
from sim.sweep import (
    MANIFEST_FILE,
    RUNS_FILE,
    TIMESERIES_FILE,
    atomic_path,
    finalize,
    outcome_row,
    parameter_columns,
    parameter_row,
    runs_schema,
    timeseries_schema,
)
from sim.sweep.guard import quarantine_corrupt


class CollectError(ValueError):
    """Nothing to collect, or shards that do not belong together."""


@dataclass
class Collected:
    runs_path: Path
    kind: str  # "shards" or "multirun"
    rows: int
    expected: int
    failed: int
    first_error: str | None
    notes: list[str]

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.rows)


def collect(folder: Path, *, timeseries: bool = True) -> Collected:
    """Merge the runs under ``folder`` into ``folder/runs.parquet`` (see the module docstring)."""
    if not folder.is_dir():
        raise CollectError(f"{folder} is not a folder")
    if (folder / MANIFEST_FILE).exists():
        return _collect_shards(folder, [folder], timeseries)
    shard_dirs = sorted(p.parent for p in folder.glob(f"*/{MANIFEST_FILE}"))
    if shard_dirs:
        return _collect_shards(folder, shard_dirs, timeseries)
    jobs = [p for p in folder.iterdir() if p.is_dir() and _is_job(p)]
    if jobs or (folder / "multirun.yaml").exists():  # a multirun stopped before its first job
        return _collect_multirun(folder, jobs, timeseries)
    raise CollectError(
        f"nothing to collect in {folder}: no sweep.json there or in its subfolders, and no "
        "job folders with summary.json (give a paradox sweep folder, a folder of its shards, "
        "or a Hydra multirun folder)"
    )


# --------------------------------------------------------------------------------------------
# Sweep shards
# --------------------------------------------------------------------------------------------


def _collect_shards(folder: Path, shard_dirs: list[Path], timeseries: bool) -> Collected:
    manifests = [json.loads((d / MANIFEST_FILE).read_text()) for d in shard_dirs]
    first = manifests[0]
    for d, m in zip(shard_dirs, manifests, strict=True):
        if (m["fingerprint"], m["num_shards"]) != (first["fingerprint"], first["num_shards"]):
            raise CollectError(
                f"{d} holds a different sweep than {shard_dirs[0]} (fingerprint "
                f"{m['fingerprint']} vs {first['fingerprint']}, num_shards {m['num_shards']} "
                f"vs {first['num_shards']}); collect the shards of one design at a time"
            )
    notes = []
    shards = [m["shard"] for m in manifests]
    absent = sorted(set(range(first["num_shards"])) - set(shards))
    if absent:
        notes.append(f"shards not found: {', '.join(map(str, absent))}")
    repeated = sorted({s for s in shards if shards.count(s) > 1})
    if repeated:
        notes.append(f"shards found twice (each run kept once): {', '.join(map(str, repeated))}")
    keep_ts = timeseries and all(m.get("save_timeseries") for m in manifests)
    for d in shard_dirs:  # an unreadable table is set aside (its runs count as missing)
        quarantine_corrupt(d, notify=lambda line: notes.append(line.removeprefix("sweep: ")))
    stats = finalize(
        shard_dirs,
        folder,
        first["varied"],
        timeseries=keep_ts,
        steps=int(first.get("max_steps", first["steps"])),
    )
    if not keep_ts and folder not in shard_dirs:
        (folder / TIMESERIES_FILE).unlink(missing_ok=True)
    return Collected(
        runs_path=folder / RUNS_FILE,
        kind="shards",
        rows=stats.rows,
        expected=int(first["n_runs"]),
        failed=stats.failed,
        first_error=stats.first_error,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# Hydra multirun folders of `paradox run`
# --------------------------------------------------------------------------------------------


def _is_job(path: Path) -> bool:
    return (path / "summary.json").exists() or (path / ".hydra" / "config.yaml").exists()


def _job_number(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, path.name)


def _job_config(job: Path) -> Config:
    source = job / "config.yaml"
    if not source.exists():
        source = job / ".hydra" / "config.yaml"
    loaded = OmegaConf.load(source)
    if "hydra" in loaded:
        loaded.pop("hydra")
    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), loaded))
    assert isinstance(config, Config)
    return config


def _collect_multirun(folder: Path, jobs: list[Path], timeseries: bool) -> Collected:
    jobs = sorted(jobs, key=_job_number)
    numbered = all(j.name.isdigit() for j in jobs)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for index, job in enumerate(jobs):
        row: dict[str, Any] = {"run_id": int(job.name) if numbered else index}
        try:
            config = _job_config(job)
        except Exception as err:  # a job folder we cannot read is reported, not fatal
            notes.append(f"{job.name}: unreadable configuration ({type(err).__name__}: {err})")
            continue
        row["seed"] = config.seed
        row.update(parameter_row(config))
        summary_path = job / "summary.json"
        if summary_path.exists():
            row.update(outcome_row(json.loads(summary_path.read_text())))
            row.update(status="ok", error=None)
        else:
            row.update(outcome_row(None))
            row.update(status="failed", error="no summary.json: the job did not finish")
        rows.append(row)
    params = parameter_columns()
    varied = [k for k in params if len({repr(r[k]) for r in rows}) > 1]
    points: dict[tuple[str, ...], int] = {}
    counts: dict[int, int] = {}
    for row in rows:
        key = tuple(repr(row[k]) for k in varied)
        point = points.setdefault(key, len(points))
        row["point_id"], row["replicate"] = point, counts.get(point, 0)
        counts[point] = row["replicate"] + 1
    schema = runs_schema(varied)
    with atomic_path(folder / RUNS_FILE) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    if timeseries:
        _concat_timeseries(folder, jobs, rows)
    failed = [r for r in rows if r["status"] != "ok"]
    first = f"run {failed[0]['run_id']}: {failed[0]['error']}" if failed else None
    launched = launched_jobs(folder)
    if launched is None:
        notes.append(
            "the number of jobs the multirun launched is unknown (no multirun.yaml, or a "
            "sweeper other than Hydra's basic one): jobs that never started are not counted"
        )
    elif numbered and launched > len(jobs):
        found = {int(j.name) for j in jobs}
        absent = [n for n in range(launched) if n not in found]
        shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
        notes.append(f"jobs never started (the multirun stopped): {shown}")
    return Collected(
        runs_path=folder / RUNS_FILE,
        kind="multirun",
        rows=len(rows),
        expected=max(len(jobs), launched or 0),
        failed=len(failed),
        first_error=first,
        notes=notes,
    )


def launched_jobs(folder: Path) -> int | None:
    """How many jobs the multirun in ``folder`` launched (or was going to launch), from the
    ``multirun.yaml`` Hydra writes before the first job starts; ``None`` when it cannot be known.

    Job folders only appear as jobs start, so a multirun killed midway (``kill -9``, a node
    failure) has fewer folders than jobs; counting folders would report it complete.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = folder / "multirun.yaml"
    if not path.exists():
        return None
    try:
        conf = OmegaConf.load(path)
        sweeper = str(OmegaConf.select(conf, "hydra.sweeper._target_", default=""))
        if not sweeper.endswith("BasicSweeper"):
            return None
        args = list(OmegaConf.select(conf, "hydra.overrides.task", default=[]) or [])
        params = OmegaConf.select(conf, "hydra.sweeper.params", default=None) or {}
        args = [f"{k}={v}" for k, v in params.items()] + args
        overrides = OverridesParser.create().parse_overrides(args)
        batches = BasicSweeper.split_arguments(overrides, None)
    except Exception:  # an unreadable record: say it is unknown rather than guess
        return None
    return sum(len(batch) for batch in batches)


def _concat_timeseries(folder: Path, jobs: list[Path], rows: list[dict[str, Any]]) -> None:
    """Stream every job's per-step table into one file, tagged with the job's run id."""
    schema = timeseries_schema()
    ids = {str(r["run_id"]) for r in rows}
    numbered = all(j.name.isdigit() for j in jobs)
    with atomic_path(folder / TIMESERIES_FILE) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for index, job in enumerate(jobs):
            run_id = int(job.name) if numbered else index
            path = job / "timeseries.parquet"
            if str(run_id) not in ids or not path.exists():
                continue
            table = pq.read_table(path, columns=["step", *OUTCOMES])
            table = table.add_column(0, "run_id", pa.array([run_id] * len(table), pa.int64()))
            writer.write_table(table.cast(schema))


# --------------------------------------------------------------------------------------------
# Command line and Hydra callback
# --------------------------------------------------------------------------------------------


def format_collected(result: Collected) -> str:
    what = "sweep shards" if result.kind == "shards" else "multirun jobs"
    lines = [
        f"collected {result.rows} of {result.expected} runs from {what}: "
        f"{result.rows - result.failed} ok, {result.failed} failed, {result.missing} missing"
    ]
    lines += result.notes
    if result.first_error:
        lines.append(f"first failure: {result.first_error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox collect",
        description="Merge sweep shards, or the job folders of a Hydra multirun, into one "
        "runs.parquet in FOLDER; print its path last.",
    )
    parser.add_argument(
        "folder", type=Path, help="a sweep folder, the parent of its shards, or a multirun"
    )
    parser.add_argument(
        "--no-timeseries", action="store_true", help="do not merge the per-step tables"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = collect(args.folder, timeseries=not args.no_timeseries)
    except CollectError as err:
        print(f"paradox collect: {err}", file=sys.stderr)
        return 2
    print(format_collected(result))
    print(result.runs_path)
    return 0 if result.failed == 0 and result.missing == 0 else 1


class PrintMultirunFolder(Callback):
    """Print a multirun's folder as the last line on stdout (to pipe into ``paradox collect``).

    Each job's stdout is flushed when the job ends, so that output of jobs run in other
    processes (the joblib launcher) cannot arrive after the folder.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        sys.stdout.flush()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(Path(str(config.hydra.sweep.dir)), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
