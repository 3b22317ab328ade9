"""Register the configuration schema (plain dataclasses in :mod:`sim.config`) with Hydra.

``conf/config.yaml`` names ``config_schema`` first in its defaults list, so every value Hydra
composes is typed by these dataclasses: an unknown key or a value of the wrong type fails when
the config is composed, before any run starts. Ranges and cross-field rules are checked when the
composed config is turned into a :class:`sim.config.Config` (:func:`to_config`).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from sim.config import Config

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    ConfigStore.instance().store(name="config_schema", node=Config)
    _registered = True


def to_config(cfg: DictConfig) -> Config:
    """Composed Hydra config → validated :class:`Config` (raises ``ParameterError``)."""
    config = OmegaConf.to_object(cfg)
    if not isinstance(config, Config):  # an untyped config (schema not in the defaults list)
        raise TypeError("the composed config is not typed by config_schema")
    return config
