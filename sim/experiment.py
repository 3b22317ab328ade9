"""Experiment designs over the configuration schema, and an engine that runs them at scale.

A *sweep* varies some configuration keys (its *factors*) around a base :class:`~sim.config.Config`
and runs every design point several times with different seeds. Following the XLRM framing of
robust decision making (Lempert, Popper & Bankes 2003) and the EMA Workbench (Kwakkel 2017),
factors are declared either as *uncertainties* (facts about the world the modeller cannot choose)
or as *levers* (policies or decisions); both are ordinary dotted config keys.

Designs (:data:`DESIGNS`):

- ``grid``: the full factorial product of every factor's ``levels`` (first factor slowest).
- ``lhs``: Latin hypercube sampling (McKay, Beckman & Conover 1979), ``samples`` points.
- ``sobol``: Saltelli's extension of the Sobol' sequence for variance-based sensitivity analysis
  (Sobol' 2001; Saltelli 2002; Saltelli et al. 2010); ``samples`` is the base size N, a power of 2,
  giving N (k + 2) points, or N (2k + 2) with second-order indices.
- ``morris``: elementary-effects trajectories (Morris 1991; Campolongo, Cariboni & Saltelli 2007),
  ``samples`` trajectories of k + 1 points.

The three sampled designs are drawn with SALib (Herman & Usher 2017; Iwanaga, Usher & Herman
2022) over the factors that have a ``range``; factors given as ``levels`` are crossed with the
sample, so each combination of levels gets a complete sample of its own (e.g. one Sobol' sample
per policy). Integer keys are sampled uniformly over their integers.

Seeds come from :class:`numpy.random.SeedSequence` (the NumPy documentation's recommended way to
derive independent streams for parallel work): with base seed ``s`` the design's sampling stream is
``SeedSequence(s).spawn(2)[0]`` and replicate ``r`` of point ``p`` gets the 63-bit integer drawn
from ``SeedSequence(s).spawn(2)[1].spawn(R)[r]`` (``seeding: common``, the same seeds at every
point: common random numbers, so differences between points are not seed noise) or from
``...spawn(2)[1].spawn(P)[p].spawn(R)[r]`` (``seeding: independent``). Either way the integer is
stored in the run's ``seed`` column, and ``paradox run seed=<it>`` with the same parameters
reproduces the run.

The engine (:func:`run_sweep`) runs the runs of one shard with a pool of worker processes,
streams finished runs to atomically written part files, and finally merges the parts into one
sorted ``runs.parquet`` (and ``timeseries.parquet`` on request) block by block, so neither the
runs nor their tables are ever all in memory. Rerunning it on the same folder skips every run
already on disk (resume after a crash or ``SIGKILL``). A run that raises is recorded with status
``failed`` and its error message. This module does not import Hydra.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import multiprocessing
import numbers
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from sim.config import Config, ParameterError, _check_leaf, iter_fields, validate
from sim.outcomes import OUTCOMES, summarize

DESIGNS: tuple[str, ...] = ("grid", "lhs", "sobol", "morris")
SEEDINGS: tuple[str, ...] = ("common", "independent")
ROLES: tuple[str, ...] = ("uncertainty", "lever")
#: Leaf keys of :class:`Config` that are never factors: the seed comes from the replicates, and
#: ``burn_in`` says how runs are summarised (one setting per sweep; the ``burn_in`` column holds
#: each run's burn-in in steps, so no parameter column shares its name).
NOT_FACTORS: tuple[str, ...] = ("seed", "burn_in", "collect_agents")
#: Columns that identify a run, first in ``runs.parquet``.
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
# The sweep specification (the schema of a `conf/sweep/*.yaml` file's `sweep:` block)
# --------------------------------------------------------------------------------------------


@dataclass
class Factor:
    """One varied configuration key: a ``range`` to sample, or explicit ``levels``."""

    key: str = ""  # dotted config key (``model.coupling``), or ``scenario``
    range: list[float] | None = None  # [lo, hi]: sampled by lhs, sobol and morris
    levels: list[Any] | None = None  # explicit values: the grid, or crossed with a sample


@dataclass
class SweepSpec:
    """An experiment design and how to run it. ``docs/sweeps.md`` documents every field."""

    name: str = "sweep"
    design: str = "grid"  # one of DESIGNS
    samples: int = 16  # lhs: points; sobol: base size N (power of 2); morris: trajectories
    replicates: int = 1  # runs per design point, each with its own seed
    seeding: str = "common"  # one of SEEDINGS
    uncertainties: list[Factor] = field(default_factory=list)
    levers: list[Factor] = field(default_factory=list)
    second_order: bool = False  # sobol: also the points for second-order indices
    morris_levels: int = 4  # morris: grid levels p of each factor
    workers: int = 0  # worker processes; 0: one per available core; 1: in this process
    chunk_size: int = 200  # finished runs per part file written to disk
    save_timeseries: bool = False  # also keep every run's per-step table
    shard: int = 0  # this job runs shard `shard` of `num_shards` contiguous slices of the runs
    num_shards: int = 1
    progress: bool | None = None  # progress bar on stderr; null: only when stderr is a terminal


#: Spec fields that decide which runs exist and what they compute (the rest only say how to run).
DESIGN_FIELDS: tuple[str, ...] = (
    "design",
    "samples",
    "replicates",
    "seeding",
    "uncertainties",
    "levers",
    "second_order",
    "morris_levels",
)


class SweepMismatch(ValueError):
    """The output folder already holds results of a different sweep."""


class SweepAborted(RuntimeError):
    """The sweep stopped early (a worker process died); finished runs are saved for a resume."""


# --------------------------------------------------------------------------------------------
# Resolving factors against the schema
# --------------------------------------------------------------------------------------------

_FIELDS: dict[str, dataclasses.Field] = {}


def schema_fields() -> dict[str, dataclasses.Field]:
    """Every leaf key of :class:`Config` and its dataclass field, in schema order."""
    if not _FIELDS:
        _FIELDS.update({key: f for key, f, _ in iter_fields(Config())})
    return _FIELDS


def _kind(f: dataclasses.Field) -> str:
    return str(f.type).replace("None | ", "").replace(" | None", "")


@dataclass(frozen=True)
class ResolvedFactor:
    """A factor checked against the schema: its role, type and values or bounds."""

    key: str
    role: str
    kind: str  # float, int, str, bool
    levels: tuple[Any, ...] | None
    bounds: tuple[float, float] | None
    where: str  # position in the spec, for messages: sweep.levers[1]


def _coerce(value: Any, kind: str, key: str, where: str, nullable: bool) -> Any:
    """A level converted to the key's type (ints stay ints), or a ParameterError."""
    if value is None and nullable:
        return None
    bad = ParameterError(where, value, f"a value of type {kind} for {key}")
    if kind in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad
        if kind == "int":
            if not float(value).is_integer():
                raise ParameterError(where, value, f"an integer for {key}")
            return int(value)
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise bad
    if kind == "str" and not isinstance(value, str):
        raise bad
    return value


def _check_value(key: str, value: Any, where: str) -> None:
    """Check one value against the allowed range of ``key`` (cross-key rules are left to runs)."""
    if key == "scenario":
        return
    try:
        _check_leaf(key, schema_fields()[key], value)
    except ParameterError as err:
        raise ParameterError(where, value, f"{err.allowed} (the range of {key})") from None


def resolve_factor(factor: Factor, role: str, where: str) -> ResolvedFactor:
    """Check a declared factor against the schema and return it typed."""
    fields = schema_fields()
    key = factor.key
    if key == "scenario":
        kind, nullable = "str", False
    elif key not in fields or key in NOT_FACTORS:
        import difflib

        close = difflib.get_close_matches(key, [*fields, "scenario"], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        why = {
            "seed": "the seed comes from replicates",
            "burn_in": "burn_in decides how runs are summarised: set it for the whole sweep",
        }.get(key, "see docs/ODD.md §9")
        raise ParameterError(
            f"{where}.key", key, f"a configuration key such as model.coupling{hint}; {why}"
        )
    else:
        f = fields[key]
        kind, nullable = _kind(f), bool(f.metadata.get("nullable"))
    if (factor.range is None) == (factor.levels is None):
        raise ParameterError(where, key, "exactly one of range: [lo, hi] or levels: [...]")
    if factor.levels is not None:
        if len(factor.levels) == 0:
            raise ParameterError(f"{where}.levels", [], "a non-empty list of values")
        levels = tuple(_coerce(v, kind, key, f"{where}.levels", nullable) for v in factor.levels)
        for v in levels:
            _check_value(key, v, f"{where}.levels")
        if len(set(map(repr, levels))) < len(levels):
            raise ParameterError(f"{where}.levels", list(levels), "distinct values")
        return ResolvedFactor(key, role, kind, levels, None, where)
    rng = list(factor.range or [])
    if kind not in ("float", "int"):
        raise ParameterError(f"{where}.range", rng, f"levels: [...] for the {kind} key {key}")
    if len(rng) != 2:
        raise ParameterError(f"{where}.range", rng, "two numbers [lo, hi]")
    lo, hi = (_coerce(v, kind, key, f"{where}.range", False) for v in rng)
    if not lo < hi:
        raise ParameterError(f"{where}.range", rng, "a non-empty range [lo, hi] with lo < hi")
    for v in (lo, hi):
        _check_value(key, v, f"{where}.range")
    return ResolvedFactor(key, role, kind, None, (lo, hi), where)


def check_spec(spec: SweepSpec) -> list[ResolvedFactor]:
    """Check the fields of a spec that do not need a base configuration; return its factors."""
    if spec.design not in DESIGNS:
        raise ParameterError("sweep.design", spec.design, "one of " + ", ".join(DESIGNS))
    if spec.seeding not in SEEDINGS:
        raise ParameterError("sweep.seeding", spec.seeding, "one of " + ", ".join(SEEDINGS))
    for name, lo in (("samples", 1), ("replicates", 1), ("chunk_size", 1), ("num_shards", 1)):
        value = getattr(spec, name)
        if not isinstance(value, int) or value < lo:
            raise ParameterError(f"sweep.{name}", value, f"an integer >= {lo}")
    if spec.workers < 0:
        raise ParameterError("sweep.workers", spec.workers, "an integer >= 0 (0: every core)")
    if not 0 <= spec.shard < spec.num_shards:
        raise ParameterError(
            "sweep.shard",
            spec.shard,
            f"an integer in [0, {spec.num_shards - 1}] (sweep.num_shards)",
        )
    if spec.design == "sobol" and spec.samples & (spec.samples - 1):
        raise ParameterError(
            "sweep.samples",
            spec.samples,
            "a power of 2 for design=sobol (Sobol' sequences balance only at N = 2^k, e.g. 16)",
        )
    if spec.design == "morris" and spec.morris_levels < 2:
        raise ParameterError("sweep.morris_levels", spec.morris_levels, "an integer >= 2")
    factors = [
        resolve_factor(f, role, f"sweep.{group}[{i}]")
        for group, role in (("uncertainties", "uncertainty"), ("levers", "lever"))
        for i, f in enumerate(getattr(spec, group))
    ]
    seen: set[str] = set()
    for f in factors:
        if f.key in seen:
            raise ParameterError(f"{f.where}.key", f.key, "a key not already declared as a factor")
        seen.add(f.key)
    if spec.design == "grid":
        for f in factors:
            if f.bounds is not None:
                raise ParameterError(
                    f"{f.where}.range",
                    list(f.bounds),
                    f"levels: [...] for {f.key} under design=grid (ranges need lhs, sobol, morris)",
                )
    elif not any(f.bounds is not None for f in factors):
        raise ParameterError(
            "sweep.design", spec.design, "grid, or at least one factor with a range to sample"
        )
    return factors


# --------------------------------------------------------------------------------------------
# The design: points, runs, seeds and shards
# --------------------------------------------------------------------------------------------


def _flat(cfg: Config) -> dict[str, Any]:
    return {key: value for key, _, value in iter_fields(cfg)}


def _set(cfg: Any, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        cfg = getattr(cfg, part)
    setattr(cfg, leaf, value)


def seed_from(seq: np.random.SeedSequence) -> int:
    """A 63-bit integer seed drawn from a SeedSequence (valid for ``seed=`` of ``paradox run``)."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Design:
    """The runs of a sweep: design points (factor values), replicates and their seeds.

    ``base`` is the configuration every run starts from; its ``seed`` is the sweep's base seed.
    When ``scenario`` is a factor, ``scenarios`` maps each of its levels to the base
    configuration composed with that scenario. Run ``run_id`` is replicate
    ``run_id % replicates`` of point ``run_id // replicates``.
    """

    def __init__(
        self,
        spec: SweepSpec,
        base: Config,
        scenarios: Mapping[str, Config] | None = None,
    ) -> None:
        self.spec = spec
        self.factors = check_spec(spec)
        validate(base)
        self.base = base
        self.scenarios = dict(scenarios or {})
        for f in self.factors:
            if f.key == "scenario":
                missing = [lv for lv in f.levels or () if lv not in self.scenarios]
                if missing:
                    raise ParameterError(
                        f"{f.where}.levels",
                        missing[0],
                        "a scenario with a composed base configuration: "
                        + ", ".join(sorted(self.scenarios) or ["none given"]),
                    )
        self.level_factors = [f for f in self.factors if f.levels is not None]
        self.range_factors = [f for f in self.factors if f.bounds is not None]
        self._radix = [len(f.levels or ()) for f in self.level_factors]
        self._matrix = self._sample() if self.range_factors else np.zeros((1, 0))
        self.n_points = math.prod(self._radix) * len(self._matrix)
        self.n_runs = self.n_points * spec.replicates
        root = np.random.SeedSequence(base.seed)
        self._seed_root = (root.entropy, (*root.spawn_key, 1))
        self._common = [
            seed_from(np.random.SeedSequence(root.entropy, spawn_key=(*self._seed_root[1], r)))
            for r in range(spec.replicates)
        ]

    # -- sampling --------------------------------------------------------------------------

    def salib_problem(self) -> dict[str, Any]:
        """SALib's problem over the range factors (integers span ``[lo, hi + 1)``, see below)."""
        bounds = []
        for f in self.range_factors:
            lo, hi = f.bounds or (0.0, 1.0)
            # Integers: sample [lo, hi + 1) and floor, so each integer is equally likely.
            bounds.append([float(lo), float(hi) + 1.0] if f.kind == "int" else [lo, hi])
        return {
            "num_vars": len(bounds),
            "names": [f.key for f in self.range_factors],
            "bounds": bounds,
        }

    def salib_sample(self) -> np.ndarray:
        """SALib's sample over the range factors as drawn, in SALib's order (n x k floats).

        Integer factors are still continuous on ``[lo, hi + 1)`` here (the runs use their
        floors); this is the matrix SALib's analysers expect (``SALib.analyze.morris`` reads the
        direction of each step from it). Redrawn on every call: the same seed, the same matrix.
        """
        import warnings

        from SALib.sample import latin, morris, sobol

        problem = self.salib_problem()
        rng = np.random.default_rng(np.random.SeedSequence(self.base.seed).spawn(2)[0])
        n, spec = self.spec.samples, self.spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if spec.design == "lhs":
                matrix = latin.sample(problem, n, seed=rng)
            elif spec.design == "sobol":
                matrix = sobol.sample(problem, n, calc_second_order=spec.second_order, seed=rng)
            else:
                matrix = morris.sample(problem, n, num_levels=spec.morris_levels, seed=rng)
        return np.asarray(matrix, dtype=float)

    def _sample(self) -> np.ndarray:
        """The SALib sample over the range factors, mapped to their types (n x k floats)."""
        matrix = self.salib_sample()
        for j, f in enumerate(self.range_factors):
            if f.kind == "int":
                lo, hi = f.bounds or (0, 0)
                matrix[:, j] = np.clip(np.floor(matrix[:, j]), lo, hi)
        return matrix

    # -- points and runs --------------------------------------------------------------------

    @property
    def varied(self) -> list[str]:
        """Factor keys in declaration order (uncertainties, then levers)."""
        return [f.key for f in self.factors]

    def point(self, point_id: int) -> dict[str, Any]:
        """Factor values of one design point, keyed by config key, in declaration order."""
        if not 0 <= point_id < self.n_points:
            raise IndexError(point_id)
        combo, row = divmod(point_id, len(self._matrix))
        values: dict[str, Any] = {}
        for f, radix in zip(reversed(self.level_factors), reversed(self._radix), strict=True):
            combo, i = divmod(combo, radix)
            values[f.key] = (f.levels or ())[i]
        for j, f in enumerate(self.range_factors):
            x = self._matrix[row, j]
            values[f.key] = int(x) if f.kind == "int" else float(x)
        return {f.key: values[f.key] for f in self.factors}

    def seed(self, point_id: int, replicate: int) -> int:
        """The integer seed of one run (see the module docstring for the derivation)."""
        if self.spec.seeding == "common":
            return self._common[replicate]
        entropy, key = self._seed_root
        return seed_from(np.random.SeedSequence(entropy, spawn_key=(*key, point_id, replicate)))

    def config(self, run_id: int) -> Config:
        """The configuration of one run: base (or scenario base), factor values, seed.

        It is not validated here: a combination of values that breaks a rule spanning keys makes
        that run fail (and be recorded as failed), not the whole sweep.
        """
        point_id, replicate = divmod(run_id, self.spec.replicates)
        values = self.point(point_id)
        scenario = values.pop("scenario", None)
        cfg = copy.deepcopy(self.base if scenario is None else self.scenarios[scenario])
        for key, value in values.items():
            _set(cfg, key, value)
        cfg.seed = self.seed(point_id, replicate)
        return cfg

    def shard_range(self, shard: int | None = None, num_shards: int | None = None) -> range:
        """Run ids of one shard: the design's runs cut into ``num_shards`` contiguous slices."""
        shard = self.spec.shard if shard is None else shard
        num_shards = self.spec.num_shards if num_shards is None else num_shards
        lo, hi = (self.n_runs * s // num_shards for s in (shard, shard + 1))
        return range(lo, hi)

    # -- identity ---------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Everything that decides the runs and their results, as plain JSON data."""
        spec = {name: _plain(getattr(self.spec, name)) for name in DESIGN_FIELDS}
        return {
            "spec": spec,
            "base": _flat(self.base),
            "scenarios": {name: _flat(cfg) for name, cfg in sorted(self.scenarios.items())},
        }

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def manifest(self) -> dict[str, Any]:
        """The folder's ``sweep.json``: what the design is and which slice of it lives here."""
        shard = self.shard_range()
        return {
            "name": self.spec.name,
            "fingerprint": self.fingerprint(),
            "design": self.spec.design,
            "n_points": self.n_points,
            "replicates": self.spec.replicates,
            "n_runs": self.n_runs,
            "seeding": self.spec.seeding,
            "base_seed": self.base.seed,
            "steps": self.base.steps,
            "max_steps": _max_steps(self),
            "factors": [
                {
                    "key": f.key,
                    "role": f.role,
                    "type": f.kind,
                    **({"levels": list(f.levels)} if f.levels is not None else {}),
                    **({"range": list(f.bounds)} if f.bounds is not None else {}),
                }
                for f in self.factors
            ],
            "varied": self.varied,
            "shard": self.spec.shard,
            "num_shards": self.spec.num_shards,
            "shard_runs": [shard.start, shard.stop],
            "save_timeseries": self.spec.save_timeseries,
            "identity": self.identity(),
        }

    def describe(self) -> str:
        return describe_manifest({"design": self.spec.design, "factors": self.factors,
                                  "n_points": self.n_points, "replicates": self.spec.replicates,
                                  "n_runs": self.n_runs})  # fmt: skip


def describe_manifest(manifest: dict[str, Any]) -> str:
    """One line saying what a design is, from its ``sweep.json`` (or the same keys)."""
    kinds = {"grid": "full grid", "lhs": "Latin hypercube", "sobol": "Sobol'"}
    text = kinds.get(manifest["design"], manifest["design"])

    def n(count: int, word: str) -> str:
        return f"{count} {word}" + ("" if count == 1 else "s")

    return (
        f"{text} over {n(len(manifest['factors']), 'factor')}: {n(manifest['n_points'], 'point')}"
        f" x {n(manifest['replicates'], 'replicate')} = {n(manifest['n_runs'], 'run')}"
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
# One run (executed in a worker process)
# --------------------------------------------------------------------------------------------

Runner = Callable[[Config], pd.DataFrame]


def simulate_table(config: Config) -> pd.DataFrame:
    """The default runner: simulate ``config`` and return its per-step outcome table."""
    from sim.run import simulate, timeseries

    return timeseries(simulate(steps=config.steps, seed=config.seed, config=config))


@dataclass(frozen=True)
class Task:
    run_id: int
    point_id: int
    replicate: int
    config: Config
    keep_timeseries: bool
    runner: Runner


def execute(task: Task) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Run one task; a run that raises becomes a row with status ``failed`` and its error."""
    cfg = task.config
    row: dict[str, Any] = {
        "run_id": task.run_id,
        "point_id": task.point_id,
        "replicate": task.replicate,
        "seed": cfg.seed,
        **parameter_row(cfg),
    }
    try:
        validate(cfg)
        table = task.runner(cfg)
        row.update(outcome_row(summarize(table, cfg.burn_in)), status="ok", error=None)
    except Exception as err:
        message = " ".join(str(err).split()) or "(no message)"
        row.update(outcome_row(None), status="failed", error=f"{type(err).__name__}: {message}")
        return row, None
    if not task.keep_timeseries:
        return row, None
    table = table[["step", *OUTCOMES]].copy()
    table.insert(0, "run_id", task.run_id)
    return row, table


# --------------------------------------------------------------------------------------------
# Writing: atomic files, part files, block-wise merge
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=repr) + "\n")


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


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one call of :func:`run_sweep` did, and the state of the folder afterwards."""

    folder: Path
    runs: int  # runs in this shard
    resumed: int  # of which already on disk before this call
    ran: int  # run by this call
    failed: int  # runs with status failed (all of the shard's, including resumed ones)
    missing: int  # runs with no row (0 unless the sweep stopped early)
    first_error: str | None
    seconds: float
    workers: int

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.missing == 0


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. a SLURM allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


def run_sweep(
    design: Design,
    folder: Path,
    *,
    runner: Runner = simulate_table,
    flush_seconds: float = 30.0,
) -> SweepResult:
    """Run (or resume) the shard ``design.spec.shard`` of ``design`` into ``folder``.

    Writes ``sweep.json`` first; finished runs go to ``parts/`` as they complete; at the end
    ``runs.parquet`` (and ``timeseries.parquet`` with ``save_timeseries``) are merged from the
    parts and the parts are removed. Runs already in the folder are skipped. ``runner`` maps a
    validated configuration to its per-step table (default: the simulation).
    """
    t0 = time.perf_counter()
    spec = design.spec
    folder.mkdir(parents=True, exist_ok=True)
    if not check_manifest(folder, design):
        write_json(folder / MANIFEST_FILE, design.manifest())
    scan_folder(folder)
    ids = design.shard_range()
    done = done_runs(run_sources(folder), ids)
    n_todo = len(ids) - int(done.sum())
    workers = min(spec.workers or available_cores(), max(1, n_todo))
    writer = PartWriter(
        folder,
        runs_schema(design.varied),
        chunk_size=spec.chunk_size,
        keep_ts=spec.save_timeseries,
    )
    tasks = (
        Task(
            run_id=rid,
            point_id=rid // spec.replicates,
            replicate=rid % spec.replicates,
            config=design.config(rid),
            keep_timeseries=spec.save_timeseries,
            runner=runner,
        )
        for rid in ids
        if not done[rid - ids.start]
    )
    bar = tqdm(
        total=len(ids),
        initial=int(done.sum()),
        desc=f"sweep {spec.name}",
        unit="run",
        file=sys.stderr,
        disable=None if spec.progress is None else not spec.progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
        smoothing=0.05,
        dynamic_ncols=True,
    )
    try:
        if workers == 1:
            for task in tasks:
                writer.add(*execute(task))
                bar.update()
                if writer.due(flush_seconds):
                    writer.flush()
        else:
            _run_pool(tasks, writer, bar, workers, flush_seconds)
    finally:
        # Whatever happens (Ctrl-C, a dead worker), the runs that finished are kept.
        writer.flush()
        bar.close()
    stats = finalize(
        [folder],
        folder,
        design.varied,
        timeseries=spec.save_timeseries,
        steps=_max_steps(design),
        chunk_size=spec.chunk_size,
    )
    remove_parts(folder)
    return SweepResult(
        folder=folder,
        runs=len(ids),
        resumed=int(done.sum()),
        ran=writer.written,
        failed=stats.failed,
        missing=len(ids) - stats.rows,
        first_error=stats.first_error,
        seconds=time.perf_counter() - t0,
        workers=workers,
    )


def _max_steps(design: Design) -> int:
    steps = [design.base.steps, *(c.steps for c in design.scenarios.values())]
    steps += [int(v) for f in design.factors if f.key == "steps" for v in (f.levels or f.bounds)]
    return max(steps)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes: forkserver (preloading the model) where there is one, else spawn.

    Plain ``fork`` is avoided: the parent runs threads (pyarrow, tqdm), and forking a threaded
    process can deadlock the child.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sim.experiment", "sim.run"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _standard_start_method(method: str) -> Iterator[None]:
    """Make the process-wide start method a standard one while worker processes start.

    A new worker is told the parent's global start method; inside a job of the joblib launcher
    that is ``loky``, which a fresh worker does not know, so it would die on start-up.
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if current in (None, "fork", "spawn", "forkserver"):
        yield
        return
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


def _run_pool(
    tasks: Iterator[Task], writer: PartWriter, bar: tqdm, workers: int, flush_seconds: float
) -> None:
    """Keep ``4 x workers`` runs in flight; record each as it finishes."""
    ctx = _pool_context()
    with _standard_start_method(ctx.get_start_method()):
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
        _pool_loop(pool, 4 * workers, tasks, writer, bar, flush_seconds)


def _pool_loop(
    pool: ProcessPoolExecutor,
    window: int,
    tasks: Iterator[Task],
    writer: PartWriter,
    bar: tqdm,
    flush_seconds: float,
) -> None:
    inflight: dict[Future, int] = {}
    try:
        exhausted = False
        while inflight or not exhausted:
            while not exhausted and len(inflight) < window:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                inflight[pool.submit(execute, task)] = task.run_id
            if not inflight:
                break
            finished, _ = wait(inflight, timeout=flush_seconds, return_when=FIRST_COMPLETED)
            for future in finished:
                inflight.pop(future)
                writer.add(*future.result())
                bar.update()
            if writer.due(flush_seconds):
                writer.flush()
    except BrokenProcessPool as err:
        raise SweepAborted(
            "a worker process died (out of memory, or killed); the finished runs are saved: "
            "rerun the same command to resume"
        ) from err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def format_result(design: Design, result: SweepResult) -> str:
    """The summary printed at the end of a sweep."""
    spec = design.spec
    shard = f", shard {spec.shard + 1} of {spec.num_shards}" if spec.num_shards > 1 else ""
    rate = result.ran / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"sweep {spec.name}: {design.describe()}{shard}",
        f"{result.runs} runs: {result.ran} run now, {result.resumed} already done; "
        f"{result.runs - result.failed - result.missing} ok, {result.failed} failed"
        + (f", {result.missing} missing" if result.missing else ""),
        f"{result.seconds:.1f} s with {result.workers} worker(s), {rate:.3g} runs/s",
    ]
    if result.failed:
        lines.append(f"first failure: {result.first_error}")
        lines.append("failed runs have status 'failed' and their error in runs.parquet")
    return "\n".join(lines)
