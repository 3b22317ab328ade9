"""Write the value files of ``conf/`` from the schema, with each key's range and meaning.

The defaults live once, in :mod:`sim.config`. The group YAML files under ``conf/`` spell them out
so that a user can read and copy them; this module regenerates those files (``make conf``) and the
tests check that the committed files equal what it would write.

Usage: ``python -m experiments.genconf [--check]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from sim.config import (
    SOURCES,
    AdversaryLearningConfig,
    Config,
    LabLearningConfig,
    ModelConfig,
    PolicyConfig,
    allowed_text,
    iter_fields,
)

CONF = Path(__file__).resolve().parent.parent / "conf"

#: Which learning parameters each rule reads (the rest keep their schema defaults, unused).
ADVERSARY_RULE_KEYS: dict[str, tuple[str, ...]] = {
    "roth_erev": (
        "rationality",
        "effort_share",
        "effort_adjustment",
        "forgetting",
        "experimentation",
    ),
    "best_response": ("rationality", "effort_share", "effort_adjustment"),
    "imitation": (
        "rationality",
        "effort_share",
        "imitation_intensity",
        "payoff_memory",
        "mutation",
    ),
    "fixed": ("rationality", "effort_share"),
}
LAB_RULE_KEYS: dict[str, tuple[str, ...]] = {
    "best_response": (
        "alignment_share",
        "defence_split",
        "step_size",
        "memory",
        "foresight",
        "split_step",
    ),
    "imitation": ("alignment_share", "defence_split", "memory", "imitation_intensity", "mutation"),
    "fixed": ("alignment_share", "defence_split"),
}

RULE_NOTES: dict[tuple[str, str], str] = {
    ("adversary", "roth_erev"): (
        "Roth & Erev (1995) reinforcement of channel propensities; effort moves toward the myopic\n"
        "# best response; the lab within a channel is chosen by logit on expected gain."
    ),
    ("adversary", "best_response"): (
        "Myopic best response: effort moves toward the Tullock best response against the target\n"
        "# just attacked; targets chosen by logit on expected gain."
    ),
    ("adversary", "imitation"): (
        "Fermi-rule imitation (Szabó & Tőke 1998) of a random neighbour's effort share on G;\n"
        "# targets chosen by logit on expected gain."
    ),
    ("adversary", "fixed"): "No adaptation: constant effort share; targets by logit on gain.",
    ("lab", "best_response"): (
        "Myopic best response: projected gradient step on (s, ω) for the one-step-ahead\n"
        "# expected objective, using the attack rates the lab has observed."
    ),
    ("lab", "imitation"): (
        "Fermi-rule imitation of a random other lab's (s, ω) on realised performance."
    ),
    ("lab", "fixed"): "Exogenous alignment share and defence split (paradox-curve sweeps).",
}


def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _emit(obj: Any, indent: int, keys: tuple[str, ...] | None = None) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        if keys is not None and f.name not in keys:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{pad}{f.name}:  # {doc}")
            lines.extend(_emit(value, indent + 1))
            continue
        m = f.metadata
        sym = f"{m['symbol']}: " if m.get("symbol") else ""
        comment = f"{sym}{m['doc']}; {allowed_text(f)}"
        lines.append(f"{pad}{f.name}: {_yaml_value(value)}  # {comment}")
    return lines


HEADER = (
    "# Generated from sim/config.py by `python -m experiments.genconf`;"
    " edit the schema, not this.\n"
)


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    files: dict[Path, str] = {}
    files[CONF / "model" / "default.yaml"] = (
        HEADER
        + "# Populations and mechanisms (docs/ODD.md §2–3).\n"
        + "\n".join(_emit(ModelConfig(), 0))
    )
    files[CONF / "policy" / "default.yaml"] = (
        HEADER
        + "# Policy levers (docs/ODD.md §7.6); each key's comment names its 'off' value.\n"
        + "\n".join(_emit(PolicyConfig(), 0))
    )
    for rule, keys in ADVERSARY_RULE_KEYS.items():
        obj = AdversaryLearningConfig(rule=rule)
        note = RULE_NOTES[("adversary", rule)]
        body = [f"rule: {rule}", *_emit(obj, 0, keys)]
        files[CONF / "learning" / "adversary" / f"{rule}.yaml"] = (
            HEADER + f"# {note}\n" + "\n".join(body)
        )
    for rule, keys in LAB_RULE_KEYS.items():
        obj = LabLearningConfig(rule=rule)
        note = RULE_NOTES[("lab", rule)]
        body = [f"rule: {rule}", *_emit(obj, 0, keys)]
        files[CONF / "learning" / "lab" / f"{rule}.yaml"] = HEADER + f"# {note}\n" + "\n".join(body)
    return {path: text + "\n" for path, text in files.items()}


ODD = CONF.parent / "docs" / "ODD.md"
TABLE_START = "<!-- parameter-table:start (generated by `python -m experiments.genconf`) -->"
TABLE_END = "<!-- parameter-table:end -->"


def parameter_table() -> str:
    """The ODD parameter table: symbol, key, default, allowed range, meaning, source."""
    rows = [
        "| symbol | config key | default | allowed | meaning | source or rationale |",
        "|---|---|---|---|---|---|",
    ]
    for key, f, value in iter_fields(Config()):
        m = f.metadata
        allowed = allowed_text(f) if (m.get("lo") is not None or m.get("choices")) else "—"
        default_source = "run setting" if "." not in key else "illustrative (see §8)"
        source = SOURCES.get(key, default_source)
        sym = m.get("symbol") or "—"
        rows.append(
            f"| {sym} | `{key}` | `{_yaml_value(value)}` | {allowed} | {m['doc']} | {source} |"
        )
    return "\n".join(rows)


def render_odd(text: str) -> str:
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    return text[: start + len(TABLE_START)] + "\n" + parameter_table() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if ODD.exists():
        current = ODD.read_text()
        wanted = render_odd(current)
        if wanted != current:
            stale.append(ODD)
            if not args.check:
                ODD.write_text(wanted)
    if args.check and stale:
        print("out of date: " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
