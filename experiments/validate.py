"""``paradox validate``: the market theory against the simulation on random markets.

Markets are drawn by Latin hypercube from a fixed design seed (chosen before any result was
seen, and recorded in the output), over the ranges of docs/theory.md §4.7: labs 4–20,
adversaries 100–3,000 (log-uniform), reach exponent ζ 0–2, mean adversary budget ē 0.1–2
(log-uniform), compromise persistence ρ 0–0.8, coupling κ 0.3–1, and the open-weights
selection (random, largest, smallest; a third of the design each). Every other parameter is
the default configuration (with any ``key=value`` overrides given).

For each market and each of ``--seeds`` paired seeds the simulation runs at q = 0.75 and
q = 0.95 (``model.fixed_alignment``) for ``--steps`` steps and is averaged after ``--burn-in``;
the per-seed secant slope is (N(0.95) − N(0.75)) / 0.2. The theory is solved for the same
seed's market: the labs that seed opened (and its lab budgets), plus leaks drawn over the
averaging window. Writes into ``--out`` (default ``results/validate/<date>/<time>``):

- ``markets/<id>.parquet``: per seed and level, simulated and predicted N and Φ (one file per
  market, written when it finishes: rerunning with the same ``--out`` resumes);
- ``validation.csv``: one row per market: its parameters, the simulated slope with its standard
  error, the predicted slope, the tolerance max(0.03, 2 SE), whether the prediction is within it,
  whether the simulated sign is clear (|slope| > 2 SE) and the signs agree, and the deeper/easier
  decomposition on both sides;
- ``validation.json``: the summary (fraction within tolerance, sign agreement, worst market) and
  the design; ``figures/validation.{pdf,png,txt}``: theory against simulation with error bars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import as_completed
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import qmc
from tqdm import tqdm

from experiments import outputs
from sim import pools
from sim.analysis import with_values
from sim.config import Config, ParameterError, config_from_flat, to_flat
from sim.market import (
    GIVE_UP_STEPS,
    LAB_STEPS,
    SECANT,
    STATES,
    MarketState,
    MarketStructure,
    MarketTheory,
    NotCovered,
    decompose,
)

#: The validation's design seed. Fixed when the command was written, before any validation
#: result existed; changing it after seeing results would be tuning the test to the theory.
DESIGN_SEED = 20261204
#: A second design seed, fixed on 2026-12-05 before the propensity-distribution theory
#: (``--channel-grid``) was run on any validation market: its acceptance is measured here,
#: since the first design's market 16 was used to diagnose what that theory repairs.
SECOND_DESIGN_SEED = 20261207
#: A third design seed, fixed on 2026-12-05 before any run of the labs' simplex split step
#: (``learning.lab.split_step=simplex``) or of the run's dated leaks (``--leaks run``) on it:
#: both changes were found on the first two designs, so they are judged here.
THIRD_DESIGN_SEED = 20261211
#: A fourth design seed, fixed on 2026-12-06 before the theory's give-up state
#: (``--state give_up``) was run on any of its markets: that state was found on the second
#: design's market 20 and the third design's market 15, so it is judged here.
FOURTH_DESIGN_SEED = 20261206
#: A fifth design seed, fixed on 2026-12-06 before the theory's stochastic paths
#: (``--noise``) were run on any of its markets: they were tried on the bimodal markets of the
#: first four designs, so they are judged here. Pre-registered rule: ``--noise`` becomes the
#: recommended validation theory only if it is within tolerance in more markets than the
#: plain path and in at least as many as the give-up state, with no more sign errors than
#: either (docs/theory.md §4.9).
FIFTH_DESIGN_SEED = 20261215
#: A sixth design seed, fixed on 2026-12-06 before the labs' refined per-step best response
#: (``MarketTheory(lab_rounds=...)``, found on the fifth design's market 11) was run on any of
#: its markets. The refinement solves the stated model more exactly, so it stays whatever the
#: score; what is judged here is the acceptance (every market within tolerance, signs agreeing
#: where the simulated sign is clear) with ``--channel-grid 9 --leaks run --noise``, and the
#: same runs are scored with the grid alone (``theory_gaps compare --lab-rounds 0``) to report
#: whether the earlier designs' scores leaned on the grid's error (docs/theory.md §4.9).
#: Its markets' leak seeds (seed + 1 + market) overlap no earlier design's.
SIXTH_DESIGN_SEED = 20261260
#: A seventh design seed, fixed on 2026-12-06 before any run on it, for the question the sixth
#: design raised but could not decide: with the refined response, the plain path or the
#: stochastic paths? Pre-registered rule: run ``--channel-grid 9 --leaks run --noise`` and score
#: the same runs with ``theory_gaps compare --state path`` (and ``--state give_up``); the
#: stochastic paths are recommended only if within tolerance in more markets than the plain path
#: with no more sign errors, otherwise the plain path is (docs/theory.md §4.9).
#: A second question was added on 2026-12-06, while its simulations were running and before any
#: of their results was read: the labs moving by the simulation's own rule along the path
#: (then ``--lab-rule simulation``, renamed ``--lab-step model`` on 2026-12-07 to keep it apart
#: from the labs' learning rule; found on the sixth design's market 28). Pre-registered rule:
#: score the same runs with ``theory_gaps compare --state path --lab-step model``; that rule
#: becomes the distribution option's default (``MarketTheory``, ``paradox validate``) only if its
#: plain path is within tolerance in more markets than the joint rule's plain path with no more
#: sign errors, otherwise the joint rule stays (docs/theory.md §4.1, §4.9).
SEVENTH_DESIGN_SEED = 20261300
#: An eighth design seed, fixed on 2026-12-07 after the seventh design's rules had been applied
#: (the stochastic paths were recommended over the plain path, 32 of 32 markets within
#: tolerance against 31; the joint lab rule stayed) and before any run on it. The recommended
#: theory is judged on it unchanged: ``--channel-grid 9 --leaks run --noise``, joint lab rule.
#: The project's acceptance is met on it only if every market is within max(0.03, 2 SE) and the
#: signs agree wherever the simulated sign is clear (docs/theory.md §4.9).
EIGHTH_DESIGN_SEED = 20261350
#: A ninth design seed, fixed on 2026-12-07 before any run on it, in the commit that adds
#: ``--adversaries seed`` (the theory given each run's own draw of adversary budgets instead of
#: the configured lognormal; found on the eighth design's markets 0 and 10, where the seeds'
#: budget draws set each seed's compromised share). Pre-registered rules: (1) the project's
#: acceptance is judged on ``--channel-grid 9 --leaks run --noise --adversaries seed``: met only
#: if every market is within max(0.03, 2 SE) and the signs agree wherever the simulated sign is
#: clear; (2) the same runs are scored with ``--adversaries population`` (``theory_gaps compare
#: --noise``); ``seed`` becomes the recommended validation theory only if it is within
#: tolerance in at least as many markets with no more sign errors, otherwise ``population``
#: stays recommended (docs/theory.md §4.10). Leak seeds 20261401-432 overlap no earlier design's.
#: A third rule was added on 2026-12-07 while its simulations ran, before any of their results
#: was read (a post-hoc look at the eighth design's market 0 had the plain path closer than the
#: stochastic paths once given the seed's adversaries): (3) the same runs are scored with the
#: plain path and the seed's adversaries (``theory_gaps compare --state path --adversaries
#: seed``); it replaces the stochastic paths as the recommended theory only if it is within
#: tolerance in more markets with no more sign errors. Measured on 2026-12-07 at commit 9d3b2da
#: (a run's sample cut into 12 groups, now 24): 31 of 32 within tolerance for each of the three
#: theories, so the acceptance is not met, ``seed`` is recommended by rule (2) and the stochastic
#: paths stay by rule (3) (docs/theory.md §4.10).
NINTH_DESIGN_SEED = 20261400
#: A tenth design seed, fixed on 2026-12-07 after the ninth design's rules had been applied and
#: before any run on it: the acceptance test of the recommended theory as it now stands,
#: ``--channel-grid 9 --leaks run --noise --adversaries seed`` with a run's sample cut into 24
#: groups (commit bcb143b). Met only if every market is within max(0.03, 2 SE) and the signs
#: agree wherever the simulated sign is clear. Leak seeds 20261451-482 overlap no earlier
#: design's. Measured on 2026-12-07 (begun at 63e8e7d, resumed at 99b08d4, bit for bit the same
#: solves): 32 of 32 within tolerance, 31 of 31 clear signs agreeing, so the acceptance is met
#: (docs/theory.md §4.10).
TENTH_DESIGN_SEED = 20261450
#: Rule (4) of the tenth design, added on 2026-12-07 while its simulations ran (21 of 32
#: markets written to their files, none read, no table yet): its runs are also scored with the
#: labs on the simulation's own step (``theory_gaps compare --channel-grid 9 --noise
#: --adversaries seed --lab-step model``, found post hoc on the ninth design's market 23, where
#: it puts the sink on the same lab as the run in 19 of 20 seeds against 11 for the joint step).
#: It becomes the recommended lab step only if it is within tolerance in more markets than the
#: joint step with no more sign errors. The acceptance stays with the joint step on the tenth
#: design; a recommended model step is judged on an eleventh design, seed 20261500, fixed here
#: before any run on it (``paradox validate --design-seed 20261500 --channel-grid 9 --leaks run
#: --noise --adversaries seed --lab-step model``, met on the same terms). Leak seeds
#: 20261501-532 overlap no earlier design's. Measured on 2026-12-07: the model step is within
#: tolerance in 32 of 32 markets too, not more, so the joint step stays and the eleventh design
#: was not run (docs/theory.md §4.10).
ELEVENTH_DESIGN_SEED = 20261500
#: What the theory takes of a run's adversaries (``--adversaries``): the configured budget
#: distribution, or the seed's own draw (:func:`adversary_structure`).
ADVERSARIES = ("population", "seed")
#: The command's defaults: markets drawn, paired seeds per market, steps, steps left out.
DEFAULT_MARKETS, DEFAULT_SEEDS, DEFAULT_STEPS, DEFAULT_BURN_IN = 32, 20, 600, 150
#: The theory settings of ``paradox validate`` without options: the point theory, which the
#: first design measured and which costs least.
PLAIN_THEORY = {"channel_grid": 0, "leaks": "drawn", "noise": False, "adversaries": "population"}
#: ``--recommended``: the theory that met the acceptance on the tenth design (docs/theory.md
#: §4.10), the stochastic paths given each run's dated leaks and own adversaries.
RECOMMENDED_THEORY = {"channel_grid": 9, "leaks": "run", "noise": True, "adversaries": "seed"}


def theory_settings(given: dict, recommended: bool) -> dict:
    """The theory options of one ``paradox validate`` call: ``given`` holds the ones set on the
    command line (None where not set), filled from :data:`RECOMMENDED_THEORY` with
    ``recommended`` and from :data:`PLAIN_THEORY` otherwise. An option set to another value
    than ``--recommended``'s is refused rather than silently overridden or obeyed."""
    fill = RECOMMENDED_THEORY if recommended else PLAIN_THEORY
    out = {}
    for key, value in fill.items():
        chosen = given.get(key)
        if recommended and chosen is not None and chosen != value:
            flag = "--" + key.replace("_", "-")
            raise ParameterError(
                flag, chosen, f"{value} with --recommended, or drop --recommended to choose it"
            )
        out[key] = value if chosen is None else chosen
    return out


#: Factor ranges (docs/theory.md §4.7). "log" factors are uniform in the logarithm.
RANGES: dict[str, tuple[float, float, str]] = {
    "model.n_labs": (4, 20, "int"),
    "model.n_adversaries": (100, 3000, "log-int"),
    "model.reach_exponent": (0.0, 2.0, "lin"),
    "model.adversary_budget_mean": (0.1, 2.0, "log"),
    "model.compromise_persistence": (0.0, 0.8, "lin"),
    "model.coupling": (0.3, 1.0, "lin"),
}
SELECTIONS = ("random", "largest", "smallest")


def design(n_markets: int, seed: int = DESIGN_SEED) -> pd.DataFrame:
    """The markets: one row per market, columns the dotted keys it sets."""
    keys = list(RANGES)
    unit = qmc.LatinHypercube(d=len(keys) + 1, seed=seed).random(n_markets)
    rows = []
    for u in unit:
        row = {}
        for key, x in zip(keys, u, strict=False):
            lo, hi, kind = RANGES[key]
            if kind == "lin":
                row[key] = float(lo + x * (hi - lo))
            elif kind == "log":
                row[key] = float(np.exp(np.log(lo) + x * (np.log(hi) - np.log(lo))))
            elif kind == "log-int":
                row[key] = round(float(np.exp(np.log(lo) + x * (np.log(hi) - np.log(lo)))))
            else:
                row[key] = int(min(hi, np.floor(lo + x * (hi - lo + 1))))
        row["policy.open_weights_selection"] = SELECTIONS[min(int(u[-1] * 3), 2)]
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(0, "market", np.arange(n_markets))
    return table


def paired_seeds(n: int, seed: int = DESIGN_SEED) -> list[int]:
    """Replicate seeds shared by every market and level (common random numbers)."""
    root = np.random.SeedSequence(seed).spawn(2)[1]
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for s in root.spawn(n)]


def market_config(base: Config, values: dict) -> Config:
    """``base`` with the dotted keys of ``values`` set, validated."""
    return with_values(base, values)


def market_leak_seed(market: int, design_seed: int = DESIGN_SEED) -> int:
    """The seed of a market's leak draws for the theory; replicate r draws from [seed, r]."""
    return design_seed + 1 + market


def drawn_adversaries(model) -> dict:
    """What a seed drew for its adversaries before the first step, as
    :class:`sim.market.MarketStructure` takes it (``--adversaries seed``): their budgets and
    which of them have query access."""
    return {
        "adversary_budget": model.adv.budget.copy(),
        "adversary_access": model.adv.api_access.copy(),
    }


def adversary_structure(run: dict, adversaries: str) -> dict:
    """The ``MarketStructure`` fields of ``--adversaries``: none for ``population`` (the
    configured distribution), the run's own draw for ``seed``."""
    if adversaries not in ADVERSARIES:
        raise ValueError(
            f"adversaries must be one of {', '.join(ADVERSARIES)}, got {adversaries!r}"
        )
    if adversaries == "population":
        return {}
    return {
        "adversary_budget": run["adversary_budget"],
        "adversary_access": run["adversary_access"],
    }


def run_structure(
    open0: np.ndarray,
    budget: np.ndarray,
    opened_at: np.ndarray | None,
    leak_draw: np.ndarray,
    leaks: str,
    drawn: dict,
) -> MarketStructure:
    """What the theory of one run is given: the run's initial open weights with its dated
    leaks (``leaks="run"``) or the independent leak draw (``"drawn"``), its lab budgets, and
    ``drawn``, the fields of :func:`adversary_structure`."""
    if leaks == "run":
        return MarketStructure(
            open_weights=open0.astype(float), budget=budget, opened_at=opened_at, **drawn
        )
    return MarketStructure(open_weights=leak_draw, budget=budget, **drawn)


def window_run(cfg: Config, seed: int, steps: int, burn_in: int, watch=None) -> dict:
    """One simulated run: its initial open weights (``open``) and lab budgets (``budget``), the
    ``means`` over steps burn_in+1..steps of net alignment ``N``, compromised share ``Phi`` and
    whatever ``watch(model)`` returns (a dict of arrays), the adversaries' draw
    (:func:`drawn_adversaries`: ``adversary_budget``, ``adversary_access``), the open-weights
    ``sets`` the labs went through in that window, with their step counts, and ``opened_at``,
    per lab the step whose leak opened its weights (``inf`` where none did)."""
    from sim.model import AlignmentParadoxModel

    model = AlignmentParadoxModel(rng=seed, config=cfg)
    start = {"open": model.lab.open_weights.copy(), "budget": model.lab.budget.copy()}
    start.update(drawn_adversaries(model))
    opened_at = np.full(start["open"].size, np.inf)
    sums: dict = {}
    sets: Counter = Counter()
    for t in range(1, steps + 1):
        model.step()
        opened_at[np.isinf(opened_at) & ~start["open"] & model.lab.open_weights] = t
        if t <= burn_in:
            continue
        seen = {"N": model.outcomes["net_alignment"], "Phi": model.outcomes["compromised_share"]}
        for key, value in {**seen, **(watch(model) if watch else {})}.items():
            sums[key] = sums.get(key, 0.0) + np.asarray(value, dtype=float)
        sets[tuple(model.lab.open_weights.astype(int))] += 1
    window = steps - burn_in
    return {
        **start,
        "means": {k: v / window for k, v in sums.items()},
        "sets": sets,
        "opened_at": opened_at,
    }


def noise_seed(leak_seed: int, replicate: int, stream: int = 1) -> list[int]:
    """The seed of replicate ``replicate``'s stochastic theory path (``--noise``): the same at
    both levels, as the run's seed is, and apart from the stream of its leak draws ([leak_seed,
    replicate], which equals stream 0). ``paradox validate`` uses stream 1; other streams give
    the theory's own Monte Carlo spread (``theory_gaps compare --noise-stream``)."""
    if stream < 1:
        raise ValueError(f"a noise stream is an integer >= 1 (0 is the leak draws'), got {stream}")
    return [leak_seed, replicate, stream]


def solve_run(
    theory: MarketTheory,
    q: float,
    structure: MarketStructure,
    steps: int,
    burn_in: int,
    noise: list[int] | None = None,
) -> MarketState:
    """The theory's state for a run of ``steps`` averaged after ``burn_in``: the point theory
    is window-free, the distribution option is averaged over the run's own window (a
    stochastic path when ``noise`` is a seed)."""
    span = {"warmup": burn_in, "window": steps - burn_in} if theory.channel_grid else {}
    if noise is not None:
        span["noise"] = noise
    return theory.solve(q, structure, **span)


def open_code(open_weights: np.ndarray) -> str:
    """A run's open-weights set as a string of 0s and 1s (index 0: the largest lab)."""
    return "".join("1" if o else "0" for o in open_weights)


def leak_code(opened_at: np.ndarray) -> str:
    """A run's leak steps, comma-separated per lab (empty where no leak opened its weights)."""
    return ",".join("" if np.isinf(t) else str(int(t)) for t in opened_at)


def leak_dates(code: str) -> np.ndarray:
    """The inverse of :func:`leak_code`: per lab the leak step, ``inf`` where there was none."""
    return np.array([float(t) if t else np.inf for t in code.split(",")])


def validate_market(
    base: Config,
    values: dict,
    seeds: list[int],
    steps: int,
    burn_in: int,
    leak_seed: int,
    channel_grid: int = 0,
    leaks: str = "drawn",
    state: str = "path",
    noise: bool = False,
    lab_step: str = "joint",
    adversaries: str = "population",
) -> pd.DataFrame:
    """Simulation and theory for one market: one row per (seed, level).

    ``leaks="drawn"`` gives the theory a leak time drawn independently of the run
    (:meth:`MarketTheory.with_leaks`); ``"run"`` gives the distribution option the run's own
    leaks, dated (exogenous events, like the initial open set the theory already takes).
    ``state`` picks the theory's stationary state (:data:`sim.market.STATES`); ``noise`` makes
    each seed's theory a stochastic path (:func:`noise_seed`, docs/theory.md §4.9);
    ``lab_step`` how its labs move along the path (:data:`sim.market.LAB_STEPS`);
    ``adversaries`` whether the theory takes the configured budget distribution or the seed's
    own adversaries (:func:`adversary_structure`)."""
    rows = []
    for r, seed in enumerate(seeds):
        leak_rng = np.random.default_rng([leak_seed, r])
        leak_draw = None
        for q in SECANT:
            cfg = market_config(base, {**values, "model.fixed_alignment": q})
            run = window_run(cfg, seed, steps, burn_in)
            open0, budget = run["open"], run["budget"]
            theory = MarketTheory(cfg, channel_grid=channel_grid, state=state, lab_step=lab_step)
            if leak_draw is None:  # the same leak draw at both levels (paired, like the seed)
                leak_draw = theory.with_leaks(open0, leak_rng, burn_in + 1, steps)
            structure = run_structure(
                open0, budget, run["opened_at"], leak_draw, leaks,
                adversary_structure(run, adversaries),
            )  # fmt: skip
            path_seed = noise_seed(leak_seed, r) if noise else None
            solved = solve_run(theory, q, structure, steps, burn_in, path_seed)
            rows.append(
                {
                    "seed": seed,
                    "q": q,
                    "clarity": solved.clarity,
                    "sim_N": float(run["means"]["N"]),
                    "sim_Phi": float(run["means"]["Phi"]),
                    "theory_N": solved.net_alignment,
                    "theory_Phi": solved.Phi,
                    "converged": solved.converged,
                    "top_lab_open": bool(open0[0]),
                    "open_initial": open_code(open0),
                    "opened_at": leak_code(run["opened_at"]),
                }
            )
    return pd.DataFrame(rows)


def summarise_market(runs: pd.DataFrame) -> dict:
    """Secant slopes (paired by seed), their decompositions and the comparison."""
    lo, hi = SECANT
    wide = runs.pivot(index="seed", columns="q")
    sim = (wide["sim_N"][hi] - wide["sim_N"][lo]) / (hi - lo)
    th = (wide["theory_N"][hi] - wide["theory_N"][lo]) / (hi - lo)
    n = len(sim)
    se = float(sim.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    out = {
        "seeds": n,
        "sim_slope": float(sim.mean()),
        "sim_se": se,
        "sim_sd": float(sim.std(ddof=1)) if n > 1 else float("nan"),
        "theory_slope": float(th.mean()),
        "theory_sd": float(th.std(ddof=1)) if n > 1 else float("nan"),
        "seed_correlation": float(np.corrcoef(sim, th)[0, 1])
        if n > 2 and sim.std() > 0 and th.std() > 0
        else float("nan"),
        "converged": bool(runs["converged"].all()),
    }
    out["difference"] = out["theory_slope"] - out["sim_slope"]
    out["tolerance"] = max(0.03, 2 * se) if np.isfinite(se) else 0.03
    out["within"] = abs(out["difference"]) <= out["tolerance"]
    # The paired alternative: the difference is estimated per seed (the theory is solved for
    # each seed's draw), so its own standard error counts the theory's Monte Carlo noise too.
    paired = th - sim
    out["difference_se"] = float(paired.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    out["within_paired"] = bool(
        abs(out["difference"]) <= max(0.03, 2 * out["difference_se"])
        if np.isfinite(out["difference_se"])
        else abs(out["difference"]) <= 0.03
    )
    out["within_0_03"] = bool(abs(out["difference"]) <= 0.03)
    out["sim_sign_clear"] = bool(np.isfinite(se) and abs(out["sim_slope"]) > 2 * se)
    out["sign_agrees"] = bool(np.sign(out["sim_slope"]) == np.sign(out["theory_slope"]))
    clar = runs.groupby("q")["clarity"].first()
    for side in ("sim", "theory"):
        means = runs.groupby("q")[f"{side}_Phi"].mean()
        parts = decompose(
            lo, {"Phi": means[lo], "clarity": clar[lo]}, hi, {"Phi": means[hi], "clarity": clar[hi]}
        )
        out[f"{side}_deeper"] = parts["deeper"]
        out[f"{side}_easier"] = parts["easier"]
    return out


def _task(args: tuple) -> tuple[int, pd.DataFrame]:
    (market, base, values, seeds, steps, burn_in, leak_seed, grid, leaks, state, noise, lab_step,
     adversaries) = args  # fmt: skip
    return market, validate_market(
        base, values, seeds, steps, burn_in, leak_seed, grid, leaks, state, noise, lab_step,
        adversaries,
    )  # fmt: skip


def run_validation(
    out: Path,
    *,
    base: Config,
    markets: int,
    seeds: int,
    steps: int,
    burn_in: int,
    workers: int,
    design_seed: int = DESIGN_SEED,
    channel_grid: int = 0,
    leaks: str = "drawn",
    state: str = "path",
    noise: bool = False,
    lab_step: str = "joint",
    adversaries: str = "population",
    progress: bool | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Run (or resume) the validation into ``out``; returns the market table and summary."""
    plan = design(markets, design_seed)
    seed_list = paired_seeds(seeds, design_seed)
    folder = out / "markets"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "design_seed": design_seed,
        "markets": markets,
        "seeds": seeds,
        "steps": steps,
        "burn_in": burn_in,
        "channel_grid": channel_grid,
        "leaks": leaks,
        "state": state,
        "noise": noise,
        "lab_step": lab_step,
        "adversaries": adversaries,
        "base": to_flat(base),
    }
    manifest_path = out / "validation_design.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        old.setdefault("leaks", "drawn")  # folders written before the options
        old.setdefault("state", "path")
        old.setdefault("noise", False)
        old.setdefault("lab_step", "joint")
        old.setdefault("adversaries", "population")
        if old != json.loads(json.dumps(manifest, default=str)):
            raise ValidationMismatch(
                f"{out} holds a validation with another design; give a new --out"
            )
    else:
        outputs.write_json(manifest_path, manifest)
    todo = []
    for _, row in plan.iterrows():
        market = int(row["market"])
        if (folder / f"{market:03d}.parquet").exists():
            continue
        values = {k: _plain(row[k]) for k in plan.columns if k != "market"}
        todo.append(
            (
                market, base, values, seed_list, steps, burn_in,
                market_leak_seed(market, design_seed), channel_grid, leaks, state, noise,
                lab_step, adversaries,
            )
        )  # fmt: skip
    bar = tqdm(
        total=markets,
        initial=markets - len(todo),
        desc="validate",
        unit="market",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )
    with bar:
        if workers <= 1:
            for task in todo:
                market, table = _task(task)
                outputs.write_parquet(folder / f"{market:03d}.parquet", table)
                bar.update()
        else:
            with pools.fresh_pool(workers) as pool:  # workers end with this process
                futures = [pool.submit(_task, task) for task in todo]
                for fut in as_completed(futures):
                    market, table = fut.result()
                    outputs.write_parquet(folder / f"{market:03d}.parquet", table)
                    bar.update()
    rows = []
    for _, row in plan.iterrows():
        market = int(row["market"])
        runs = pd.read_parquet(folder / f"{market:03d}.parquet")
        rows.append({**row.to_dict(), **summarise_market(runs)})
    table = pd.DataFrame(rows)
    table["top_lab_reach"] = [
        float(1.0 / np.sum(np.arange(1, n + 1) ** -z))
        for n, z in zip(table["model.n_labs"], table["model.reach_exponent"], strict=True)
    ]
    summary = summarise(table, manifest)
    return table, summary


def summarise(table: pd.DataFrame, manifest: dict) -> dict:
    clear = table[table["sim_sign_clear"]]
    worst = table.loc[(table["difference"].abs() - table["tolerance"]).idxmax()]
    return {
        "markets": len(table),
        "within_tolerance": int(np.count_nonzero(table["within"])),
        "fraction_within": float(table["within"].mean()),
        "within_paired_tolerance": int(np.count_nonzero(table["within_paired"])),
        "within_0_03": int(np.count_nonzero(table["within_0_03"])),
        "sign_clear_markets": len(clear),
        "sign_agreement_where_clear": float(clear["sign_agrees"].mean()) if len(clear) else None,
        "mean_abs_difference": float(table["difference"].abs().mean()),
        "all_converged": bool(table["converged"].all()),
        "worst_market": {
            k: _plain(worst[k])
            for k in (
                "market",
                *RANGES,
                "policy.open_weights_selection",
                "sim_slope",
                "sim_se",
                "theory_slope",
                "difference",
                "tolerance",
            )
        },
        "design": manifest,
    }


class ValidationMismatch(ValueError):
    """The output folder holds a validation with another design."""


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    return x


def draw_figure(table: pd.DataFrame, summary: dict, path: Path) -> None:
    from sim.figures import save, validation_scatter

    fig, caption = validation_scatter(table, summary)
    save(fig, path, caption)


def parse_overrides(items: list[str]) -> dict:
    values = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(item, item, "key=value overrides (e.g. model.attacker_value=80)")
        key, raw = item.split("=", 1)
        values[key] = _parse_value(raw)
    return values


def _parse_value(raw: str):
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.lower() in ("null", "none"):
        return None
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox validate",
        description="The market theory against the simulation on Latin-hypercube markets "
        "(docs/theory.md §4.7).",
    )
    parser.add_argument("overrides", nargs="*", help="key=value settings for every market")
    parser.add_argument(
        "--markets", type=int, default=DEFAULT_MARKETS, help="markets to draw (%(default)s)"
    )
    parser.add_argument(
        "--seeds", type=int, default=DEFAULT_SEEDS, help="paired seeds per market (%(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="steps per run (%(default)s)"
    )
    parser.add_argument(
        "--burn-in", type=int, default=DEFAULT_BURN_IN, help="steps left out (%(default)s)"
    )
    parser.add_argument(
        "--channel-grid",
        type=int,
        default=None,
        help="theory: 0 solves each adversary type's channel propensities as a point; a "
        "positive multiple of 3 keeps their distribution on a simplex grid of that resolution "
        f"(docs/theory.md §4.1; {PLAIN_THEORY['channel_grid']})",
    )
    parser.add_argument(
        "--design-seed",
        type=int,
        default=DESIGN_SEED,
        help=f"seed of the market design and replicate seeds ({DESIGN_SEED}; the second design, "
        f"{SECOND_DESIGN_SEED}, was fixed before the propensity-distribution theory was "
        f"validated, the third, {THIRD_DESIGN_SEED}, before the simplex split step and dated "
        f"leaks were, the fourth, {FOURTH_DESIGN_SEED}, before the give-up state was, the "
        f"fifth, {FIFTH_DESIGN_SEED}, before the stochastic paths were, the sixth, "
        f"{SIXTH_DESIGN_SEED}, before the labs' refined best response was, the seventh, "
        f"{SEVENTH_DESIGN_SEED}, to choose between the plain and stochastic paths and the labs' "
        f"rules, the eighth, {EIGHTH_DESIGN_SEED}, to judge the theory they chose, the ninth, "
        f"{NINTH_DESIGN_SEED}, before the theory took each run's own adversaries, the tenth, "
        f"{TENTH_DESIGN_SEED}, to judge the theory then recommended, the eleventh, "
        f"{ELEVENTH_DESIGN_SEED}, to judge the labs on the simulation's own step)",
    )
    parser.add_argument(
        "--leaks",
        choices=("drawn", "run"),
        default=None,
        help="what the theory knows of a run's leaks: a leak time drawn independently of the run "
        "(drawn), or the run's own leaks, dated (run; needs --channel-grid > 0); docs/theory.md "
        f"§4.2 ({PLAIN_THEORY['leaks']})",
    )
    parser.add_argument(
        "--state",
        choices=STATES,
        default="path",
        help="the theory's stationary state: the one its expected dynamics reach from the "
        "initial state (path), or the one they reach when the top lab is first made to give up "
        f"defending over steps {GIVE_UP_STEPS[0]}-{GIVE_UP_STEPS[1]} (give_up; needs "
        f"--channel-grid > 0 and --burn-in > {GIVE_UP_STEPS[1]}); docs/theory.md §4.2, §4.6 "
        "(%(default)s)",
    )
    parser.add_argument(
        "--noise",
        action="store_true",
        default=None,
        help="theory: each seed's path draws the attempts and successes it counts instead of "
        "taking their means, so it can switch between stationary states as a run can (needs "
        "--channel-grid > 0); docs/theory.md §4.9",
    )
    parser.add_argument(
        "--lab-step",
        choices=LAB_STEPS,
        default="joint",
        help="theory: how its labs move along the path: toward their joint best response over "
        "the whole defence vector (joint), or by the model's own step, the alignment share "
        "then the split (model; needs --channel-grid > 0 and best-responding labs). Not the "
        "labs' learning rule (learning.lab.rule); docs/theory.md §4.1 (%(default)s)",
    )
    parser.add_argument(
        "--adversaries",
        choices=ADVERSARIES,
        default=None,
        help="theory: the adversaries' budgets as the configured lognormal (population), or each "
        "run's own draw of them, grouped into quantile nodes apart for adversaries with and "
        "without query access (seed), as the theory already takes the run's lab budgets and "
        f"open weights; docs/theory.md §4.10 ({PLAIN_THEORY['adversaries']})",
    )
    parser.add_argument(
        "--recommended",
        action="store_true",
        help="theory: the one that met the acceptance on the tenth design, the same as "
        "--channel-grid 9 --leaks run --noise --adversaries seed (about an hour with 2 "
        "workers); docs/theory.md §4.10",
    )
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        given = {key: getattr(args, key) for key in PLAIN_THEORY}
        for key, value in theory_settings(given, args.recommended).items():
            setattr(args, key, value)
        for name, value, lo in (
            ("--markets", args.markets, 2),
            ("--seeds", args.seeds, 2),
            ("--steps", args.steps, 1),
        ):
            if value < lo:
                raise ParameterError(name, value, f"an integer >= {lo}")
        if args.channel_grid < 0 or args.channel_grid % 3:
            raise ParameterError("--channel-grid", args.channel_grid, "0 or a multiple of 3")
        if args.leaks == "run" and not args.channel_grid:
            raise ParameterError(
                "--leaks",
                "run",
                "drawn, or run together with --channel-grid > 0 (the point "
                "theory is stationary and cannot follow dated leaks)",
            )
        if not 0 <= args.burn_in < args.steps:
            raise ParameterError("--burn-in", args.burn_in, f"[0, {args.steps - 1}] (< --steps)")
        values = parse_overrides(args.overrides)
        base = market_config(config_from_flat(), values) if values else config_from_flat()
        for key in values:
            if key in RANGES or key == "policy.open_weights_selection":
                raise ParameterError(key, values[key], "a key the design does not vary")
        theory = MarketTheory(base)  # refuses rules the theory does not cover, before any run
        try:  # the theory refuses a state it cannot reach here
            MarketTheory(base, channel_grid=args.channel_grid, state=args.state).check_warmup(
                args.burn_in
            )
        except ValueError as err:
            raise ParameterError(
                "--state",
                args.state,
                "path, unless the theory is the distribution option (--channel-grid > 0, "
                "Roth–Erev adversaries), the labs best-respond and --burn-in is above "
                f"{GIVE_UP_STEPS[1]} (the top lab is held over steps {GIVE_UP_STEPS[0]}-"
                f"{GIVE_UP_STEPS[1]}, before the window): {err}",
            ) from None
        if args.leaks == "run" and not theory.adversary_strategy.reinforces_channels:
            raise ParameterError(
                "--leaks",
                "run",
                "drawn, unless the adversaries learn by Roth–Erev (the "
                "distribution option is solved only for them)",
            )
        try:  # the model's lab step needs a path and labs that best-respond
            MarketTheory(base, channel_grid=args.channel_grid, lab_step=args.lab_step)
        except ValueError as err:
            raise ParameterError(
                "--lab-step", args.lab_step, f"joint, unless the theory can take it: {err}"
            ) from None
        if args.noise and not MarketTheory(base, channel_grid=args.channel_grid).follows_path:
            raise ParameterError(
                "--noise",
                True,
                "unset, unless the theory is the distribution option (--channel-grid > 0, "
                "Roth–Erev adversaries): only it follows a path that can be stochastic",
            )
    except (ParameterError, NotCovered, KeyError) as err:
        text = f"unknown key {err}" if isinstance(err, KeyError) else str(err)
        print(f"paradox validate: {text}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC)
    out = args.out or Path("results/validate") / stamp.strftime("%Y-%m-%d") / stamp.strftime(
        "%H-%M-%S"
    )
    workers = args.workers or len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    try:
        table, summary = run_validation(
            out,
            base=base,
            markets=args.markets,
            seeds=args.seeds,
            steps=args.steps,
            burn_in=args.burn_in,
            workers=workers,
            design_seed=args.design_seed,
            channel_grid=args.channel_grid,
            leaks=args.leaks,
            state=args.state,
            noise=args.noise,
            lab_step=args.lab_step,
            adversaries=args.adversaries,
        )
    except ValidationMismatch as err:
        print(f"paradox validate: {err}", file=sys.stderr)
        return 2
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    outputs.atomic_write(out / "validation.csv", lambda p: table.to_csv(p, index=False))
    outputs.write_json(out / "validation.json", summary)
    draw_figure(table, summary, out / "figures" / "validation")
    clear = summary["sign_clear_markets"]
    agree = summary["sign_agreement_where_clear"]
    print(
        f"{summary['within_tolerance']} of {summary['markets']} markets within tolerance "
        f"max(0.03, 2 SE); signs agree in "
        + (f"{agree:.0%} of the {clear} with a clear simulated sign" if clear else "—")
        + f"; worst: market {summary['worst_market']['market']} "
        f"(theory {summary['worst_market']['theory_slope']:+.3f}, simulation "
        f"{summary['worst_market']['sim_slope']:+.3f} ± {summary['worst_market']['sim_se']:.3f})"
    )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
