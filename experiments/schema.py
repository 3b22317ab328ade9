"""Register the configuration schema (plain dataclasses in :mod:`sim.config`) with Hydra.

``conf/config.yaml`` names ``config_schema`` first in its defaults list, so every value Hydra
composes is typed by these dataclasses: an unknown key or a value of the wrong type fails when
the config is composed, before any run starts. Ranges and cross-field rules are checked when the
composed config is turned into a :class:`sim.config.Config` (:func:`to_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from sim.config import Config, ParameterError

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    ConfigStore.instance().store(name="config_schema", node=Config)
    _registered = True


class UnknownKey(ParameterError):
    """A configuration key that the schema does not have (e.g. added with ``+key=value``)."""

    def __init__(self, key: str, known: list[str], everywhere: list[str] = ()) -> None:
        self.key, self.value, self.allowed = key, None, ", ".join(known)
        leaf = key.rpartition(".")[2]
        close: list[str] = []
        # a sibling first; else a key of another group (or without its group)
        for candidates in (known, everywhere):
            by_leaf: dict[str, list[str]] = {}
            for k in candidates:
                by_leaf.setdefault(k.rpartition(".")[2], []).append(k)
            for name in difflib.get_close_matches(leaf, list(by_leaf), n=2, cutoff=0.75):
                close += by_leaf[name]
            if close:
                break
        hint = f"; did you mean {' or '.join(close[:3])}?" if close else ""
        parent = key.rpartition(".")[0]
        where = f"'{parent}'" if parent else "the configuration"
        ValueError.__init__(
            self, f"unknown key '{key}'{hint} ({where} has no such key; --help lists every key)"
        )


def _leaf_keys(schema: type, prefix: str = "") -> list[str]:
    out = []
    for name, hint in _dataclass_hints(schema).items():
        sub = _element_dataclass(hint)
        out += _leaf_keys(sub, f"{prefix}{name}.") if sub is not None else [prefix + name]
    return out


def _dataclass_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _element_dataclass(hint: Any) -> type | None:
    """The dataclass of a field's value (``Factor`` for ``list[Factor] | None``), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        found = _element_dataclass(arg)
        if found is not None:
            return found
    return None


def check_keys(cfg: Any, schema: type = Config, prefix: str = "", root: type | None = None) -> None:
    """Raise :class:`UnknownKey` for the first key of ``cfg`` that ``schema`` does not define.

    Hydra's struct mode refuses ``model.coupleing=0.5`` but ``+model.coupleing=0.5`` (the fix
    Hydra's own message suggests) adds the key, and ``OmegaConf.to_object`` drops it silently;
    so every composed key is checked against the dataclasses, recursively. ``hydra`` is Hydra's.
    """
    hints = _dataclass_hints(schema)
    keys = list(cfg.keys()) if isinstance(cfg, DictConfig) else []
    for key in keys:
        if not prefix and key == "hydra":
            continue
        name = f"{prefix}{key}"
        if key not in hints:
            known = [f"{prefix}{k}" for k in hints]
            raise UnknownKey(name, known, _leaf_keys(root or schema))
        sub = _element_dataclass(hints[key])
        if sub is None:
            continue
        value = cfg._get_node(key)  # no interpolation is resolved here
        if isinstance(value, DictConfig):
            check_keys(value, sub, name + ".", root or schema)
        elif isinstance(value, ListConfig):
            for i, item in enumerate(value):
                if isinstance(item, DictConfig):
                    check_keys(item, sub, f"{name}[{i}].", root or schema)


def label_scenario(cfg: DictConfig, choice: str | None) -> None:
    """Label a composed configuration by the scenario file actually composed (``choice``, the
    ``scenario`` group's option), not by whatever ``scenario:`` value it holds: a user scenario
    without that key would otherwise run labelled ``baseline``."""
    if choice and "scenario" in cfg and cfg.scenario != choice:
        cfg.scenario = str(choice)


def to_config(cfg: DictConfig) -> Config:
    """Composed Hydra config → validated :class:`Config` (raises ``ParameterError``, or
    :class:`UnknownKey` for a key the schema does not have)."""
    check_keys(cfg, Config)
    config = OmegaConf.to_object(cfg)
    if not isinstance(config, Config):  # an untyped config (schema not in the defaults list)
        raise TypeError("the composed config is not typed by config_schema")
    return config
