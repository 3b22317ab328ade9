"""The sweep's files: table schemas, atomically written part files, the block-wise merge into
``runs.parquet`` (and ``timeseries.parquet``), and the manifest that lets a rerun resume.

Part files are written atomically, so a crash or ``SIGKILL`` leaves only whole files; a rerun skips
every run already in one. The merge reads a few part files at a time, so neither the runs nor their
tables are ever all in memory.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.config import Config, iter_fields
from sim.files import atomic_path, write_json  # noqa: F401 (part of this module's API)
from sim.outcomes import OUTCOMES
from sim.sweep.design import Design
from sim.sweep.spec import NOT_FACTORS, SweepMismatch, SweepSpec, _kind, schema_fields

ID_COLUMNS: tuple[str, ...] = ("run_id", "point_id", "replicate", "seed")
OUTCOME_COLUMNS: tuple[str, ...] = tuple(
    f"{stat}_{name}" for name in OUTCOMES for stat in ("final", "mean")
)
#: How each run's time averages were taken: the burn-in in steps and how it was chosen
#: (``auto``: MSER-5 on net alignment; ``set``: the ``burn_in`` setting).
BURN_IN_COLUMNS: tuple[str, ...] = ("burn_in", "burn_in_rule")
#: The batch-means standard error of every ``mean_<outcome>`` (one column per outcome).
SE_COLUMNS: tuple[str, ...] = tuple(f"se_{name}" for name in OUTCOMES)
#: Every summary column of a run, in ``runs.parquet`` order.
SUMMARY_COLUMNS: tuple[str, ...] = (*OUTCOME_COLUMNS, *BURN_IN_COLUMNS, *SE_COLUMNS)
RUNS_FILE, TIMESERIES_FILE, MANIFEST_FILE, PARTS_DIR = (
    "runs.parquet",
    "timeseries.parquet",
    "sweep.json",
    "parts",
)
#: Rows of the per-step table held in memory at most, when buffering or merging.
TIMESERIES_ROWS_BUDGET = 200_000
#: Part files' worth of runs merged per block when the final tables are assembled.
MERGE_CHUNKS = 4


# --------------------------------------------------------------------------------------------
# Table schemas
# --------------------------------------------------------------------------------------------

_ARROW = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}


def parameter_columns(varied: Sequence[str] = ()) -> list[str]:
    """Parameter columns of ``runs.parquet``: the varied keys, then every other key."""
    rest = [k for k in schema_fields() if k not in NOT_FACTORS and k not in varied]
    return [*varied, *rest]


def runs_schema(varied: Sequence[str] = ()) -> pa.Schema:
    """Columns of ``runs.parquet``: ids, every parameter, every outcome summary (final and mean
    values, the burn-in and how it was chosen, the standard errors of the means), status, error.
    """
    fields = schema_fields()
    columns = [pa.field(name, pa.int64()) for name in ID_COLUMNS]
    for key in parameter_columns(varied):
        kind = "str" if key == "scenario" else _kind(fields[key])
        columns.append(pa.field(key, _ARROW.get(kind, pa.string())))
    columns += [pa.field(name, pa.float64()) for name in OUTCOME_COLUMNS]
    columns += [pa.field("burn_in", pa.int64()), pa.field("burn_in_rule", pa.string())]
    columns += [pa.field(name, pa.float64()) for name in SE_COLUMNS]
    columns += [pa.field("status", pa.string()), pa.field("error", pa.string())]
    return pa.schema(columns)


def timeseries_schema() -> pa.Schema:
    """Columns of ``timeseries.parquet``: run id, step, every outcome."""
    columns = [pa.field("run_id", pa.int64()), pa.field("step", pa.int64())]
    return pa.schema(columns + [pa.field(name, pa.float64()) for name in OUTCOMES])


def outcome_row(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The summary columns of one run (:data:`SUMMARY_COLUMNS`) from :func:`sim.summarize`'s
    output or a ``summary.json`` (every column empty for ``None``, a failed run).

    A ``summary.json`` written before runs had a burn-in (no ``burn_in`` key) gives empty
    ``burn_in``, ``burn_in_rule`` and ``se_*`` columns: its means are over steps 1..T.
    """
    if summary is None:
        return dict.fromkeys(SUMMARY_COLUMNS)
    outcomes = summary["outcomes"]
    row: dict[str, Any] = {
        f"{stat}_{name}": outcomes[name][stat] for name in OUTCOMES for stat in ("final", "mean")
    }
    row["burn_in"], row["burn_in_rule"] = summary.get("burn_in"), summary.get("burn_in_rule")
    row.update({f"se_{name}": outcomes[name].get("se") for name in OUTCOMES})
    return row


def parameter_row(cfg: Config) -> dict[str, Any]:
    return {key: value for key, _, value in iter_fields(cfg) if key not in NOT_FACTORS}


# --------------------------------------------------------------------------------------------
# Writing: atomic files, part files, block-wise merge
# --------------------------------------------------------------------------------------------


class PartWriter:
    """Buffers finished runs and writes them as part files (per-step table first, then runs).

    A runs part on disk means its runs are done; a per-step part without its runs part is a
    leftover of a crash between the two writes and is removed by :func:`scan_folder`.
    """

    def __init__(self, folder: Path, schema: pa.Schema, *, chunk_size: int, keep_ts: bool) -> None:
        self.parts = folder / PARTS_DIR
        self.schema, self.ts_schema = schema, timeseries_schema()
        self.chunk_size, self.keep_ts = chunk_size, keep_ts
        self.rows: list[dict[str, Any]] = []
        self.tables: list[pd.DataFrame] = []
        self.ts_rows = 0
        self.written = 0
        self.last_flush = time.monotonic()

    def add(self, row: dict[str, Any], table: pd.DataFrame | None) -> None:
        self.rows.append(row)
        if table is not None:
            self.tables.append(table)
            self.ts_rows += len(table)

    def due(self, flush_seconds: float) -> bool:
        return bool(self.rows) and (
            len(self.rows) >= self.chunk_size
            or self.ts_rows >= TIMESERIES_ROWS_BUDGET
            or time.monotonic() - self.last_flush >= flush_seconds
        )

    def flush(self) -> None:
        if not self.rows:
            return
        ids = [r["run_id"] for r in self.rows]
        stem = f"{min(ids):012d}-{max(ids):012d}-{uuid.uuid4().hex[:10]}.parquet"
        if self.keep_ts:
            frame = pd.concat(self.tables, ignore_index=True) if self.tables else None
            table = (
                pa.Table.from_pandas(frame, schema=self.ts_schema, preserve_index=False)
                if frame is not None
                else self.ts_schema.empty_table()
            )
            with atomic_path(self.parts / f"timeseries-{stem}") as tmp:
                pq.write_table(table, tmp)
        with atomic_path(self.parts / f"runs-{stem}") as tmp:
            pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), tmp)
        self.written += len(self.rows)
        self.rows, self.tables, self.ts_rows = [], [], 0
        self.last_flush = time.monotonic()


def run_sources(folder: Path, kind: str = "runs") -> list[Path]:
    """Files of one sweep folder holding finished runs: the final table and any part files."""
    final = folder / (RUNS_FILE if kind == "runs" else TIMESERIES_FILE)
    parts = sorted((folder / PARTS_DIR).glob(f"{kind}-*.parquet"))
    return ([final] if final.exists() else []) + parts


def scan_folder(folder: Path) -> None:
    """Remove leftovers of an interrupted write: temporary files and orphan per-step parts."""
    parts = folder / PARTS_DIR
    if not parts.is_dir():
        return
    for tmp in parts.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for ts in parts.glob("timeseries-*.parquet"):
        if not (parts / ts.name.replace("timeseries-", "runs-", 1)).exists():
            ts.unlink(missing_ok=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def done_runs(sources: Sequence[Path], ids: range) -> np.ndarray:
    """Which run ids of ``ids`` already have a row in ``sources`` (a boolean mask)."""
    done = np.zeros(len(ids), dtype=bool)
    for path in sources:
        found = pq.read_table(path, columns=["run_id"]).column(0).to_numpy()
        found = found[(found >= ids.start) & (found < ids.stop)]
        done[found - ids.start] = True
    return done


@dataclass
class MergeStats:
    rows: int = 0
    failed: int = 0
    first_error: str | None = None
    duplicates: int = 0


def _id_bounds(path: Path) -> tuple[int, int] | None:
    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return None
    col = meta.schema.names.index("run_id")
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            ids = pq.read_table(path, columns=["run_id"]).column(0).to_numpy()
            return int(ids.min()), int(ids.max())
        lows.append(stats.min)
        highs.append(stats.max)
    return int(min(lows)), int(max(highs))


def merge(sources: Sequence[Path], out: Path, schema: pa.Schema, *, block_runs: int) -> MergeStats:
    """Merge tables keyed by ``run_id`` into one file sorted by run (and step), block by block.

    Only the rows of ``block_runs`` consecutive run ids (read from the sources that overlap
    them) are in memory at once. A run found in two sources is kept once, from the earliest
    source in ``sources`` that has it. The output is written atomically.
    """
    found = [(b, i, p) for i, p in enumerate(sources) if (b := _id_bounds(p)) is not None]
    found.sort(key=lambda s: s[0][0])
    stats = MergeStats()
    has_steps = "step" in schema.names
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        active: list[tuple[tuple[int, int], int, Path]] = []
        upcoming = 0
        start = found[0][0][0] if found else 0
        while True:
            end = start + block_runs
            while upcoming < len(found) and found[upcoming][0][0] < end:
                active.append(found[upcoming])
                upcoming += 1
            active = [s for s in active if s[0][1] >= start]
            if not active:
                if upcoming == len(found):
                    break
                start = found[upcoming][0][0]  # skip a gap in the run ids
                continue
            parts = []
            for _, priority, path in sorted(active, key=lambda s: s[1]):
                t = pq.read_table(path, filters=[("run_id", ">=", start), ("run_id", "<", end)])
                t = t.select(schema.names).cast(schema)
                src = pa.array(np.full(len(t), priority, dtype=np.int64))
                parts.append(t.append_column("_src", src))
            block, dropped = _sort_unique(pa.concat_tables(parts), has_steps)
            stats.duplicates += dropped
            if not has_steps:
                _count_failures(block, stats)
            stats.rows += len(block)
            writer.write_table(block)
            start = end
    return stats


def _count_failures(block: pa.Table, stats: MergeStats) -> None:
    failed = np.flatnonzero(np.asarray(block.column("status").to_pylist(), dtype=object) != "ok")
    stats.failed += len(failed)
    if len(failed) and stats.first_error is None:
        i = int(failed[0])
        run, error = block.column("run_id")[i].as_py(), block.column("error")[i].as_py()
        stats.first_error = f"run {run}: {error}"


def _sort_unique(block: pa.Table, has_steps: bool) -> tuple[pa.Table, int]:
    """Sort a block by run id (and step); keep each run from the first source that has it."""
    run = block.column("run_id").to_numpy()
    src = block.column("_src").to_numpy()
    keys = (block.column("step").to_numpy(), src, run) if has_steps else (src, run)
    order = np.lexsort(keys)  # the last key sorts first: run id, then source (, then step)
    run_s, src_s = run[order], src[order]
    starts = np.flatnonzero(np.r_[True, run_s[1:] != run_s[:-1]]) if len(order) else order
    if has_steps:
        first_src = np.repeat(src_s[starts], np.diff(np.r_[starts, len(order)]))
        keep = src_s == first_src
    else:
        keep = np.zeros(len(order), dtype=bool)
        keep[starts] = True
    kept = order[keep]
    return block.take(pa.array(kept)).drop_columns(["_src"]), len(order) - len(kept)


def finalize(
    folders: Sequence[Path],
    out_dir: Path,
    varied: Sequence[str],
    *,
    timeseries: bool,
    steps: int,
    chunk_size: int = SweepSpec.chunk_size,
) -> MergeStats:
    """Merge the finished runs of ``folders`` into ``out_dir``'s runs (and per-step) tables.

    Blocks of ``MERGE_CHUNKS x chunk_size`` runs (fewer for long per-step tables) keep the
    memory of the merge at the scale of the part files, whatever the number of runs.
    """
    block = MERGE_CHUNKS * chunk_size
    runs_sources = [p for folder in folders for p in run_sources(folder, "runs")]
    stats = merge(runs_sources, out_dir / RUNS_FILE, runs_schema(varied), block_runs=block)
    if timeseries:
        ts_sources = [p for folder in folders for p in run_sources(folder, "timeseries")]
        ts_block = max(1, min(block, TIMESERIES_ROWS_BUDGET // (steps + 1)))
        merge(ts_sources, out_dir / TIMESERIES_FILE, timeseries_schema(), block_runs=ts_block)
    return stats


def remove_parts(folder: Path) -> None:
    parts = folder / PARTS_DIR
    if not parts.is_dir():
        return
    for path in [*parts.glob("runs-*.parquet"), *parts.glob("timeseries-*.parquet")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts.rmdir()


def check_manifest(
    folder: Path, design: Design, new_folder: str = "give a new hydra.run.dir"
) -> bool:
    """True if ``folder`` already holds this sweep; raise :class:`SweepMismatch` if another
    (its message ends with ``new_folder``, how the caller's user picks another folder)."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return False
    old = json.loads(path.read_text())
    new = design.manifest()
    same = old.get("fingerprint") == new["fingerprint"] and all(
        old.get(k) == new[k] for k in ("shard", "num_shards", "save_timeseries")
    )
    if same:
        return True
    diffs = _differences(old.get("identity", {}), new["identity"])
    diffs += [k for k in ("shard", "num_shards", "save_timeseries") if old.get(k) != new[k]]
    listed = ", ".join(diffs[:6]) + (", ..." if len(diffs) > 6 else "")
    raise SweepMismatch(
        f"{folder} already holds a different sweep (differs in: {listed or 'its design'}); "
        f"rerun with the same settings to resume it, or {new_folder}"
    )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings in which two manifests' identities differ."""
    a, b = _flatten_identity(old), _flatten_identity(new)
    return [key for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _flatten_identity(identity: dict[str, Any]) -> dict[str, Any]:
    out = {f"sweep.{k}": json.dumps(v, sort_keys=True) for k, v in identity.get("spec", {}).items()}
    out.update(identity.get("base", {}))
    for name, flat in identity.get("scenarios", {}).items():
        out.update({f"{k} (scenario {name})": v for k, v in flat.items()})
    return out
