"""The sweep specification: what a ``conf/sweep/*.yaml`` file's ``sweep:`` block holds, and its
factors resolved and checked against the configuration schema.

A *sweep* varies some configuration keys (its *factors*) around a base :class:`~sim.config.Config`
and runs every design point several times with different seeds. Following the XLRM framing of
robust decision making (Lempert, Popper & Bankes 2003) and the EMA Workbench (Kwakkel 2017),
factors are declared either as *uncertainties* (facts about the world the modeller cannot choose)
or as *levers* (policies or decisions); both are ordinary dotted config keys.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from sim.config import Config, ParameterError, _check_leaf, iter_fields

DESIGNS: tuple[str, ...] = ("grid", "lhs", "sobol", "morris")
SEEDINGS: tuple[str, ...] = ("common", "independent")
ROLES: tuple[str, ...] = ("uncertainty", "lever")
#: Leaf keys of :class:`Config` that are never factors: the seed comes from the replicates, and
#: ``burn_in`` says how runs are summarised (one setting per sweep; the ``burn_in`` column holds
#: each run's burn-in in steps, so no parameter column shares its name).
NOT_FACTORS: tuple[str, ...] = ("seed", "burn_in", "collect_agents")
#: Columns that identify a run, first in ``runs.parquet``.

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
    block_open_weights: bool = True  # replicates stratified on the largest lab's open weights
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
    resume_other_code: bool = False  # resume a folder whose runs came from other model code


#: Spec fields that decide which runs exist and what they compute (the rest only say how to run).
DESIGN_FIELDS: tuple[str, ...] = (
    "design",
    "samples",
    "replicates",
    "seeding",
    "block_open_weights",
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
