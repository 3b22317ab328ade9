"""Experiment designs over the configuration schema, and an engine that runs them at scale.

One concept per module, each importing only the ones before it:

- :mod:`sim.sweep.spec`: the sweep specification (factors, roles, design settings) and its check
  against the configuration schema;
- :mod:`sim.sweep.design`: points, runs, seeds and shards of a checked spec;
- :mod:`sim.sweep.store`: table schemas, part files, the block-wise merge and the manifest;
- :mod:`sim.sweep.engine`: one shard's runs in a pool of worker processes, resumable.

The names below are re-exported for convenience (``from sim.sweep import Design, run_sweep``).
This package does not import Hydra or the Mesa model (worker processes import the model when they
run).
"""

from __future__ import annotations

from sim.sweep.design import (
    Design,
    describe_manifest,
    seed_from,
)
from sim.sweep.engine import (
    Runner,
    SweepResult,
    Task,
    available_cores,
    execute,
    format_result,
    run_sweep,
    simulate_table,
)
from sim.sweep.spec import (
    DESIGN_FIELDS,
    DESIGNS,
    NOT_FACTORS,
    ROLES,
    SEEDINGS,
    Factor,
    ResolvedFactor,
    SweepAborted,
    SweepMismatch,
    SweepSpec,
    check_spec,
    resolve_factor,
    schema_fields,
)
from sim.sweep.store import (
    BURN_IN_COLUMNS,
    ID_COLUMNS,
    MANIFEST_FILE,
    MERGE_CHUNKS,
    OUTCOME_COLUMNS,
    PARTS_DIR,
    RUNS_FILE,
    SE_COLUMNS,
    SUMMARY_COLUMNS,
    TIMESERIES_FILE,
    TIMESERIES_ROWS_BUDGET,
    MergeStats,
    PartWriter,
    atomic_path,
    check_manifest,
    done_runs,
    finalize,
    merge,
    outcome_row,
    parameter_columns,
    parameter_row,
    remove_parts,
    run_sources,
    runs_schema,
    scan_folder,
    timeseries_schema,
    write_json,
)

__all__ = [
    "BURN_IN_COLUMNS",
    "DESIGNS",
    "DESIGN_FIELDS",
    "ID_COLUMNS",
    "MANIFEST_FILE",
    "MERGE_CHUNKS",
    "NOT_FACTORS",
    "OUTCOME_COLUMNS",
    "PARTS_DIR",
    "ROLES",
    "RUNS_FILE",
    "SEEDINGS",
    "SE_COLUMNS",
    "SUMMARY_COLUMNS",
    "TIMESERIES_FILE",
    "TIMESERIES_ROWS_BUDGET",
    "Design",
    "Factor",
    "MergeStats",
    "PartWriter",
    "ResolvedFactor",
    "Runner",
    "SweepAborted",
    "SweepMismatch",
    "SweepResult",
    "SweepSpec",
    "Task",
    "atomic_path",
    "available_cores",
    "check_manifest",
    "check_spec",
    "describe_manifest",
    "done_runs",
    "execute",
    "finalize",
    "format_result",
    "merge",
    "outcome_row",
    "parameter_columns",
    "parameter_row",
    "remove_parts",
    "resolve_factor",
    "run_sources",
    "run_sweep",
    "runs_schema",
    "scan_folder",
    "schema_fields",
    "seed_from",
    "simulate_table",
    "timeseries_schema",
    "write_json",
]
