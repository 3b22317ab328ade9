"""Global sensitivity analysis and scenario discovery over the runs of a sweep.

**Sensitivity.** A sweep drawn with ``design: sobol`` gives Sobol' indices: the first-order index
S1 (the share of an outcome's variance due to one parameter alone) and the total index ST (its
share including every interaction), with bootstrap confidence intervals (Sobol' 2001; Saltelli
2002; Saltelli et al. 2010), and with ``second_order`` the pairwise indices S2. A sweep drawn with
``design: morris`` gives Morris's elementary-effects screening (Morris 1991; Campolongo, Cariboni
& Saltelli 2007): μ* (the mean absolute effect of moving one parameter, in the outcome's units per
full range of the parameter), its bootstrap interval, μ (the signed mean) and σ (their spread,
which signals non-linearity or interactions). Both are SALib's estimators (Herman & Usher 2017;
Iwanaga, Usher & Herman 2022) applied to the sweep's table, so :mod:`sim.sweep` draws the
sample, runs it in parallel and resumably, and this module only reads ``runs.parquet``.

Outputs reach SALib in its sampler's order: design point ``p`` of a sampled design is row ``p``
of SALib's matrix (within each combination of ``levels`` factors, which gets a complete sample of
its own and is analysed separately). The replicates of a point are averaged first (with common
random numbers, the default seeding, every point averages the same seeds), so the indices
describe the replicate mean of the outcome; the seed noise left in that mean shows up as spurious
variance, mostly in the total and interaction terms.

Failed runs are never used. A point with a failed or missing run, or with a non-finite outcome,
is *unusable*: for Sobol' the whole Saltelli block of its base sample (the k + 2 points that share
it, or 2k + 2 with second order) is dropped, so the estimate uses fewer base samples N; for Morris
its trajectory is dropped. The tables say how many base samples or trajectories were used.

**Scenario discovery.** Which combinations of parameter ranges produce a condition, e.g. the
paradox (``mean_paradox_index > 0.05``) or alignment that lowers net alignment
(``mean_marginal_return < 0``)? The Patient Rule Induction Method (Friedman & Fisher 1999), as
used for scenario discovery by Bryant & Lempert (2010), peels the parameter space down to boxes
in which the condition is dense. The implementation is EMA Workbench's (Kwakkel 2017), an
optional dependency (``pip install -e '.[discovery]'``); this module picks a box on each
peeling trajectory by a stated rule and reports it as a tidy table. Coverage is the share of all
points of interest that fall in a box, density the share of a box's points that are of interest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.config import ParameterError
from sim.outcomes import OUTCOMES
from sim.sweep import OUTCOME_COLUMNS, Design, seed_from

METHODS: tuple[str, ...] = ("sobol", "morris")
DISCOVERY: tuple[str, ...] = ("auto", "on", "off")
DIRECTIONS: tuple[str, ...] = ("above", "below")
#: Outcomes drawn as figures by default (every analysed outcome is in the tables).
FIGURE_OUTCOMES: tuple[str, ...] = ("mean_net_alignment", "mean_harm_total", "mean_paradox_index")
INSTALL_HINT = "pip install -e '.[discovery]'"

SOBOL_COLUMNS = ("outcome", "parameter", "S1", "S1_conf", "ST", "ST_conf", "n_base")
SECOND_ORDER_COLUMNS = ("outcome", "parameter_1", "parameter_2", "S2", "S2_conf", "n_base")
MORRIS_COLUMNS = (
    "outcome", "parameter", "mu", "mu_star", "mu_star_conf", "sigma", "n_trajectories",
)  # fmt: skip
BOX_COLUMNS = (
    "box", "parameter", "lower", "upper", "levels", "qp_lower", "qp_upper",
    "coverage", "density", "mass", "n", "n_interest", "res_dim",
)  # fmt: skip
TRAJECTORY_COLUMNS = (
    "box", "step", "coverage", "density", "mass", "n", "n_interest", "res_dim", "selected",
)  # fmt: skip
#: A PRIM box describes where a condition holds only if most of its points satisfy it ...
MEANINGFUL_DENSITY = 0.5
#: ... more of them than in the whole sample, and the sample holds enough points of interest.
MIN_POINTS_OF_INTEREST = 10


# --------------------------------------------------------------------------------------------
# Options (the `sensitivity:` block of `paradox sensitivity`)
# --------------------------------------------------------------------------------------------


@dataclass
class PrimSpec:
    """Scenario discovery: which points are of interest, and how PRIM finds boxes."""

    outcome: str = "mean_paradox_index"  # a runs.parquet outcome column
    # a twentieth of the reach in the paradox region, on average: with the simplex split step
    # few points of the default screen reach a quarter (docs/sensitivity.md)
    threshold: float = 0.05
    direction: str = "above"  # above: outcome > threshold is of interest; below: outcome <
    min_density: float = 0.8  # boxes less dense are not chosen (see discover)
    max_boxes: int = 3
    max_qp: float = 0.05  # drop restrictions less significant than this (1: keep them all)
    mass_min: float = 0.05  # PRIM stops peeling below this share of the points
    peel_alpha: float = 0.05  # share of points peeled per step


@dataclass
class SensitivitySpec:
    """What ``paradox sensitivity`` analyses and draws (docs/sensitivity.md)."""

    outcomes: list[str] = field(default_factory=list)  # empty: every final_/mean_ column
    figures: list[str] = field(default_factory=lambda: list(FIGURE_OUTCOMES))
    num_resamples: int = 1000  # bootstrap resamples for the confidence intervals
    conf_level: float = 0.95
    discovery: str = "auto"  # auto: PRIM if EMA Workbench is installed; on: require it; off
    prim: PrimSpec = field(default_factory=PrimSpec)


def outcome_columns(names: Sequence[str], where: str = "sensitivity.outcomes") -> list[str]:
    """Outcome columns of ``runs.parquet`` named by ``names`` (all of them when empty).

    A name is a column (``mean_net_alignment``, ``final_harm_total``) or a bare outcome
    (``net_alignment``: both its ``mean_`` and ``final_`` columns).
    """
    if not names:
        return list(OUTCOME_COLUMNS)
    columns: list[str] = []
    for name in names:
        if name in OUTCOME_COLUMNS:
            columns.append(name)
        elif name in OUTCOMES:
            columns += [f"mean_{name}", f"final_{name}"]
        else:
            import difflib

            close = difflib.get_close_matches(str(name), [*OUTCOME_COLUMNS, *OUTCOMES], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ParameterError(
                where,
                name,
                f"an outcome of docs/ODD.md §5 such as net_alignment, or a runs.parquet column "
                f"mean_<outcome> or final_<outcome>{hint}",
            )
    return list(dict.fromkeys(columns))


def check_spec(spec: SensitivitySpec) -> list[str]:
    """Check the options; return the outcome columns to analyse (tables and figures)."""
    columns = outcome_columns(spec.outcomes)
    figures = outcome_columns(spec.figures, "sensitivity.figures") if spec.figures else []
    if not isinstance(spec.num_resamples, int) or spec.num_resamples < 2:
        raise ParameterError("sensitivity.num_resamples", spec.num_resamples, "an integer >= 2")
    if not 0 < spec.conf_level < 1:
        raise ParameterError("sensitivity.conf_level", spec.conf_level, "a number in (0, 1)")
    if spec.discovery not in DISCOVERY:
        raise ParameterError("sensitivity.discovery", spec.discovery, "one of auto, on, off")
    prim = spec.prim
    if prim.outcome not in OUTCOME_COLUMNS:
        outcome_columns([prim.outcome], "sensitivity.prim.outcome")
        raise ParameterError(
            "sensitivity.prim.outcome", prim.outcome, "one runs.parquet column: mean_<outcome> "
            "or final_<outcome>, e.g. mean_paradox_index"
        )  # fmt: skip
    if prim.direction not in DIRECTIONS:
        raise ParameterError("sensitivity.prim.direction", prim.direction, "above or below")
    if not 0 < prim.min_density <= 1:
        raise ParameterError("sensitivity.prim.min_density", prim.min_density, "a number in (0, 1]")
    if not isinstance(prim.max_boxes, int) or prim.max_boxes < 1:
        raise ParameterError("sensitivity.prim.max_boxes", prim.max_boxes, "an integer >= 1")
    if not 0 < prim.max_qp <= 1:
        raise ParameterError("sensitivity.prim.max_qp", prim.max_qp, "a number in (0, 1]")
    for name in ("mass_min", "peel_alpha"):
        value = getattr(prim, name)
        if not 0 < value < 1:
            raise ParameterError(f"sensitivity.prim.{name}", value, "a number in (0, 1)")
    return list(dict.fromkeys([*columns, *figures]))


def check_design(design: Design) -> str:
    """The method a design supports (``sobol`` or ``morris``), or a ParameterError."""
    spec = design.spec
    if spec.design not in METHODS:
        raise ParameterError(
            "sweep.design",
            spec.design,
            "sobol (Sobol' indices) or morris (Morris screening) for paradox sensitivity; "
            "sweeps with such a design: " + ", ".join(sensitivity_sweeps() or ["none"]),
        )
    if spec.num_shards != 1:
        raise ParameterError(
            "sweep.num_shards",
            spec.num_shards,
            "1: the analysis needs the whole design in one folder (run shards with paradox "
            "sweep, merge them with paradox collect, then analyse with sim.gsa)",
        )
    return spec.design


def sensitivity_sweeps() -> list[str]:
    """Named sweeps in ``conf/sweep/`` with a sobol or morris design."""
    from pathlib import Path

    import yaml

    folder = Path(__file__).resolve().parent.parent / "conf" / "sweep"
    names = []
    for path in sorted(folder.glob("*.yaml")):
        sweep = (yaml.safe_load(path.read_text()) or {}).get("sweep") or {}
        if sweep.get("design") in METHODS:
            names.append(path.stem)
    return names


# --------------------------------------------------------------------------------------------
# From runs to design points
# --------------------------------------------------------------------------------------------


@dataclass
class Points:
    """Replicate means per design point, in point order, and which points are unusable."""

    table: pd.DataFrame  # index point_id; the varied factors, then the outcome columns
    failed: np.ndarray  # per point: a run failed or is missing
    failed_runs: int
    missing_runs: int
    first_error: str | None


def point_means(design: Design, runs: pd.DataFrame, columns: Sequence[str]) -> Points:
    """Average ``columns`` over the replicates of each point of ``design``.

    A point is failed when any of its runs failed or has no row; its outcomes are NaN. An
    outcome that is NaN in one replicate is NaN for the point (not the mean of the others).
    """
    points = pd.DataFrame(
        [design.point(p) for p in range(design.n_points)],
        index=pd.RangeIndex(design.n_points, name="point_id"),
    )
    ok = runs["status"].eq("ok")
    values, point = runs.loc[ok, list(columns)], runs.loc[ok, "point_id"]
    means = values.groupby(point).mean().where(~values.isna().groupby(point).any())
    n_ok = runs.loc[ok].groupby("point_id").size().reindex(points.index, fill_value=0)
    failed = (n_ok < design.spec.replicates).to_numpy()
    means = means.reindex(points.index)
    means.loc[failed, :] = np.nan
    bad = runs.loc[~ok].sort_values("run_id")
    first_error = None
    if len(bad):
        first_error = f"run {int(bad['run_id'].iloc[0])}: {bad['error'].iloc[0]}"
    return Points(
        table=pd.concat([points, means], axis=1),
        failed=failed,
        failed_runs=len(bad),
        missing_runs=design.n_runs - len(runs),
        first_error=first_error,
    )


def groups(design: Design) -> Iterator[tuple[dict[str, Any], slice]]:
    """Each combination of ``levels`` factors and the slice of its points (one SALib sample)."""
    n_combos = math.prod(len(f.levels or ()) for f in design.level_factors)
    rows = design.n_points // n_combos
    for c in range(n_combos):
        first = design.point(c * rows)
        yield {f.key: first[f.key] for f in design.level_factors}, slice(c * rows, (c + 1) * rows)


def bootstrap_seed(design: Design) -> int:
    """Seed of the bootstrap resamples: the third child of ``SeedSequence(seed)`` (never 0).

    The sample is drawn from the first child and the replicate seeds from the second
    (:mod:`sim.sweep`), so the same folder always gives the same intervals.
    """
    seq = np.random.SeedSequence(design.base.seed)
    return seed_from(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, 2))) or 1


# --------------------------------------------------------------------------------------------
# The estimators (SALib), on the usable part of a sample
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' warnings (constant or degenerate resamples) and EMA's INFO log."""
    ema = logging.getLogger("EMA")  # EMA Workbench logs every PRIM box at INFO
    level = ema.level
    ema.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield
    finally:
        ema.setLevel(level)


def sobol_indices(
    problem: Mapping[str, Any],
    y: np.ndarray,
    *,
    second_order: bool = False,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
    seed: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    """Sobol' S1 and ST (and S2) of one output vector in SALib's order, NaN marking unusable.

    Every Saltelli block (the rows of one base sample) with a non-finite value is dropped.
    Returns the per-parameter table, the pairwise table (``second_order``) and the number of
    base samples used; the indices are NaN when fewer than 2 blocks remain or the output is
    constant over them.
    """
    from SALib.analyze import sobol

    names = list(problem["names"])
    k = len(names)
    step = 2 * k + 2 if second_order else k + 2
    y = np.asarray(y, dtype=float)
    if y.size % step:
        raise ValueError(f"{y.size} outputs are not whole Saltelli blocks of {step}")
    blocks = y.reshape(-1, step)
    used = blocks[np.isfinite(blocks).all(axis=1)]
    n = len(used)
    first = pd.DataFrame({"parameter": names})
    pairs = (
        pd.DataFrame(
            [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]],
            columns=["parameter_1", "parameter_2"],
        )
        if second_order
        else None
    )
    if n < 2 or np.ptp(used) == 0:
        for column in ("S1", "S1_conf", "ST", "ST_conf"):
            first[column] = np.nan
        if pairs is not None:
            pairs["S2"], pairs["S2_conf"] = np.nan, np.nan
        return first, pairs, n
    with _quiet():
        si = sobol.analyze(
            dict(problem),
            used.ravel(),
            calc_second_order=second_order,
            num_resamples=num_resamples,
            conf_level=conf_level,
            seed=seed,
        )
    for column in ("S1", "S1_conf", "ST", "ST_conf"):
        first[column] = np.asarray(si[column], dtype=float)
    if pairs is not None:
        iu = np.triu_indices(k, 1)
        pairs["S2"] = np.asarray(si["S2"], dtype=float)[iu]
        pairs["S2_conf"] = np.asarray(si["S2_conf"], dtype=float)[iu]
    return first, pairs, n


def morris_indices(
    problem: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_levels: int = 4,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
    seed: int = 1,
) -> tuple[pd.DataFrame, int]:
    """Morris μ, μ*, its interval and σ of one output vector, NaN marking unusable points.

    ``x`` is SALib's sample as drawn (``Design.salib_sample``), ``y`` the outputs in its order.
    Every trajectory (k + 1 rows) with a non-finite value is dropped. Returns the table and the
    number of trajectories used; the indices are NaN when fewer than 2 remain.
    """
    from SALib.analyze import morris

    names = list(problem["names"])
    step = len(names) + 1
    y = np.asarray(y, dtype=float)
    if y.size % step or len(x) != y.size:
        raise ValueError(f"{y.size} outputs are not whole Morris trajectories of {step}")
    keep = np.isfinite(y.reshape(-1, step)).all(axis=1)
    n = int(keep.sum())
    table = pd.DataFrame({"parameter": names})
    if n < 2:
        for column in ("mu", "mu_star", "mu_star_conf", "sigma"):
            table[column] = np.nan
        return table, n
    rows = np.repeat(keep, step)
    with _quiet():
        si = morris.analyze(
            dict(problem),
            np.asarray(x, dtype=float)[rows],
            y[rows],
            num_resamples=num_resamples,
            conf_level=conf_level,
            num_levels=num_levels,
            seed=seed,
        )
    for column in ("mu", "mu_star", "mu_star_conf", "sigma"):
        table[column] = np.asarray(si[column], dtype=float)
    return table, n


# --------------------------------------------------------------------------------------------
# The analysis of a sweep
# --------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Indices of every analysed outcome, tidy, with what was left out and why."""

    method: str  # sobol or morris
    indices: pd.DataFrame  # [level factors], SOBOL_COLUMNS or MORRIS_COLUMNS
    second_order: pd.DataFrame | None  # [level factors], SECOND_ORDER_COLUMNS
    points: Points
    used: int  # base samples (sobol) or trajectories (morris) used, fewest over outcomes
    total: int  # ... in the design, per combination of levels
    constant: list[str] = field(default_factory=list)  # outcomes with no variance: NaN indices
    level_keys: list[str] = field(default_factory=list)


def analyse(
    design: Design,
    runs: pd.DataFrame,
    columns: Sequence[str],
    *,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
    keep: Sequence[str] = (),
    progress: bool | None = False,
) -> Analysis:
    """Sobol' or Morris indices (by ``design.spec.design``) of ``columns`` of ``runs``.

    ``keep`` names more outcome columns to average per point (for scenario discovery).
    """
    from tqdm import tqdm

    method = check_design(design)
    spec = design.spec
    points = point_means(design, runs, list(dict.fromkeys([*columns, *keep])))
    problem = design.salib_problem()
    k = problem["num_vars"]
    seed = bootstrap_seed(design)
    x = design.salib_sample() if method == "morris" else None
    per_sample = (2 * k + 2 if spec.second_order else k + 2) if method == "sobol" else k + 1
    level_keys = [f.key for f in design.level_factors]
    tables, pairs_tables, constant = [], [], []
    used = math.inf
    work = [(levels, rows, column) for levels, rows in groups(design) for column in columns]
    for levels, rows, column in tqdm(
        work, desc="indices", unit="outcome", disable=None if progress is None else not progress
    ):
        y = points.table[column].to_numpy(float)[rows]
        if method == "sobol":
            table, pairs, n = sobol_indices(
                problem, y, second_order=spec.second_order, num_resamples=num_resamples,
                conf_level=conf_level, seed=seed,
            )  # fmt: skip
            table["n_base"] = n
            if pairs is not None:
                pairs["n_base"] = n
                pairs_tables.append(_tag(pairs, levels, column))
        else:
            table, n = morris_indices(
                problem, x, y, num_levels=spec.morris_levels, num_resamples=num_resamples,
                conf_level=conf_level, seed=seed,
            )  # fmt: skip
            table["n_trajectories"] = n
        used = min(used, n)
        finite = y[np.isfinite(y)]
        if n >= 2 and finite.size and np.ptp(finite) == 0:
            constant.append(group_name(levels, column))
        tables.append(_tag(table, levels, column))
    order = [*level_keys, *(SOBOL_COLUMNS if method == "sobol" else MORRIS_COLUMNS)]
    indices = pd.concat(tables, ignore_index=True)[order]
    second = None
    if pairs_tables:
        second = pd.concat(pairs_tables, ignore_index=True)[[*level_keys, *SECOND_ORDER_COLUMNS]]
    return Analysis(
        method=method,
        indices=indices,
        second_order=second,
        points=points,
        used=int(used) if math.isfinite(used) else 0,
        total=(design.n_points // max(1, _n_combos(design))) // per_sample,
        constant=list(dict.fromkeys(constant)),
        level_keys=level_keys,
    )


def _n_combos(design: Design) -> int:
    return math.prod(len(f.levels or ()) for f in design.level_factors)


def _tag(table: pd.DataFrame, levels: Mapping[str, Any], column: str) -> pd.DataFrame:
    table = table.copy()
    table.insert(0, "outcome", column)
    for i, (key, value) in enumerate(levels.items()):
        table.insert(i, key, value)
    return table


def level_text(value: Any) -> str:
    """A level as written in names: ``30`` for 30.0, ``baseline`` for a scenario."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_name(levels: Mapping[str, Any], column: str) -> str:
    """``column``, or ``column (key=value, ...)`` for one combination of ``levels`` factors."""
    where = ", ".join(f"{k}={level_text(v)}" for k, v in levels.items())
    return f"{column} ({where})" if where else column


# --------------------------------------------------------------------------------------------
# Scenario discovery (PRIM from EMA Workbench)
# --------------------------------------------------------------------------------------------


class DiscoveryUnavailable(ImportError):
    """EMA Workbench (the optional ``discovery`` group) is not installed."""


def load_prim() -> Any:
    """EMA Workbench's ``prim`` module, imported quietly, or :class:`DiscoveryUnavailable`."""
    try:
        with warnings.catch_warnings():
            # It warns on import about optional extras (ipyparallel, altair) it does not need here.
            warnings.simplefilter("ignore")
            from ema_workbench.analysis import prim
    except ImportError as err:
        raise DiscoveryUnavailable(
            f"scenario discovery (PRIM) needs EMA Workbench, which is not installed: {INSTALL_HINT}"
        ) from err
    return prim


def discover(
    x: pd.DataFrame,
    interesting: np.ndarray,
    *,
    bounds: Mapping[str, Sequence[float]] | None = None,
    min_density: float = 0.8,
    max_boxes: int = 3,
    max_qp: float = 0.05,
    mass_min: float = 0.05,
    peel_alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PRIM boxes of the points ``x`` (one column per parameter) where ``interesting`` holds.

    Boxes are found one after another (EMA Workbench's ``Prim.find_box``; each removes its
    points from the next search). On each peeling trajectory the box chosen is, among those
    with density >= ``min_density`` and at least one restricted parameter, the one with the
    largest coverage x density (a box that holds every point of interest and nothing else
    scores 1); if none is that dense, the densest. Then restrictions that are not significant
    are dropped one at a time, the least significant first, while its quasi-p value (the
    one-sided binomial test of Bryant & Lempert 2010, as EMA Workbench computes it, of its most
    significant side) exceeds ``max_qp``; each drop is a new step on the trajectory. A later box
    is kept only if it still reaches ``min_density``; at most ``max_boxes``. ``bounds`` gives
    the declared range of numeric parameters, reported as the limit of an unrestricted side.

    Returns the boxes (one row per box and restricted parameter, :data:`BOX_COLUMNS`) and the
    peeling trajectories (:data:`TRAJECTORY_COLUMNS`).
    """
    prim = load_prim()
    # EMA Workbench drops a column called `scenario` (its own name for the experiment id).
    rename = {c: f"{c} (factor)" for c in x.columns if c == "scenario"}
    back = {v: k for k, v in rename.items()}
    data = x.rename(columns=rename).reset_index(drop=True).copy()
    for c in data.columns:
        if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]):
            data[c] = data[c].astype(object)
        elif pd.api.types.is_integer_dtype(data[c]):
            # PRIM puts box limits between observed values (29.5); pandas 3 refuses to store
            # them in an int64 column of EMA Workbench's box limits, so integer factors go in
            # as floats (their limits are then reported as floats, e.g. n_labs <= 29.5).
            data[c] = data[c].astype(float)
    y = np.asarray(interesting, dtype=bool)
    rows, trajectories = [], []
    with _quiet():
        algorithm = prim.Prim(data, y.copy(), peel_alpha=peel_alpha, mass_min=mass_min)
        for b in range(1, max_boxes + 1):
            box = algorithm.find_box()
            if box is None:
                break
            trajectory = box.peeling_trajectory.reset_index(drop=True)
            i = _choose(trajectory, min_density)
            stats = trajectory.iloc[i]
            if int(stats["res_dim"]) == 0 or (b > 1 and stats["density"] < min_density):
                break
            box.select(i)
            i = _drop_insignificant(box, i, max_qp)
            trajectory = box.peeling_trajectory.reset_index(drop=True)
            stats = trajectory.iloc[i]
            if b > 1 and stats["density"] < min_density:
                break
            init, lims, qp = box.box_lims[0], box.box_lims[i], box.p_values[i]
            for column in data.columns:
                row = _limits(column, init, lims, qp, bounds or {})
                if row is None:
                    continue
                rows.append({"box": b, "parameter": back.get(column, column), **row,
                             **_stats(stats)})  # fmt: skip
            trajectory = trajectory.rename(columns={"id": "step", "k": "n_interest"})
            trajectory["box"] = b
            trajectory["selected"] = trajectory.index == i
            trajectories.append(trajectory)
    boxes = pd.DataFrame(rows, columns=list(BOX_COLUMNS))
    traj = (
        pd.concat(trajectories, ignore_index=True)[list(TRAJECTORY_COLUMNS)]
        if trajectories
        else pd.DataFrame(columns=list(TRAJECTORY_COLUMNS))
    )
    for column in ("step", "n", "n_interest", "res_dim"):
        traj[column] = traj[column].astype(int)
    return boxes, traj


def _choose(trajectory: pd.DataFrame, min_density: float) -> int:
    """The box on a peeling trajectory chosen by the rule of :func:`discover`."""
    restricted = trajectory[trajectory["res_dim"] > 0]
    if restricted.empty:
        return 0
    dense = restricted[restricted["density"] >= min_density - 1e-12]
    if len(dense):
        balance = dense["coverage"] * dense["density"]
        best = dense[balance >= balance.max() - 1e-12]
        return int(best["density"].idxmax())
    densest = restricted[restricted["density"] == restricted["density"].max()]
    return int(densest["coverage"].idxmax())


def _restricted(init: pd.DataFrame, lims: pd.DataFrame, column: str) -> tuple[bool, bool]:
    """Whether a box cuts the lower and the upper side of a parameter (levels: both or none)."""
    lo, hi = lims[column].iloc[0], lims[column].iloc[1]
    lo0, hi0 = init[column].iloc[0], init[column].iloc[1]
    return bool(lo != lo0), bool(hi != hi0)


def _drop_insignificant(box: Any, i: int, max_qp: float) -> int:
    """Drop a PRIM box's least significant restriction while its quasi-p value > ``max_qp``.

    The most significant restriction is always kept. Returns the final box's trajectory index.
    """
    while True:
        init, lims = box.box_lims[0], box.box_lims[i]
        qps = {}
        for column in lims.columns:
            if any(_restricted(init, lims, column)):
                sides = [v for v in box.p_values[i].get(column, []) if v is not None and v >= 0]
                qps[column] = min(sides) if sides else 0.0
        if len(qps) <= 1:
            return i
        worst = max(qps, key=lambda c: qps[c])
        if qps[worst] <= max_qp:
            return i
        box.drop_restriction(worst, i)
        i = len(box.peeling_trajectory) - 1


def _limits(
    column: str,
    init: pd.DataFrame,
    lims: pd.DataFrame,
    qp: Mapping[str, Sequence[float]],
    bounds: Mapping[str, Sequence[float]],
) -> dict[str, Any] | None:
    """A restricted parameter's limits and quasi-p values, or None if it is not restricted."""
    lo, hi = lims[column].iloc[0], lims[column].iloc[1]
    cut_lo, cut_hi = _restricted(init, lims, column)
    if not (cut_lo or cut_hi):
        return None
    q = [np.nan if v is None or v < 0 else float(v) for v in qp.get(column, [np.nan, np.nan])]
    q += [np.nan] * (2 - len(q))
    if isinstance(lo, set):  # a categorical parameter: the levels kept
        return {"lower": np.nan, "upper": np.nan, "levels": ", ".join(sorted(map(str, lo))),
                "qp_lower": q[0], "qp_upper": np.nan}  # fmt: skip
    declared = bounds.get(column)
    return {
        "lower": float(lo if cut_lo or declared is None else declared[0]),
        "upper": float(hi if cut_hi or declared is None else declared[1]),
        "levels": "",
        "qp_lower": q[0] if cut_lo else np.nan,
        "qp_upper": q[1] if cut_hi else np.nan,
    }


def _stats(stats: pd.Series) -> dict[str, Any]:
    return {
        "coverage": float(stats["coverage"]),
        "density": float(stats["density"]),
        "mass": float(stats["mass"]),
        "n": int(stats["n"]),
        "n_interest": int(stats["k"]),
        "res_dim": int(stats["res_dim"]),
    }


@dataclass
class Discovery:
    """PRIM boxes for one condition over a sweep's usable points."""

    rule: str  # e.g. "mean_paradox_index > 0.5"
    n_points: int  # usable points
    n_interest: int  # of which satisfy the rule
    boxes: pd.DataFrame
    trajectory: pd.DataFrame
    note: str | None = None  # why there are no boxes
    warning: str | None = None  # why the first box says little (see box_warning)


def condition(values: np.ndarray, prim: PrimSpec) -> np.ndarray:
    """Which values satisfy the condition of interest (strictly above or below the threshold)."""
    values = np.asarray(values, dtype=float)
    return values > prim.threshold if prim.direction == "above" else values < prim.threshold


def scenario_discovery(design: Design, points: Points, prim: PrimSpec) -> Discovery:
    """PRIM over the usable design points (replicate means) with every factor as a column."""
    sign = ">" if prim.direction == "above" else "<"
    rule = f"{prim.outcome} {sign} {prim.threshold:g}"
    if prim.outcome not in points.table:
        raise KeyError(
            f"the points lack {prim.outcome}: average it with point_means(design, runs, "
            f"[{prim.outcome!r}]) or analyse(..., keep=[{prim.outcome!r}])"
        )
    values = points.table[prim.outcome].to_numpy(float)
    usable = ~points.failed & np.isfinite(values)
    interesting = condition(values[usable], prim)
    n, k = int(usable.sum()), int(interesting.sum())
    empty = Discovery(rule, n, k, pd.DataFrame(columns=list(BOX_COLUMNS)),
                      pd.DataFrame(columns=list(TRAJECTORY_COLUMNS)))  # fmt: skip
    if k == 0 or k == n:
        which = "no" if k == 0 else "every"
        empty.note = f"scenario discovery: {which} usable point has {rule}, nothing to separate"
        return empty
    x = points.table.loc[usable, design.varied]
    bounds = {f.key: f.bounds for f in design.range_factors if f.bounds is not None}
    boxes, trajectory = discover(
        x, interesting, bounds=bounds, min_density=prim.min_density, max_boxes=prim.max_boxes,
        max_qp=prim.max_qp, mass_min=prim.mass_min, peel_alpha=prim.peel_alpha,
    )  # fmt: skip
    found = Discovery(rule, n, k, boxes, trajectory)
    if boxes.empty:
        found.note = f"scenario discovery: PRIM found no box for {rule} that restricts a parameter"
    found.warning = box_warning(found)
    return found


def box_warning(found: Discovery) -> str | None:
    """One line saying why the first PRIM box does not describe where the rule holds, or None.

    A box is meaningless when fewer than half of its points satisfy the rule (density below
    :data:`MEANINGFUL_DENSITY`: it mostly holds points where the rule fails), when its density
    is no higher than the share of all points that satisfy it (the base rate), or when the
    sample holds fewer than :data:`MIN_POINTS_OF_INTEREST` such points (too few to bound).
    """
    if found.boxes.empty or found.n_points == 0:
        return None
    first = found.boxes[found.boxes["box"] == found.boxes["box"].min()].iloc[0]
    density, n = float(first["density"]), int(first["n"])
    base = found.n_interest / found.n_points
    reasons = []
    if density <= base:
        reasons.append(
            f"its density {density:.3f} is no higher than the share of all points that satisfy "
            f"the rule ({base:.3f})"
        )
    elif density < MEANINGFUL_DENSITY:
        reasons.append(
            f"density {density:.3f}: most of its {n} points do not satisfy the rule (base rate "
            f"{base:.3f})"
        )
    if found.n_interest < MIN_POINTS_OF_INTEREST:
        reasons.append(
            f"the sample holds {found.n_interest} point(s) of interest, fewer than "
            f"{MIN_POINTS_OF_INTEREST}"
        )
    if not reasons:
        return None
    return (
        f"PRIM box 1 for {found.rule} is not meaningful: {'; '.join(reasons)}; try another "
        "threshold or a larger sample (sweep.samples)"
    )
