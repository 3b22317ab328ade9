"""The experiment design: a checked :class:`~sim.sweep.spec.SweepSpec` expanded into points,
runs, seeds and shards.

Designs (:data:`sim.sweep.spec.DESIGNS`):

- ``grid``: the full factorial product of every factor's ``levels`` (first factor slowest).
- ``lhs``: Latin hypercube sampling (McKay, Beckman & Conover 1979), ``samples`` points.
- ``sobol``: Saltelli's extension of the Sobol' sequence for variance-based sensitivity analysis
  (Sobol' 2001; Saltelli 2002; Saltelli et al. 2010); ``samples`` is the base size N, a power of 2,
  giving N (k + 2) points, or N (2k + 2) with second-order indices.
- ``morris``: elementary-effects trajectories (Morris 1991; Campolongo, Cariboni & Saltelli 2007),
  ``samples`` trajectories of k + 1 points.

The three sampled designs are drawn with SALib (Herman & Usher 2017; Iwanaga, Usher & Herman
2022) over the factors that have a ``range``; factors given as ``levels`` are crossed with the
sample, so each combination of levels gets a complete sample of its own (e.g. one Sobol' sample
per policy). Integer keys are sampled uniformly over their integers.

Seeds come from :class:`numpy.random.SeedSequence` (the NumPy documentation's recommended way to
derive independent streams for parallel work): with base seed ``s`` the design's sampling stream is
``SeedSequence(s).spawn(2)[0]`` and replicate ``r`` of point ``p`` gets the 63-bit integer drawn
from ``SeedSequence(s).spawn(2)[1].spawn(R)[r]`` (``seeding: common``, the same seeds at every
point: common random numbers, so differences between points are not seed noise) or from
``...spawn(2)[1].spawn(P)[p].spawn(R)[r]`` (``seeding: independent``). Either way the integer is
stored in the run's ``seed`` column, and ``paradox run seed=<it>`` with the same parameters
reproduces the run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.config import Config, ParameterError, iter_fields, validate
from sim.rules import top_lab_open
from sim.sweep.spec import DESIGN_FIELDS, SweepSpec, check_spec

# --------------------------------------------------------------------------------------------
# The design: points, runs, seeds and shards
# --------------------------------------------------------------------------------------------


def _flat(cfg: Config) -> dict[str, Any]:
    return {key: value for key, _, value in iter_fields(cfg)}


def _set(cfg: Any, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        cfg = getattr(cfg, part)
    setattr(cfg, leaf, value)


def seed_from(seq: np.random.SeedSequence) -> int:
    """A 63-bit integer seed drawn from a SeedSequence (valid for ``seed=`` of ``paradox run``)."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Design:
    """The runs of a sweep: design points (factor values), replicates and their seeds.

    ``base`` is the configuration every run starts from; its ``seed`` is the sweep's base seed.
    When ``scenario`` is a factor, ``scenarios`` maps each of its levels to the base
    configuration composed with that scenario. Run ``run_id`` is replicate
    ``run_id % replicates`` of point ``run_id // replicates``.
    """

    def __init__(
        self,
        spec: SweepSpec,
        base: Config,
        scenarios: Mapping[str, Config] | None = None,
    ) -> None:
        self.spec = spec
        self.factors = check_spec(spec)
        validate(base)
        self.base = base
        self.scenarios = dict(scenarios or {})
        for f in self.factors:
            if f.key == "scenario":
                missing = [lv for lv in f.levels or () if lv not in self.scenarios]
                if missing:
                    raise ParameterError(
                        f"{f.where}.levels",
                        missing[0],
                        "a scenario with a composed base configuration: "
                        + ", ".join(sorted(self.scenarios) or ["none given"]),
                    )
        self.level_factors = [f for f in self.factors if f.levels is not None]
        self.range_factors = [f for f in self.factors if f.bounds is not None]
        self._radix = [len(f.levels or ()) for f in self.level_factors]
        self._matrix = self._sample() if self.range_factors else np.zeros((1, 0))
        self.n_points = math.prod(self._radix) * len(self._matrix)
        self.n_runs = self.n_points * spec.replicates
        root = np.random.SeedSequence(base.seed)
        self._seed_root = (root.entropy, (*root.spawn_key, 1))
        self._common = [
            seed_from(np.random.SeedSequence(root.entropy, spawn_key=(*self._seed_root[1], r)))
            for r in range(spec.replicates)
        ]

    # -- sampling --------------------------------------------------------------------------

    def salib_problem(self) -> dict[str, Any]:
        """SALib's problem over the range factors (integers span ``[lo, hi + 1)``, see below)."""
        bounds = []
        for f in self.range_factors:
            lo, hi = f.bounds or (0.0, 1.0)
            # Integers: sample [lo, hi + 1) and floor, so each integer is equally likely.
            bounds.append([float(lo), float(hi) + 1.0] if f.kind == "int" else [lo, hi])
        return {
            "num_vars": len(bounds),
            "names": [f.key for f in self.range_factors],
            "bounds": bounds,
        }

    def salib_sample(self) -> np.ndarray:
        """SALib's sample over the range factors as drawn, in SALib's order (n x k floats).

        Integer factors are still continuous on ``[lo, hi + 1)`` here (the runs use their
        floors); this is the matrix SALib's analysers expect (``SALib.analyze.morris`` reads the
        direction of each step from it). Redrawn on every call: the same seed, the same matrix.
        """
        import warnings

        from SALib.sample import latin, morris, sobol

        problem = self.salib_problem()
        rng = np.random.default_rng(np.random.SeedSequence(self.base.seed).spawn(2)[0])
        n, spec = self.spec.samples, self.spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if spec.design == "lhs":
                matrix = latin.sample(problem, n, seed=rng)
            elif spec.design == "sobol":
                matrix = sobol.sample(problem, n, calc_second_order=spec.second_order, seed=rng)
            else:
                matrix = morris.sample(problem, n, num_levels=spec.morris_levels, seed=rng)
        return np.asarray(matrix, dtype=float)

    def _sample(self) -> np.ndarray:
        """The SALib sample over the range factors, mapped to their types (n x k floats)."""
        matrix = self.salib_sample()
        for j, f in enumerate(self.range_factors):
            if f.kind == "int":
                lo, hi = f.bounds or (0, 0)
                matrix[:, j] = np.clip(np.floor(matrix[:, j]), lo, hi)
        return matrix

    # -- points and runs --------------------------------------------------------------------

    @property
    def varied(self) -> list[str]:
        """Factor keys in declaration order (uncertainties, then levers)."""
        return [f.key for f in self.factors]

    def point(self, point_id: int) -> dict[str, Any]:
        """Factor values of one design point, keyed by config key, in declaration order."""
        if not 0 <= point_id < self.n_points:
            raise IndexError(point_id)
        combo, row = divmod(point_id, len(self._matrix))
        values: dict[str, Any] = {}
        for f, radix in zip(reversed(self.level_factors), reversed(self._radix), strict=True):
            combo, i = divmod(combo, radix)
            values[f.key] = (f.levels or ())[i]
        for j, f in enumerate(self.range_factors):
            x = self._matrix[row, j]
            values[f.key] = int(x) if f.kind == "int" else float(x)
        return {f.key: values[f.key] for f in self.factors}

    def seed(self, point_id: int, replicate: int) -> int:
        """The integer seed of one run (see the module docstring for the derivation)."""
        if self.spec.seeding == "common":
            return self._common[replicate]
        entropy, key = self._seed_root
        return seed_from(np.random.SeedSequence(entropy, spawn_key=(*key, point_id, replicate)))

    def config(self, run_id: int) -> Config:
        """The configuration of one run: base (or scenario base), factor values, seed.

        It is not validated here: a combination of values that breaks a rule spanning keys makes
        that run fail (and be recorded as failed), not the whole sweep.
        """
        point_id, replicate = divmod(run_id, self.spec.replicates)
        values = self.point(point_id)
        scenario = values.pop("scenario", None)
        cfg = copy.deepcopy(self.base if scenario is None else self.scenarios[scenario])
        for key, value in values.items():
            _set(cfg, key, value)
        cfg.seed = self.seed(point_id, replicate)
        if self.spec.block_open_weights and cfg.policy.open_weights_selection == "random":
            top_open = top_lab_open(replicate, cfg.model.n_labs, cfg.policy.open_weights_share)
            if top_open is not None:  # some labs open and some closed: a stratum per replicate
                cfg.policy.open_weights_selection = (
                    "random_top_open" if top_open else "random_top_closed"
                )
        return cfg

    def shard_range(self, shard: int | None = None, num_shards: int | None = None) -> range:
        """Run ids of one shard: the design's runs cut into ``num_shards`` contiguous slices."""
        shard = self.spec.shard if shard is None else shard
        num_shards = self.spec.num_shards if num_shards is None else num_shards
        lo, hi = (self.n_runs * s // num_shards for s in (shard, shard + 1))
        return range(lo, hi)

    # -- identity ---------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Everything that decides the runs and their results, as plain JSON data."""
        spec = {name: _plain(getattr(self.spec, name)) for name in DESIGN_FIELDS}
        return {
            "spec": spec,
            "base": _flat(self.base),
            "scenarios": {name: _flat(cfg) for name, cfg in sorted(self.scenarios.items())},
        }

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def max_steps(self) -> int:
        """The longest run of the design (the base's, a scenario's, or a ``steps`` factor's)."""
        steps = [self.base.steps, *(c.steps for c in self.scenarios.values())]
        steps += [int(v) for f in self.factors if f.key == "steps" for v in (f.levels or f.bounds)]
        return max(steps)

    def manifest(self) -> dict[str, Any]:
        """The folder's ``sweep.json``: what the design is and which slice of it lives here."""
        shard = self.shard_range()
        return {
            "name": self.spec.name,
            "fingerprint": self.fingerprint(),
            "design": self.spec.design,
            "n_points": self.n_points,
            "replicates": self.spec.replicates,
            "n_runs": self.n_runs,
            "seeding": self.spec.seeding,
            "base_seed": self.base.seed,
            "steps": self.base.steps,
            "max_steps": self.max_steps(),
            "factors": [
                {
                    "key": f.key,
                    "role": f.role,
                    "type": f.kind,
                    **({"levels": list(f.levels)} if f.levels is not None else {}),
                    **({"range": list(f.bounds)} if f.bounds is not None else {}),
                }
                for f in self.factors
            ],
            "varied": self.varied,
            "shard": self.spec.shard,
            "num_shards": self.spec.num_shards,
            "shard_runs": [shard.start, shard.stop],
            "save_timeseries": self.spec.save_timeseries,
            "identity": self.identity(),
        }

    def describe(self) -> str:
        return describe_manifest({"design": self.spec.design, "factors": self.factors,
                                  "n_points": self.n_points, "replicates": self.spec.replicates,
                                  "n_runs": self.n_runs})  # fmt: skip


def describe_manifest(manifest: dict[str, Any]) -> str:
    """One line saying what a design is, from its ``sweep.json`` (or the same keys)."""
    kinds = {"grid": "full grid", "lhs": "Latin hypercube", "sobol": "Sobol'"}
    text = kinds.get(manifest["design"], manifest["design"])

    def n(count: int, word: str) -> str:
        return f"{count} {word}" + ("" if count == 1 else "s")

    return (
        f"{text} over {n(len(manifest['factors']), 'factor')}: {n(manifest['n_points'], 'point')}"
        f" x {n(manifest['replicates'], 'replicate')} = {n(manifest['n_runs'], 'run')}"
    )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
