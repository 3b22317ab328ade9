"""``paradox sensitivity``: which parameters drive the paradox, and where it occurs.

Runs a named sweep with a ``sobol`` or ``morris`` design (``conf/sweep/``) through the sweep
engine, exactly as ``paradox sweep`` does (parallel, resumable, same folder layout), then
analyses its ``runs.parquet`` with :mod:`sim.gsa`: Sobol' indices (S1, ST, with bootstrap
intervals) or Morris screening (μ*, σ) for every outcome column, and PRIM scenario discovery
(EMA Workbench, the optional ``discovery`` group) for one condition such as
``mean_paradox_index > 0.5``. Tables, figures (:mod:`sim.figures`) and a summary go into the
same folder; its path is printed last.

The configuration is that of ``paradox sweep`` plus a ``sensitivity`` block
(:class:`sim.gsa.SensitivitySpec`). :func:`run_sensitivity` is the plain function
(a design, a folder and the options in; the folder's files out) that tests call with another
runner (e.g. the Ishigami function); :func:`main` is the thin Hydra wrapper. Rerunning the same
command on the same folder (``hydra.run.dir=``) resumes the sweep or, when it is complete, only
redoes the analysis, so the ``sensitivity.*`` options can be changed without running anything.
docs/sensitivity.md documents the command, the tables and the figures.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import outputs, sweep
from sim import figures
from sim.config import ParameterError
from sim.gsa import (
    INSTALL_HINT,
    Analysis,
    Discovery,
    DiscoveryUnavailable,
    SensitivitySpec,
    analyse,
    check_design,
    check_spec,
    group_name,
    level_text,
    load_prim,
    scenario_discovery,
    sensitivity_sweeps,
)
from sim.sweep import (
    RUNS_FILE,
    Design,
    Runner,
    SweepResult,
    format_result,
    run_sweep,
    simulate_table,
)

APP = "paradox sensitivity"
PRIMARY = "paradox_sensitivity"
DEFAULT_SWEEP = "sobol_screen"
FIGURES_DIR = "figures"
#: Files this command writes into the sweep folder (besides the sweep's own).
TABLES = {
    "sobol": "sobol_indices.csv",
    "sobol2": "sobol_second_order.csv",
    "morris": "morris_indices.csv",
    "boxes": "prim_boxes.csv",
    "trajectory": "prim_trajectory.csv",
    "points": "points.parquet",
    "summary": "sensitivity.json",
}

HELP_HEADER = """paradox sensitivity: Sobol' indices or Morris screening of every outcome, and PRIM
scenario discovery, over a named sweep with design sobol or morris (conf/sweep/), e.g.
  paradox sensitivity sweep=sobol_screen sweep.samples=64 sweep.workers=2
  paradox sensitivity sweep=morris_screen sensitivity.prim.threshold=0.3
Runs the sweep (parallel, resumable), then writes sobol_indices.csv or morris_indices.csv,
prim_boxes.csv, figures/ and sensitivity.json next to its runs.parquet, and prints the folder
last. Rerun with hydra.run.dir=<that folder> to resume, or to redo only the analysis.
"""
HELP_FOOTER = """Tables, figures, options and caveats: docs/sensitivity.md; the sweep keys:
docs/sweeps.md. PRIM needs the optional group: pip install -e '.[discovery]'.
"""


@dataclass
class SensitivityJob(sweep.SweepJob):
    """The schema of ``paradox sensitivity``: a sweep job plus the analysis options."""

    sensitivity: SensitivitySpec = field(default_factory=SensitivitySpec)


def primary_config() -> dict[str, Any]:
    """``paradox sweep``'s primary config with this schema, sobol_screen and its own folders."""
    conf = sweep.primary_config()
    conf["defaults"] = [
        {"sweep": DEFAULT_SWEEP}
        if isinstance(d, dict) and "sweep" in d
        else "sensitivity_job_schema"
        if d == "sweep_job_schema"
        else d
        for d in conf["defaults"]
    ]
    run_dir = "results/sensitivity/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}_${sweep.name}"
    conf["hydra"]["run"] = {"dir": run_dir}
    conf["hydra"]["sweep"] = {"dir": run_dir + "_multirun", "subdir": "${hydra.job.num}"}
    conf["hydra"]["help"].update(app_name=APP, header=HELP_HEADER, footer=HELP_FOOTER)
    return conf


@functools.cache
def register() -> None:
    """Store the schema and the primary config of ``paradox sensitivity`` with Hydra (once)."""
    sweep.register()
    ConfigStore.instance().store(name="sensitivity_job_schema", node=SensitivityJob)
    ConfigStore.instance().store(name=PRIMARY, node=primary_config())


# --------------------------------------------------------------------------------------------
# The plain functions
# --------------------------------------------------------------------------------------------


def discovery_enabled(spec: SensitivitySpec) -> tuple[bool, str | None]:
    """Whether PRIM runs, and why not; ParameterError if it is required but not installed."""
    if spec.discovery == "off":
        return False, "scenario discovery off (sensitivity.discovery=off)"
    try:
        load_prim()
    except DiscoveryUnavailable:
        if spec.discovery == "on":
            raise ParameterError(
                "sensitivity.discovery",
                spec.discovery,
                f"auto or off, or install EMA Workbench for PRIM: {INSTALL_HINT}",
            ) from None
        return False, f"scenario discovery skipped: EMA Workbench is not installed ({INSTALL_HINT})"
    return True, None


def check(design: Design, spec: SensitivitySpec) -> tuple[bool, str | None]:
    """Everything that can be refused before a run starts (raises ParameterError)."""
    check_design(design)
    check_spec(spec)
    return discovery_enabled(spec)


@dataclass
class Report:
    """What one call of :func:`run_sensitivity` computed and wrote."""

    folder: Path
    result: SweepResult
    analysis: Analysis
    discovery: Discovery | None
    discovery_note: str | None
    files: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result.ok


def run_sensitivity(
    design: Design, folder: Path, spec: SensitivitySpec, *, runner: Runner = simulate_table
) -> Report:
    """Run (or resume) the design's sweep into ``folder``, then analyse it there."""
    run_discovery, note = check(design, spec)
    result = run_sweep(design, folder, runner=runner)
    return analyse_folder(design, folder, spec, result, run_discovery, note)


def analyse_folder(
    design: Design,
    folder: Path,
    spec: SensitivitySpec,
    result: SweepResult,
    run_discovery: bool,
    discovery_note: str | None = None,
) -> Report:
    """Indices, PRIM boxes, figures and ``sensitivity.json`` from ``folder/runs.parquet``."""
    columns = check_spec(spec)
    needed = {"run_id", "point_id", "status", "error", *columns, spec.prim.outcome}
    runs = pd.read_parquet(folder / RUNS_FILE, columns=sorted(needed))
    analysis = analyse(
        design,
        runs,
        columns,
        num_resamples=spec.num_resamples,
        conf_level=spec.conf_level,
        keep=[spec.prim.outcome] if run_discovery else [],
        progress=design.spec.progress,
    )
    _clear_previous(folder)
    # The indices are written before discovery starts, so they survive whatever PRIM does.
    written = _write_tables(folder, analysis, None)
    found = scenario_discovery(design, analysis.points, spec.prim) if run_discovery else None
    note = discovery_note if found is None else found.note
    if found is not None and found.warning:
        print(f"{APP}: warning: {found.warning}", file=sys.stderr, flush=True)
    report = Report(folder, result, analysis, found, note)
    report.files += written
    if found is not None:
        report.files += _write_discovery(folder, found)
    report.files += _write_figures(folder, design, spec, analysis, found)
    report.summary = summary(design, spec, report)
    outputs.write_json(folder / TABLES["summary"], report.summary)
    report.files.append(folder / TABLES["summary"])
    return report


def _clear_previous(folder: Path) -> None:
    """Remove this command's earlier tables and figures (a rerun may draw other outcomes)."""
    for name in ("boxes", "trajectory", "sobol2"):
        (folder / TABLES[name]).unlink(missing_ok=True)
    for path in (folder / FIGURES_DIR).glob("*"):
        if path.name.startswith(("sobol_", "morris_", "prim_")):
            path.unlink()


def _csv(folder: Path, name: str, table: pd.DataFrame) -> Path:
    path = folder / name
    outputs.write_text(path, table.to_csv(index=False))
    return path


def _write_tables(folder: Path, analysis: Analysis, found: Discovery | None) -> list[Path]:
    written = [_csv(folder, TABLES[analysis.method], analysis.indices)]
    if analysis.second_order is not None:
        written.append(_csv(folder, TABLES["sobol2"], analysis.second_order))
    if found is not None:
        written += _write_discovery(folder, found)
    points = analysis.points.table.copy()
    points["failed"] = analysis.points.failed
    outputs.write_parquet(folder / TABLES["points"], points.reset_index())
    written.append(folder / TABLES["points"])
    return written


def _write_discovery(folder: Path, found: Discovery) -> list[Path]:
    return [
        _csv(folder, TABLES["boxes"], found.boxes),
        _csv(folder, TABLES["trajectory"], found.trajectory),
    ]


def _slug(levels: dict[str, Any]) -> str:
    text = "_".join(f"{k.rsplit('.', 1)[-1]}-{level_text(v)}" for k, v in levels.items())
    return ("__" + re.sub(r"[^A-Za-z0-9_.-]+", "-", text)) if text else ""


def _write_figures(
    folder: Path,
    design: Design,
    spec: SensitivitySpec,
    analysis: Analysis,
    found: Discovery | None,
) -> list[Path]:
    out = folder / FIGURES_DIR
    written: list[Path] = []
    table = analysis.indices
    drawn = check_spec(SensitivitySpec(outcomes=spec.figures, figures=[])) if spec.figures else []
    level_keys = analysis.level_keys
    combos = table[level_keys].drop_duplicates().to_dict("records") if level_keys else [{}]
    what = "ST" if analysis.method == "sobol" else "mu_star"
    for levels in combos:
        sub = table
        for key, value in levels.items():
            sub = sub[sub[key] == value]
        for column in drawn:
            rows = sub[sub["outcome"] == column]
            if rows[what].isna().all() or (rows[what].abs() < 1e-15).all():
                continue  # constant over the sample: nothing to draw
            name = f"{analysis.method}_{column}{_slug(levels)}"
            if analysis.method == "sobol":
                fig = figures.sensitivity_bars(rows, column)
                fig.axes[0].set_xlabel(f"Sobol' index of {figures.outcome_label(column)}")
            else:
                fig = figures.morris_screen(rows, column)
            caption = _caption(design, spec, analysis, column, levels)
            written += figures.save(fig, out / name, caption)
    if found is not None and not found.boxes.empty:
        bounds = {f.key: list(f.bounds) for f in design.range_factors if f.bounds is not None}
        where = f"{found.n_points} design points of sweep {design.spec.name}"
        caption = (
            f"PRIM boxes (Friedman & Fisher 1999; EMA Workbench, Kwakkel 2017) for "
            f"{found.rule} over the {where} ({found.n_interest} of interest; replicate means). "
            "Each panel is one box: for every restricted parameter, the grey bar is its declared "
            "range scaled to 0-1 and the blue bar the box's limits. Coverage: share of all points "
            "of interest inside the box; density: share of the box's points that are of interest. "
            "The box chosen on each peeling trajectory maximises coverage x density among those "
            f"with density >= {spec.prim.min_density:g}; restrictions that are not significant "
            f"(quasi-p value above {spec.prim.max_qp:g}) are then dropped, which widens the box "
            "and can lower its density below that target (prim_boxes.csv gives the final "
            "coverage and density)."
        )
        fig = figures.prim_boxes(found.boxes, bounds)
        written += figures.save(fig, out / "prim_boxes", caption)
        caption = (
            f"PRIM peeling trajectories for {found.rule} over the {where}: coverage against "
            "density at each peeling step (right to left), followed by the steps that drop "
            "insignificant restrictions (which turn back towards more coverage and less "
            "density); stars mark the boxes in prim_boxes.csv."
        )
        fig = figures.prim_tradeoff(found.trajectory)
        written += figures.save(fig, out / "prim_tradeoff", caption)
    return written


def _caption(
    design: Design,
    spec: SensitivitySpec,
    analysis: Analysis,
    column: str,
    levels: dict[str, Any],
) -> str:
    k = len(design.range_factors)
    at = ", ".join(f"{key} = {level_text(value)}" for key, value in levels.items())
    at = f" at {at}" if at else ""
    reps = design.spec.replicates
    mean = f"replicate means of {reps} runs per point" if reps > 1 else "one run per point"
    conf = f"{spec.conf_level:.0%} bootstrap intervals ({spec.num_resamples} resamples)"
    label = figures.outcome_label(column)
    if analysis.method == "sobol":
        return (
            f"Sobol' first-order (S1, blue) and total (ST, orange) indices of {label} for the "
            f"{k} parameters of sweep {design.spec.name}{at}, with {conf}; N = {analysis.used} "
            f"base samples ({mean}). S1 is the share of the outcome's variance due to a "
            "parameter alone; ST adds its interactions, so ST - S1 measures interactions."
        )
    return (
        f"Morris screening of {label} for the {k} parameters of sweep {design.spec.name}{at}: "
        "mu* (mean absolute elementary effect, in the outcome's units per full range of the "
        f"parameter, with {conf}) against sigma (standard deviation of the elementary effects); "
        f"{analysis.used} trajectories on {design.spec.morris_levels} levels ({mean}). Dotted "
        "lines: sigma/mu* = 0.1, 0.5, 1 (Garcia Sanchez et al. 2014); parameters above them act "
        "non-linearly or through interactions, parameters near the origin are inert."
    )


# --------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------


def summary(design: Design, spec: SensitivitySpec, report: Report) -> dict[str, Any]:
    """The content of ``sensitivity.json``: what was analysed, left out, found and written."""
    analysis, found = report.analysis, report.discovery
    points = analysis.points
    unit = "base_samples" if analysis.method == "sobol" else "trajectories"
    what = ("ST", "ST_conf") if analysis.method == "sobol" else ("mu_star", "mu_star_conf")
    top: dict[str, list[dict[str, Any]]] = {}
    drawn = check_spec(SensitivitySpec(outcomes=spec.figures, figures=[])) if spec.figures else []
    keys = analysis.level_keys
    for column in drawn:
        rows = analysis.indices[analysis.indices["outcome"] == column].dropna(subset=[what[0]])
        for levels, sub in rows.groupby(keys, sort=False) if keys else [((), rows)]:
            best = sub.sort_values(what[0], ascending=False).head(3)
            name = group_name(dict(zip(keys, levels, strict=True)), column)
            top[name] = json.loads(best[["parameter", *what]].to_json(orient="records"))
    out: dict[str, Any] = {
        "method": analysis.method,
        "sweep": design.spec.name,
        "parameters": [f.key for f in design.range_factors],
        "level_factors": analysis.level_keys,
        "statistic": "outcome column of runs.parquet, averaged over the replicates of a point",
        "replicates": design.spec.replicates,
        "outcomes": sorted(set(analysis.indices["outcome"])),
        "constant_outcomes": analysis.constant,
        unit: {"used": analysis.used, "design": analysis.total},
        "confidence": {"level": spec.conf_level, "resamples": spec.num_resamples},
        "failed": {
            "runs": points.failed_runs,
            "missing_runs": points.missing_runs,
            "points": [int(p) for p in points.table.index[points.failed]],
            "first_error": points.first_error,
        },
        "top": top,
        "discovery": {"ran": found is not None, "note": report.discovery_note},
        "files": sorted(str(p.relative_to(report.folder)) for p in report.files),
    }
    if found is not None:
        boxes = []
        for b, rows in found.boxes.groupby("box", sort=True):
            first = rows.iloc[0]
            boxes.append({
                "box": int(b),
                "coverage": float(first["coverage"]),
                "density": float(first["density"]),
                "dense": bool(first["density"] >= spec.prim.min_density),
                "n": int(first["n"]),
                "limits": {
                    r["parameter"]: r["levels"] or [r["lower"], r["upper"]]
                    for r in json.loads(rows.to_json(orient="records"))
                },
            })  # fmt: skip
        out["discovery"].update(
            rule=found.rule,
            points=found.n_points,
            of_interest=found.n_interest,
            boxes=boxes,
            warning=found.warning,
        )
    return out


def format_report(design: Design, spec: SensitivitySpec, report: Report) -> str:
    """The lines printed after the sweep's own summary."""
    s, analysis = report.summary, report.analysis
    unit = "base samples N" if analysis.method == "sobol" else "trajectories"
    method = "Sobol' indices" if analysis.method == "sobol" else "Morris screening"
    reps = design.spec.replicates
    lines = [
        f"{method} of {len(s['outcomes'])} outcome columns x {len(s['parameters'])} parameters: "
        f"{analysis.used} of {analysis.total} {unit} used, replicate means of {reps} run(s) per "
        f"point, {spec.conf_level:.0%} intervals from {spec.num_resamples} bootstrap resamples"
    ]
    if s["failed"]["points"]:
        pts = s["failed"]["points"]
        shown = ", ".join(map(str, pts[:10])) + (", ..." if len(pts) > 10 else "")
        left_out = "Saltelli blocks" if analysis.method == "sobol" else "trajectories"
        lines.append(
            f"left out: {len(pts)} point(s) with failed or missing runs ({shown}) and their "
            f"{left_out}; first error: {s['failed']['first_error']}"
        )
    if analysis.constant:
        shown = ", ".join(analysis.constant[:6]) + (", ..." if len(analysis.constant) > 6 else "")
        lines.append(f"constant over the sample (indices NaN): {len(analysis.constant)}: {shown}")
    what = ("ST", "ST_conf") if analysis.method == "sobol" else ("mu_star", "mu_star_conf")
    for column, rows in s["top"].items():
        if rows:
            items = ", ".join(f"{r['parameter']} {r[what[0]]:.3g} ± {r[what[1]]:.2g}" for r in rows)
            lines.append(f"{column}: largest {what[0]}: {items}")
    found = report.discovery
    if found is None or found.boxes.empty:
        lines.append(report.discovery_note or "scenario discovery: no box")
    else:
        n_boxes = found.boxes["box"].nunique()
        lines.append(
            f"scenario discovery: {found.rule} at {found.n_interest} of {found.n_points} "
            f"points; {n_boxes} box(es)"
        )
        for box in s["discovery"]["boxes"]:
            limits = "; ".join(
                f"{p} in {v}" if isinstance(v, str) else f"{p} in [{v[0]:.3g}, {v[1]:.3g}]"
                for p, v in box["limits"].items()
            )
            weak = "" if box["dense"] else f", below the target {spec.prim.min_density:g}"
            lines.append(
                f"  box {box['box']} (coverage {box['coverage']:.3f}, density "
                f"{box['density']:.3f}{weak}, {box['n']} points): {limits}"
            )
    n_figures = sum(1 for p in report.files if p.suffix == ".pdf")
    tables = [p.name for p in report.files if p.suffix in (".csv", ".parquet", ".json")]
    lines.append(f"wrote {', '.join(tables)} and {n_figures} figure(s) in {FIGURES_DIR}/")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _unknown_sweep(argv: list[str]) -> str | None:
    """The message for ``sweep=<name>`` naming no file in conf/sweep/, before Hydra composes."""
    for arg in argv:
        match = re.fullmatch(r"sweep=([\w-]+)", arg)
        if match and not (sweep.CONF / "sweep" / f"{match[1]}.yaml").exists():
            allowed = ", ".join(sensitivity_sweeps()) or "none"
            err = ParameterError(
                "sweep", match[1], f"a sweep in conf/sweep/ with design sobol or morris: {allowed}"
            )
            return f"{APP}: {err}"
    return None


register()


@hydra.main(version_base="1.3", config_path=str(sweep.CONF), config_name=PRIMARY)
def _app(cfg: DictConfig) -> None:
    job_config = OmegaConf.to_object(cfg)
    assert isinstance(job_config, SensitivityJob)
    spec = job_config.sensitivity
    checked: list[tuple[bool, str | None]] = []
    job = sweep.start_job(cfg, APP, PRIMARY, lambda design: checked.append(check(design, spec)))
    run_discovery, note = checked[0]

    def _body() -> Report:
        result = run_sweep(job.design, job.out_dir)
        return analyse_folder(job.design, job.out_dir, spec, result, run_discovery, note)

    report = sweep.run_job(job, cfg, _body, APP)
    prov = sweep.job_provenance(job, report.result)
    prov["sensitivity"] = {
        "method": report.analysis.method,
        "used": report.analysis.used,
        "design": report.analysis.total,
        "discovery": report.discovery is not None,
    }
    outputs.write_provenance(job.out_dir / "provenance.json", prov)
    print(format_result(job.design, report.result))
    print(format_report(job.design, spec, report))
    print(job.out_dir)
    if not report.ok and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)


def main() -> None:
    message = _unknown_sweep(sys.argv[1:])
    if message:
        print(message, file=sys.stderr)
        sys.exit(2)
    _app()


if __name__ == "__main__":
    main()
