"""The ``paradox`` command: ``paradox <command> [hydra overrides]``."""

from __future__ import annotations

import sys

USAGE = """usage: paradox <command> [key=value ...] [hydra options]

commands:
  run     one simulation; writes a results folder and prints its path last
          e.g. paradox run scenario=open_frontier steps=300 seed=7 model.n_adversaries=5000

Scenarios: baseline, no_paradox, open_frontier, closed_api, publication_moratorium,
defence_mandate, decoupling_breakthrough, deterrence_regime, escalation.
`paradox run --help` lists every configuration key; docs/ODD.md documents them.
"""

COMMANDS = ("run",)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"paradox: unknown command '{command}'\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    sys.argv = [f"paradox {command}", *rest]
    if command == "run":
        from experiments.run import main as run_main

        run_main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
