"""The ``paradox`` command: ``paradox <command> [hydra overrides]``.

Each command is a module under ``experiments/`` with a ``main`` entry point (a Hydra app or a
plain argparse one); this dispatcher only picks it and hands over the remaining arguments.
"""

from __future__ import annotations

import importlib
import os
import sys

#: command → (module, one-line description, example)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "experiments.run",
        "one simulation; writes a results folder and prints its path last",
        "paradox run scenario=open_frontier steps=300 seed=7 model.n_adversaries=5000",
    ),
    "sweep": (
        "experiments.sweep",
        "an experiment design (grid, LHS, Sobol', Morris) with replicates, in parallel; resumable",
        "paradox sweep sweep=paradox_curve steps=100 sweep.workers=4",
    ),
    "sensitivity": (
        "experiments.sensitivity",
        "Sobol' indices or Morris screening of every outcome, and PRIM scenario discovery",
        "paradox sensitivity sweep=sobol_screen sweep.samples=64 sweep.workers=2",
    ),
    "collect": (
        "experiments.collect",
        "merge sweep shards or a Hydra multirun folder into one runs.parquet",
        "paradox collect results/multiruns/2025-01-31/12-00-00-000000",
    ),
    "status": (
        "experiments.status",
        "per-shard progress of a sweep or a multirun of its shards (e.g. on SLURM)",
        "paradox status results/sweeps/2025-01-31/12-00-00-000000_sobol_screen_multirun",
    ),
    "plot": (
        "experiments.plot",
        "every figure a results folder supports (PDF, PNG 300 dpi, caption)",
        "paradox plot results/sweeps/2025-01-31/12-00-00-000000_paradox_curve",
    ),
    "report": (
        "experiments.report",
        "the main job: scenarios, paradox curve, regime map, policy grid; figures and report.md",
        "paradox report --out results/report",
    ),
    "theory": (
        "experiments.theory",
        "closed-form static game, paradox curve, q*, κ* and the mean-field ODE",
        "paradox theory scenario=contest_1v1 model.coupling=0.5",
    ),
    "boundary": (
        "experiments.boundary",
        "the simulated paradox boundary κ*(top-lab reach) by bisection, against both theories",
        "paradox boundary --zeta 0.5,1,1.5,2 --seeds 20",
    ),
    "validate": (
        "experiments.validate",
        "the market theory against the simulation on random markets (table and figure)",
        "paradox validate --markets 32 --seeds 20",
    ),
    "app": (
        "experiments.app",
        "the live model in the browser (Mesa SolaraViz on 127.0.0.1, offline); prints its URL",
        "paradox app --port 8765",
    ),
}

FOOTER = """
Scenarios: baseline, no_paradox, open_frontier, closed_api, publication_moratorium,
defence_mandate, decoupling_breakthrough, deterrence_regime, escalation, concentrated_market,
competitive_market.
`paradox <command> --help` lists every configuration key; docs/ODD.md documents them.
"""


def usage() -> str:
    lines = ["usage: paradox <command> [key=value ...] [hydra options]", "", "commands:"]
    for name, (_, text, example) in COMMANDS.items():
        lines.append(f"  {name:<12}{text}")
        lines.append(f"  {'':<12}e.g. {example}")
    return "\n".join(lines) + "\n" + FOOTER


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"paradox: unknown command '{command}'\n\n{usage()}", file=sys.stderr, end="")
        return 2
    sys.argv = [f"paradox {command}", *rest]
    # Hydra's errors reach hydra_errors.explain (one line, exit 2) instead of Hydra's report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from experiments import signals

    signals.install()  # SIGTERM (SLURM, timeout) is handled like Ctrl-C
    try:
        module = importlib.import_module(COMMANDS[command][0])
        result = module.main()
    except KeyboardInterrupt as err:  # not handled further down: nothing to resume
        print(f"paradox {command}: {signals.describe(err)}", file=sys.stderr)
        return signals.exit_status(err)
    except Exception as err:
        from experiments.hydra_errors import explain

        message = explain(err, command)
        if message is None:
            raise
        print(f"paradox {command}: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
