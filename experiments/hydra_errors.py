"""Hydra's own errors (unknown group option, unknown key, wrong type, malformed override) as the
project's one-line messages.

Hydra reports these with several lines of its own text and exit status 1. ``paradox`` runs its
Hydra apps with ``HYDRA_FULL_ERROR=1`` so that the exception reaches :func:`explain`, which turns
it into one line naming the key or option and what is allowed; the dispatcher exits 2, as for
every other bad input. Composition fails before Hydra creates a run folder, so nothing is
written.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _schema_for(app: str) -> type:
    if app in ("sweep", "report"):
        from experiments.sweep import SweepJob

        return SweepJob
    if app == "sensitivity":
        from experiments.sensitivity import SensitivityJob

        return SensitivityJob
    from sim.config import Config

    return Config


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _allowed(key: str, schema: type) -> str | None:
    """The allowed values of a dotted leaf key of ``schema``, as in ParameterError messages."""
    import dataclasses

    from sim.config import allowed_text

    node: Any = schema
    field = None
    for part in key.split("."):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
        found = {f.name: f for f in dataclasses.fields(node)}.get(part)
        if found is None:
            return None
        field = found
        default = (
            found.default_factory()  # type: ignore[misc]
            if found.default_factory is not dataclasses.MISSING
            else found.default
        )
        node = type(default) if dataclasses.is_dataclass(default) else None
    if field is None:
        return None
    kind = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
        str(field.type).replace(" | None", ""), f"a value of type {field.type}"
    )
    meta = field.metadata
    if meta and (meta.get("choices") or meta.get("lo") is not None or meta.get("hi") is not None):
        text = allowed_text(field)
        return text if meta.get("choices") else f"{kind} in {text}"
    return kind


def explain(err: BaseException, app: str) -> str | None:
    """One line for a Hydra or OmegaConf error raised while composing, else ``None``."""
    from hydra.errors import (
        ConfigCompositionException,
        HydraException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        group, _, name = missing.rpartition("/")
        if group and err.options is not None:
            options = list(err.options)
            allowed = ", ".join(options) if options else "none found"
            return (
                f"unknown {group} '{name}' (override as {group}=<name>); allowed: {allowed}"
                f"{_did_you_mean(name, options)}"
            )
        return _first_line(err)
    if isinstance(err, OverrideParseException):
        lines = [
            line.strip()
            for line in str(err.message).splitlines()
            if line.strip() and not line.startswith(("Error parsing override", "See http"))
        ]
        reason = "; ".join(lines) or "cannot be parsed"
        return f"malformed override '{err.override}': {reason} (the override grammar: {GRAMMAR})"
    if isinstance(err, ConfigCompositionException):
        text = str(err)
        match = re.search(r"Could not override '([^']+)'", text) or re.search(
            r"Could not append to config\. An item is already at '([^']+)'", text
        )
        if match and "Could not override" in match.group(0):
            from experiments.schema import UnknownKey, _leaf_keys

            schema = _schema_for(app)
            key = match.group(1)
            parent = key.rpartition(".")[0]
            known = [k for k in _leaf_keys(schema) if k.rpartition(".")[0] == parent]
            return str(UnknownKey(key, known, _leaf_keys(schema)))
        cause = err.__cause__
        match = re.search(r"Error merging override (\S+)", text)
        if match and isinstance(cause, OmegaConfBaseException):
            override = match.group(1)
            key, _, value = override.partition("=")
            key = key.lstrip("+~")
            allowed = _allowed(key, _schema_for(app))
            if allowed is not None:
                return f"invalid value for '{key}': {value!r}; allowed: {allowed}"
            return f"invalid value for '{key}': {value!r} ({_first_line(cause)})"
        where = re.match(r"In '([^']+)'", text)
        source = f"{where.group(1)}.yaml: " if where else ""
        full_key = getattr(cause, "full_key", None)
        found = re.search(r"Key '[^']+' not in .*\n\s*full_key: (\S+)", text)
        if full_key is None and found:  # raised while merging a config file: text only
            full_key = found.group(1)
        if full_key and (found or re.match(r"Key '[^']+' not in", str(cause))):
            from experiments.schema import UnknownKey, _leaf_keys

            leaves = _leaf_keys(_schema_for(app))
            parent = full_key.rpartition(".")[0]
            known = [k for k in leaves if k.rpartition(".")[0] == parent]
            return source + str(UnknownKey(full_key, known, leaves))
        if isinstance(cause, OmegaConfBaseException):
            return f"{source}{_first_line(cause)}" + (f" (key '{full_key}')" if full_key else "")
        return _first_line(err)
    if isinstance(err, HydraException):
        return _first_line(err)
    import yaml

    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        at = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a YAML file"
        return f"malformed YAML in {at}: {err.problem or err.context or 'cannot be parsed'}"
    if isinstance(err, yaml.YAMLError):
        return f"malformed YAML: {_first_line(err)}"
    return explain_resource(err)


def explain_resource(err: BaseException) -> str | None:
    """One line for a file, folder or memory problem (a read-only or full disk, an unreadable
    table, too little memory), naming the file; ``None`` for anything else."""
    import errno

    if isinstance(err, OSError):
        name = err.filename or ""
        reason = err.strerror or " ".join(str(err).split())
        detail = re.search(r"\[errno (\d+)\] (.*)", str(err))  # pyarrow's OSError: no errno
        if err.errno is None and detail:
            err = OSError(int(detail.group(1)), detail.group(2))
            reason = detail.group(2)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason += " (the disk is full, or a file-size limit is reached)"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason += " (the folder is read-only for you: choose another output folder)"
        return f"cannot use {name}: {reason}" if name else f"{reason}"
    if type(err).__module__.startswith("pyarrow"):
        text = " ".join(str(err).split())
        match = re.search(r"'(/[^']+)'", text)
        where = f" {match.group(1)}" if match else " a table"
        return f"cannot read{where}: it is not a readable parquet file ({text[:160]})"
    if isinstance(err, MemoryError):
        return "out of memory (fewer adversaries, or fewer sweep.workers)"
    return None
