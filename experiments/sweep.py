"""``paradox sweep``: an experiment design (grid, LHS, Sobol', Morris) run inside one job.

The configuration is that of ``paradox run`` (same defaults list, schema and scenario group) plus
a ``sweep`` group: ``conf/sweep/<name>.yaml`` files, each a ``# @package _global_`` file that
states the run settings it needs (``steps``, populations, a learning rule) and, under
``sweep:``, the design (:class:`sim.sweep.SweepSpec`). Command-line overrides win over both,
so ``steps=50`` applies to every run of the sweep.

:func:`to_design` turns a composed configuration into a :class:`sim.sweep.Design` (the
plain step tests call); :func:`main` is the thin Hydra wrapper that runs it into the Hydra run
folder with :func:`sim.sweep.run_sweep` and prints that folder last. Rerunning the same
command with ``hydra.run.dir=<folder>`` resumes a sweep that was stopped.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import outputs, schema, signals
from sim.config import Config, ParameterError
from sim.sweep import (
    Design,
    SweepAborted,
    SweepMismatch,
    SweepResult,
    SweepSpec,
    format_result,
    run_sweep,
)
from sim.sweep.guard import check_folder, code_version, folder_lock

CONF = Path(__file__).resolve().parent.parent / "conf"
#: Name of the sweep app's primary config (built from conf/config.yaml, see primary_config).
PRIMARY = "paradox_sweep"

HELP_HEADER = """paradox sweep: an experiment design over the model's parameters, run in parallel.
Pick a design with sweep=<name> (conf/sweep/) and override any key, e.g.
  paradox sweep sweep=paradox_curve steps=100 sweep.replicates=5 sweep.workers=4
Writes sweep.json, runs.parquet (one row per run: ids, seed, every parameter, every outcome,
status), config.yaml and provenance.json into a fresh folder under results/sweeps/ and prints
its path last. Rerun the same command with hydra.run.dir=<that folder> to resume it.
"""
HELP_FOOTER = """The YAML format, designs, seeds, shards and output columns: docs/sweeps.md.
Every model key: docs/ODD.md. Use --cfg job to print the composed configuration.
"""


@dataclass
class SweepJob(Config):
    """The schema of ``paradox sweep``: a run configuration plus the design under ``sweep``.

    Composing does not validate (``__post_init__`` is a no-op here); :func:`to_design` checks
    the run configuration with the rules of :class:`Config` and the design with those of
    :func:`sim.sweep.check_spec`, each naming the offending key.
    """

    sweep: SweepSpec = field(default_factory=SweepSpec)

    def __post_init__(self) -> None:
        return None


def primary_config() -> dict[str, Any]:
    """``conf/config.yaml`` with the sweep schema, a ``sweep`` group and sweep folders.

    Built from the run's file at import, so ``paradox sweep`` composes exactly what
    ``paradox run`` composes (including scenarios), plus the design.
    """
    conf = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    assert isinstance(conf, dict)
    defaults = ["sweep_job_schema" if d == "config_schema" else d for d in conf["defaults"]]
    # After scenario, so a sweep's own settings win; paradox_curve unless sweep=<name> is given.
    conf["defaults"] = [*defaults, {"sweep": "paradox_curve"}]
    run_dir = "results/sweeps/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}_${sweep.name}"
    hydra_conf = conf.setdefault("hydra", {})
    hydra_conf["run"] = {"dir": run_dir}
    hydra_conf["sweep"] = {"dir": run_dir + "_multirun", "subdir": "${hydra.job.num}"}
    hydra_conf["help"] = {
        **hydra_conf.get("help", {}),
        "app_name": "paradox sweep",
        "header": HELP_HEADER,
        "footer": HELP_FOOTER,
    }
    return conf


_registered = False


def register() -> None:
    """Store the sweep schema and the sweep app's primary config in Hydra's ConfigStore."""
    global _registered
    if _registered:
        return
    schema.register()
    store = ConfigStore.instance()
    store.store(name="sweep_job_schema", node=SweepJob)
    store.store(name=PRIMARY, node=primary_config())
    _registered = True


def base_config(job: SweepJob) -> Config:
    """The run configuration part of a sweep job, validated (raises ``ParameterError``)."""
    return Config(**{f.name: getattr(job, f.name) for f in fields(Config)})


def to_design(cfg: DictConfig, overrides: Sequence[str] = (), primary: str = PRIMARY) -> Design:
    """A composed sweep configuration → its validated :class:`Design`.

    ``overrides`` are the command-line overrides the configuration was composed with. When
    ``scenario`` is a factor, each of its levels is composed again from the primary config
    ``primary`` (the app's: ``paradox sweep``'s by default) with those overrides and
    ``scenario=<level>`` (Hydra must be initialised, as it is inside :func:`main`), so each
    level's base is exactly what ``paradox run scenario=<level> <overrides>`` would run.
    Raises ``ParameterError`` naming the offending key.
    """
    job = OmegaConf.to_object(cfg)
    if not isinstance(job, SweepJob):
        raise TypeError("the composed config is not typed by sweep_job_schema")
    schema.check_keys(cfg, type(job))  # a `+key=value` the schema lacks is refused, not dropped
    base = base_config(job)
    spec = job.sweep
    scenarios: dict[str, Config] = {}
    groups = (("uncertainties", spec.uncertainties), ("levers", spec.levers))
    for group, factors in groups:
        for i, factor in enumerate(factors):
            if factor.key == "scenario" and factor.levels:
                where = f"sweep.{group}[{i}].levels"
                scenarios = {
                    lv: _compose_scenario(lv, overrides, where, primary) for lv in factor.levels
                }
    return Design(spec, base, scenarios)


def _compose_scenario(level: Any, overrides: Sequence[str], where: str, primary: str) -> Config:
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    names = GlobalHydra.instance().config_loader().get_group_options("scenario")
    if level not in names:
        raise ParameterError(where, level, "a scenario: " + ", ".join(names))
    parser = OverridesParser.create()
    kept = [o for o in overrides if parser.parse_override(o).key_or_group != "scenario"]
    composed = compose(config_name=primary, overrides=[*kept, f"scenario={level}"])
    schema.label_scenario(composed, str(level))
    job = OmegaConf.to_object(composed)
    assert isinstance(job, SweepJob)
    return base_config(job)


register()


def check_design_memory(design: Design) -> None:
    """Refuse a sweep whose largest run, times the workers running at once, cannot fit in
    memory (raises ``ParameterError`` naming the population key)."""
    from sim.resources import check_memory
    from sim.sweep import available_cores

    spec = design.spec
    workers = max(1, min(spec.workers or available_cores(), design.n_runs))
    largest, key = design.base, "model.n_adversaries"
    for factor in design.factors:
        if factor.key in ("model.n_adversaries", "model.n_labs"):
            values = [*(factor.levels or []), *(factor.bounds or [])]
            if values:
                largest = dataclasses.replace(
                    largest, model=dataclasses.replace(largest.model, **{
                        factor.key.split(".")[1]: int(max(values))}))  # fmt: skip
                key = f"{factor.key} (a factor of the sweep)"
    check_memory(largest, workers, key=key)


@dataclass
class Job:
    """A sweep job about to run: its validated design and where it writes."""

    design: Design
    out_dir: Path
    overrides: list[str]
    started: str
    t0: float


def start_job(
    cfg: DictConfig,
    app: str = "paradox sweep",
    primary: str = PRIMARY,
    check: Callable[[Design], None] | None = None,
) -> Job:
    """Validate a composed sweep configuration inside a Hydra app, or exit 2 naming the key.

    ``check`` adds the app's own checks of the design (raising ``ParameterError``). A rejected
    job leaves no folder behind (unless the folder already held a sweep).
    """
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    fresh = not (out_dir / "sweep.json").exists()
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    try:
        outputs.check_output_dir(hc, "hydra.run.dir")
        schema.label_scenario(cfg, hc.runtime.choices.get("scenario"))
        design = to_design(cfg, overrides, primary)
        check_design_memory(design)
        if check is not None:
            check(design)
    except ParameterError as err:
        if fresh:
            outputs.discard_run_dir(out_dir, hc.job.name)
        print(f"{app}: {err}", file=sys.stderr)
        sys.exit(2)
    if design.spec.name == "sweep" and hc.runtime.choices.get("sweep"):
        design.spec.name = str(hc.runtime.choices["sweep"])
    return Job(design, out_dir, overrides, started, t0)


def run_job[T](job: Job, cfg: DictConfig, body: Callable[[], T], app: str = "paradox sweep") -> T:
    """Run ``body`` (the sweep, and whatever follows it) in the job's folder.

    Refuses a folder that holds a different sweep (exit 2), writes the resolved configuration
    first (so a folder stopped midway still documents itself), and turns a dead worker (exit 1)
    or Ctrl-C (exit 130) into one line saying how to resume.
    """
    design, out_dir = job.design, job.out_dir
    print(f"sweep {design.spec.name}: {design.describe()} -> {out_dir}", file=sys.stderr)
    try:
        with folder_lock(out_dir):  # a second sweep on this folder is refused, not run twice
            check_folder(out_dir, design)  # the same sweep, from the same code
            outputs.write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            # recorded before the runs, so an invocation killed midway is still listed
            outputs.write_provenance(out_dir / "provenance.json", start_provenance(job))
            return body()
    except SweepMismatch as err:
        print(f"{app}: {err}", file=sys.stderr)
        sys.exit(2)
    except SweepAborted as err:
        print(f"{app}: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:  # a full disk, a folder made read-only midway
        from experiments.hydra_errors import explain_resource

        print(
            f"{app}: {explain_resource(err)}; the finished runs are saved: fix that and rerun "
            f"the same command with hydra.run.dir={out_dir} to resume",
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (experiments.signals)
        print(
            f"{app}: {signals.describe(err)}; the finished runs are saved: rerun the same "
            f"command with hydra.run.dir={out_dir} to resume",
            file=sys.stderr,
        )
        sys.exit(signals.exit_status(err))


def start_provenance(job: Job) -> dict[str, Any]:
    """The provenance of a sweep invocation as it starts (completed by :func:`job_provenance`)."""
    prov = outputs.provenance(
        seed=job.design.base.seed,
        overrides=job.overrides,
        started=job.started,
        finished=None,  # type: ignore[arg-type]
        wall_seconds=None,  # type: ignore[arg-type]
    )
    prov["code"] = code_version()
    prov["status"] = "running"
    return prov


def job_provenance(job: Job, result: SweepResult) -> dict[str, Any]:
    """``provenance.json`` of a sweep job: versions, command, wall time, runs done and failed."""
    prov = outputs.provenance(
        seed=job.design.base.seed,
        overrides=job.overrides,
        started=job.started,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - job.t0, 4),
    )
    prov["code"] = code_version()
    prov["status"] = "finished"
    prov["sweep"] = {
        "runs": result.runs,
        "ran": result.ran,
        "resumed": result.resumed,
        "failed": result.failed,
        "missing": result.missing,
        "workers": result.workers,
    }
    return prov


@hydra.main(version_base="1.3", config_path=str(CONF), config_name=PRIMARY)
def main(cfg: DictConfig) -> None:
    job = start_job(cfg)
    result = run_job(job, cfg, lambda: run_sweep(job.design, job.out_dir))
    outputs.write_provenance(job.out_dir / "provenance.json", job_provenance(job, result))
    print(format_result(job.design, result))
    print(job.out_dir)
    # In a multirun (e.g. shards) a non-zero exit would stop the remaining jobs; there the
    # summary and `paradox collect` report the failures instead.
    if not result.ok and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)


if __name__ == "__main__":
    main()
