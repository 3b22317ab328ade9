"""``paradox run``: one simulation, written to a fresh results folder.

:func:`run` is the plain function (a validated :class:`sim.config.Config` and a folder in, the
folder's files out) that tests call directly; :func:`main` is the thin Hydra wrapper.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from experiments import outputs
from experiments.schema import register
from sim.api import simulate, timeseries
from sim.config import Config, ParameterError
from sim.outcomes import summarize
from sim.resources import check_memory

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

#: Outcomes shown in the printed summary (all of them are in summary.json).
HEADLINE = (
    "mean_alignment",
    "mean_clarity",
    "net_alignment",
    "harm_residual",
    "harm_exploitation",
    "harm_total",
    "success_rate_total",
    "spend_defence",
    "spend_attack",
    "marginal_return",
    "paradox_index",
)


def run(
    config: Config,
    out_dir: Path,
    *,
    resolved_yaml: str | None = None,
    overrides: list[str] | None = None,
    progress: bool | None = None,
) -> dict:
    """Simulate ``config`` and write its results into ``out_dir``; return the summary.

    Files: ``timeseries.parquet`` (one row per step), ``summary.json``, ``config.yaml`` and
    ``provenance.json``; with ``collect_agents`` also ``labs.parquet`` and
    ``adversaries.parquet``. Each is written atomically, after the simulation has finished.
    ``progress=None`` shows a progress bar only when stderr is a terminal.
    """
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    with tqdm(
        total=config.steps,
        desc=f"{config.scenario} seed={config.seed}",
        unit="step",
        file=sys.stderr,
        disable=None if progress is None else not progress,
        leave=False,
    ) as bar:
        model = simulate(
            steps=config.steps,
            seed=config.seed,
            config=config,
            collect_agents=config.collect_agents,
            progress=lambda _: bar.update(),
        )
    table = timeseries(model)
    table["seed"] = config.seed
    table["scenario"] = config.scenario
    summary = {
        "scenario": config.scenario,
        "seed": config.seed,
        "steps": config.steps,
        **summarize(table, config.burn_in),
    }
    wall = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs.write_parquet(out_dir / "timeseries.parquet", table)
    if config.collect_agents:
        for kind, frame in agent_tables(model).items():
            outputs.write_parquet(out_dir / f"{kind}.parquet", frame)
    outputs.write_json(out_dir / "summary.json", summary)
    if resolved_yaml is None:
        resolved_yaml = OmegaConf.to_yaml(OmegaConf.structured(config))
    outputs.write_text(out_dir / "config.yaml", resolved_yaml)
    outputs.write_json(
        out_dir / "provenance.json",
        outputs.provenance(
            seed=config.seed,
            overrides=list(overrides or []),
            started=started,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_seconds=round(wall, 4),
        ),
    )
    return summary


def agent_tables(model) -> dict:
    """Per-agent state from the DataCollector, tidy: one row per (step, agent)."""
    from sim.agents import Adversary, Lab

    tables = {}
    for kind, cls in (("labs", Lab), ("adversaries", Adversary)):
        frame = model.datacollector.get_agenttype_vars_dataframe(cls).reset_index()
        frame = frame.rename(columns={"Step": "step", "Time": "step", "AgentID": "agent_id"})
        if "knowledge" in frame:
            know = frame.pop("knowledge").apply(lambda d: list(d.values()))
            for k, name in enumerate(("weights", "prompt", "output")):
                frame[f"knowledge_{name}"] = know.str[k]
        tables[kind] = frame
    return tables


def format_summary(summary: dict) -> str:
    rows = [f"scenario {summary['scenario']}, seed {summary['seed']}, {summary['steps']} steps",
            f"mean: average over {summary['time_average_over']}; se: its batch-means "
            "standard error"]  # fmt: skip
    rows.append(f"{'outcome':<22}{'final':>12}{'mean':>12}{'se':>12}")
    for name in HEADLINE:
        v = summary["outcomes"][name]
        rows.append(f"{name:<22}{v['final']:>12.4g}{v['mean']:>12.4g}{v['se']:>12.2g}")
    return "\n".join(rows)


register()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    config, out_dir = outputs.validated_or_exit(cfg, "paradox run")
    try:
        check_memory(config)  # 10^8 adversaries: refused with the estimate, not a crash
    except ParameterError as err:
        outputs.discard_run_dir(out_dir, hc.job.name)
        print(f"paradox run: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        summary = run(
            config,
            out_dir,
            resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True),
            overrides=list(hc.overrides.task),
        )
    except BaseException as err:
        # Nothing half-written: a failed or interrupted run leaves no results folder.
        for name in (
            "timeseries.parquet",
            "labs.parquet",
            "adversaries.parquet",
            "summary.json",
            "config.yaml",
            "provenance.json",
        ):
            with contextlib.suppress(OSError):
                (out_dir / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            outputs.discard_run_dir(out_dir, hc.job.name)
        if isinstance(err, (OSError, MemoryError)):  # a full or read-only disk, no memory
            from experiments.hydra_errors import explain_resource

            reason = explain_resource(err) or str(err)
            print(f"paradox run: cannot write {out_dir}: {reason}", file=sys.stderr)
            sys.exit(2)
        raise
    print(format_summary(summary))
    print(out_dir)


if __name__ == "__main__":
    main()
