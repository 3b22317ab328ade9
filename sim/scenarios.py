"""Scenarios for the Python API: ``conf/scenario/<name>.yaml`` composed as ``paradox run`` does.

``paradox run scenario=escalation`` composes the scenario with Hydra. The Python API
(:func:`sim.run_model`, :class:`sim.AlignmentParadoxModel`, :func:`sim.config_from_flat`) takes
``scenario=<name>`` too and must give the same configuration without importing Hydra. The files
are simple enough to compose here: the defaults list of ``conf/config.yaml`` chooses one file per
config group (``learning/adversary``, ``learning/lab``), a scenario may override those choices in
its own ``defaults:`` list (``- override /learning/lab: fixed``), and its other keys are applied
last. The tests check, for every scenario, that this equals Hydra's composition.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from sim.config import Config, ParameterError

CONF = Path(__file__).resolve().parent.parent / "conf"
#: Top-level keys of ``conf/config.yaml`` that are not configuration values.
_NOT_VALUES = ("defaults", "hydra")


def scenario_names(conf: Path = CONF) -> list[str]:
    return sorted(p.stem for p in (conf / "scenario").glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError("scenario", str(path), "a YAML mapping of configuration keys")
    return data


def scenario_values(name: str, conf: Path = CONF) -> dict[str, Any]:
    """The nested configuration values ``paradox run scenario=<name>`` composes, as a dict
    (group files, then the scenario; run-level keys such as ``steps`` included).

    ``name`` is a scenario of ``conf/scenario/`` or a path to a scenario YAML file.
    """
    path = (
        Path(name) if str(name).endswith((".yaml", ".yml")) else conf / "scenario" / f"{name}.yaml"
    )
    if not path.is_file():
        names = scenario_names(conf)
        raise ParameterError("scenario", name, "one of " + ", ".join(names))
    primary = _load(conf / "config.yaml")
    choices: dict[str, str] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            if group != "scenario":
                choices[group] = option
    scenario = _load(path)
    for entry in scenario.get("defaults", []):
        if isinstance(entry, dict):
            ((key, option),) = entry.items()
            group = key.removeprefix("override").strip().lstrip("/")
            if group not in choices:
                raise ParameterError(f"{path.name}: defaults", key, "a config group override")
            choices[group] = option
    values: dict[str, Any] = {k: v for k, v in primary.items() if k not in _NOT_VALUES}
    for group, option in choices.items():
        group_values = _load(conf / group / f"{option}.yaml")
        node = values
        for part in group.split("/"):
            node = node.setdefault(part, {})
        _merge(node, group_values)
    _merge(values, {k: v for k, v in scenario.items() if k != "defaults"})
    values.setdefault("scenario", path.stem)
    if "scenario" not in scenario:  # a user scenario without a label: name it after its file
        values["scenario"] = path.stem
    return values


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def apply_values(cfg: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set nested ``values`` on a config dataclass (unknown keys raise ``ParameterError``)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in values.items():
        if key not in names:
            raise ParameterError(f"{prefix}{key}", value, "a key of the configuration schema")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            apply_values(current, value, f"{prefix}{key}.")
        else:
            setattr(cfg, key, value)


def scenario_config(name: str, conf: Path = CONF) -> Config:
    """An unvalidated :class:`Config` holding scenario ``name`` (defaults elsewhere)."""
    cfg = Config.__new__(Config)
    base = Config()
    for f in dataclasses.fields(Config):
        setattr(cfg, f.name, getattr(base, f.name))
    apply_values(cfg, scenario_values(name, conf))
    return cfg
