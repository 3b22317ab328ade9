"""Where the market theory misses the simulation: the measurements quoted in docs/theory.md §4.6.

Each subcommand takes markets of `paradox validate`'s design (design seed 20261204 unless
``--design-seed`` says otherwise; the same paired seeds and leak draws), with ``--set KEY=VALUE``
overrides for every market, and prints one line per market:

- ``channels``: for one market, seed and level, the window means of attempts, knowledge and
  compromise per channel and lab, simulated and predicted, and the simulated adversaries' mean
  channel probabilities against the ratio of their mean propensities;
- ``leaks``: the secant slope, simulated, predicted with the validation's drawn leak time, and
  predicted over the run's own open-weights history (one solve per distinct set, weighted by
  its steps in the window);
- ``window``: the predicted slope from the fixed point against the window mean of the expected
  dynamics (run from the initial state through the whole window, as the simulation is);
- ``churn``: for one market, seed and level, how specialised the simulated adversaries with
  query access are (the spread of their prompt probability, its correlation with their prompt
  knowledge) and how long a specialty lasts (its correlation with the same adversaries' at
  step 50), and whether their initial knowledge or budget predicts it;
- ``defence``: for one market, seed and level, the three largest labs' defence spending and
  compromised share along the run, simulated and in the theory's expected dynamics, and the
  attempts per step each lab sees (the third design's market 15, docs/theory.md §4.6);
- ``residuals``: in the market of `make run`'s reach map (conf/sweep/regime_map_reach.yaml) at
  ``--reach-exponent`` and ``--coupling``, the largest relative change per iteration of each of
  the theory's variables over the last 500 iterations of its first open-weights draw's solve;
- ``compare``: a finished `paradox validate` folder (``--out``) scored again with another
  theory (``--channel-grid``) on the same simulated runs, seeds, open-weights sets, budgets and
  leak draws, with the folder's own overrides (e.g. ``learning.lab.split_step=simplex``) and,
  for the distribution option, its ``--leaks`` (the point theory always takes the drawn leak);
  prints the validation's summary line for that theory (``--save``: its table; ``--save-runs``:
  its runs, one row per market, seed and level; ``--state give_up``: the theory's give-up
  state, docs/theory.md §4.6; ``--adversaries``: the configured budget distribution or each
  run's own draw, docs/theory.md §4.10, by default the folder's);
- ``states``: for one market and its first ``--seeds`` seeds at both levels, the simulated
  window means of N and of the top lab's defence spending against the distribution option's
  plain-path and give-up states (``MarketTheory(state=...)``, docs/theory.md §4.6), the
  top lab held over steps ``--hold`` (10-50, as the library does), with ``--adversaries seed``
  given each run's own adversaries;
- ``sinks``: for one market and level and its first ``--seeds`` seeds, the lab that draws the
  most attempts over the window (the sink), its share of them and its compromised share,
  simulated and in the distribution option given the run's dated leaks (``--noise``,
  ``--adversaries`` as for ``states``), docs/theory.md §4.10;
- ``patience``: the solver's early stop of a cycling solve (docs/theory.md §4.2) against running
  all 3,000 iterations, on 42 solves: the reach-map market at ζ 1, 1.5, 2 × κ 0.5, 0.75, 1,
  every third validation market and a 3-lab market, each at both levels.

    .venv/bin/python -m benchmarks.theory_gaps channels --market 16
    .venv/bin/python -m benchmarks.theory_gaps leaks --markets 20,16,22 --seeds 4
    .venv/bin/python -m benchmarks.theory_gaps window --markets 16,20 --seeds 4
    .venv/bin/python -m benchmarks.theory_gaps churn --market 16
    .venv/bin/python -m benchmarks.theory_gaps defence --market 15 --design-seed 20261211 \
        --seed-index 2 --channel-grid 9
    .venv/bin/python -m benchmarks.theory_gaps states --market 15 --design-seed 20261211 \
        --seeds 8 --channel-grid 9
    .venv/bin/python -m benchmarks.theory_gaps sinks --market 23 --design-seed 20261400 \
        --seeds 20 --q 0.95 --channel-grid 9 --noise --adversaries seed
    .venv/bin/python -m benchmarks.theory_gaps residuals --q 0.75  # ζ 1.5, κ 0.5 by default
    .venv/bin/python -m benchmarks.theory_gaps patience
    .venv/bin/python -m benchmarks.theory_gaps compare --out results/validate/<run> --channel-grid 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import validate
from sim import pools
from sim.config import Config, config_from_flat, to_flat
from sim.market import (
    GIVE_UP_STEPS,
    LAB_STEP_ROUNDS,
    LAB_STEPS,
    SECANT,
    STATES,
    MarketStructure,
    MarketTheory,
)

CHANNELS = ("weights", "prompt", "output")
REPO = Path(__file__).resolve().parents[1]


def _market(market: int, design_seed: int = validate.DESIGN_SEED) -> dict:
    row = validate.design(validate.DEFAULT_MARKETS, design_seed).iloc[market].to_dict()
    return {k: v for k, v in row.items() if k != "market"}


def _base(args) -> Config:
    """The default configuration with ``--set`` overrides (e.g. the labs' split step)."""
    return validate.market_config(config_from_flat(), validate.parse_overrides(args.set))


def _runs(args, predict):
    """Per market and seed, the slopes of the simulation and of each of ``predict``'s theories."""
    base = _base(args)
    seeds = validate.paired_seeds(validate.DEFAULT_SEEDS, args.design_seed)[: args.seeds]
    for market in args.markets:
        values = _market(market, args.design_seed)
        slopes: dict[str, list[float]] = {}
        for r, seed in enumerate(seeds):
            leak_rng = np.random.default_rng(
                [validate.market_leak_seed(market, args.design_seed), r]
            )
            leak = None
            level: dict[str, list[float]] = {}
            for q in SECANT:
                cfg = validate.market_config(base, {**values, "model.fixed_alignment": q})
                run = validate.window_run(cfg, seed, args.steps, args.burn_in)
                theory = MarketTheory(cfg)
                if leak is None:
                    leak = theory.with_leaks(run["open"], leak_rng, args.burn_in + 1, args.steps)
                level.setdefault("simulated", []).append(float(run["means"]["N"]))
                for name, n in predict(theory, q, run, leak, args).items():
                    level.setdefault(name, []).append(n)
            for name, (lo, hi) in level.items():
                slopes.setdefault(name, []).append((hi - lo) / (SECANT[1] - SECANT[0]))
        sim = np.array(slopes["simulated"])
        parts = [f"market {market}: simulated {sim.mean():+.3f} ± {_se(sim):.3f}"]
        for name, values_ in slopes.items():
            if name != "simulated":
                diff = np.array(values_) - sim
                parts.append(f"{name} {np.mean(values_):+.3f} (difference SD {_sd(diff):.3f})")
        print("; ".join(parts), flush=True)


def _se(x: np.ndarray) -> float:
    return _sd(x) / np.sqrt(x.size) if x.size > 1 else float("nan")


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def _leaks(theory, q, run, leak, args) -> dict[str, float]:
    def n_at(open_w) -> float:
        structure = MarketStructure(open_weights=np.asarray(open_w, float), budget=run["budget"])
        return theory.solve(q, structure).net_alignment

    window = sum(run["sets"].values())
    history = sum(count * n_at(s) for s, count in run["sets"].items()) / window
    return {"drawn leak": n_at(leak), "run's leaks": history}


def _window(theory, q, run, leak, args) -> dict[str, float]:
    structure = MarketStructure(open_weights=leak, budget=run["budget"])
    fixed = theory.solve(q, structure).net_alignment
    seen = []
    evaluate = theory._evaluate

    def recording(ctx, x):  # the expected dynamics evaluate once per step, after the defence
        seen.append(x.phi.copy())
        return evaluate(ctx, x)

    theory._evaluate = recording
    try:
        state = theory.solve(q, structure, warmup=args.steps, max_iter=0)
    finally:
        theory._evaluate = evaluate
    phi = np.mean(seen[args.burn_in + 1 : args.steps + 1], axis=0)  # after steps 151..600
    mean_n = float(np.sum(state.reach * q * (1.0 - phi * (1.0 + state.clarity))))
    return {"fixed point": fixed, "window mean of the dynamics": mean_n}


def _channels(args) -> None:
    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    market = args.markets[0]
    seed = validate.paired_seeds(validate.DEFAULT_SEEDS, args.design_seed)[args.seed_index]
    cfg = validate.market_config(
        _base(args), {**_market(market, args.design_seed), "model.fixed_alignment": args.q}
    )

    def watch(model) -> dict:
        counts = [model.outcomes[f"attempts_{name}"] for name in CHANNELS]
        propensity = model.adv.propensity
        return {
            "attempts": counts,
            "knowledge": model.adv.knowledge.mean(axis=0),
            "phi": model.lab.compromised.sum(axis=1),
            "mean of probabilities": (propensity / propensity.sum(1, keepdims=True)).mean(0),
            "ratio of means": propensity.sum(0) / propensity.sum(),
        }

    run = validate.window_run(cfg, seed, args.steps, args.burn_in, watch)
    theory = MarketTheory(cfg, channel_grid=args.channel_grid)
    leak_rng = np.random.default_rng(
        [validate.market_leak_seed(market, args.design_seed), args.seed_index]
    )
    leak = theory.with_leaks(run["open"], leak_rng, args.burn_in + 1, args.steps)
    structure = MarketStructure(open_weights=leak, budget=run["budget"])
    state = validate.solve_run(theory, args.q, structure, args.steps, args.burn_in)
    share = state.type_weights / state.type_weights.sum()
    sim = run["means"]
    print(f"market {market}, seed {seed}, q = {args.q}, steps {args.burn_in + 1}-{args.steps}")
    print(f"  N              simulated {float(sim['N']):.3f}  theory {state.net_alignment:.3f}")
    print(f"  attempts       simulated {sim['attempts']}  theory {state.attempts.sum(axis=0)}")
    print(f"  knowledge      simulated {sim['knowledge']}  theory {share @ state.knowledge}")
    probs, ratio = sim["mean of probabilities"], sim["ratio of means"]
    print(f"  channel probs  simulated {probs} (ratio of mean propensities {ratio})")
    print(f"                 theory    {share @ state.channel_probs}")
    if "channel_probs_sd" in state.info:
        sd = share @ state.info["channel_probs_sd"]
        print(f"  SD of probs within a type (mean over types), theory {sd}")
    print(f"  phi per lab    simulated {sim['phi']}")
    print(f"                 theory    {state.phi}")


def _churn(args) -> None:
    from sim.model import AlignmentParadoxModel

    market = args.markets[0]
    seed = validate.paired_seeds(validate.DEFAULT_SEEDS, args.design_seed)[args.seed_index]
    cfg = validate.market_config(
        _base(args), {**_market(market, args.design_seed), "model.fixed_alignment": args.q}
    )
    model = AlignmentParadoxModel(rng=seed, config=cfg)
    api = model.adv.api_access.copy()  # adversaries that can choose between all three channels
    start_gap = model.adv.knowledge[api, 1] - model.adv.knowledge[api, 0]
    log_budget = np.log(model.adv.budget[api])
    first = None
    print(f"market {market}, seed {seed}, q = {args.q}: adversaries with query access")
    for t in range(1, args.steps + 1):
        model.step()
        if t not in (50, args.steps // 4, args.steps // 2, args.steps):
            continue
        propensity = model.adv.propensity[api]
        prompt = propensity[:, 1] / propensity.sum(axis=1)
        first = prompt if first is None else first
        r = {
            "with step 50": np.corrcoef(first, prompt)[0, 1],
            "with own prompt knowledge": np.corrcoef(model.adv.knowledge[api, 1], prompt)[0, 1],
            "with initial knowledge gap": np.corrcoef(start_gap, prompt)[0, 1],
            "with log budget": np.corrcoef(log_budget, prompt)[0, 1],
        }
        told = ", ".join(f"{k} {v:+.2f}" for k, v in r.items())
        print(f"  step {t}: prompt probability SD {prompt.std():.2f}; correlation {told}")


def _defence_spending(model) -> np.ndarray:
    """Each lab's defence spending per step under its current policy (what enters next step)."""
    investable = model.lab.budget * (1.0 - model.config.policy.decoupling_share)
    return (1.0 - model.lab.alignment_share) * investable


def _defence(args) -> None:
    """For one market, seed and level: the three largest labs' defence spending per step and
    compromised share along the run, simulated and in the distribution option's expected
    dynamics (``--channel-grid`` > 0, given the run's dated leaks), and the attempts per step
    each lab sees: the simulation's window mean against the theory's smoothed value at the last
    step. The point theory is refused: its fixed-point iterations are not steps of the run."""
    from sim.model import AlignmentParadoxModel

    if args.channel_grid <= 0 or not 0 <= args.burn_in < args.steps:
        raise SystemExit("defence: needs --channel-grid > 0 and 0 <= --burn-in < --steps")
    _step_covered("defence", args, _base(args))
    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    market = args.markets[0]
    seed = validate.paired_seeds(validate.DEFAULT_SEEDS, args.design_seed)[args.seed_index]
    cfg = validate.market_config(
        _base(args), {**_market(market, args.design_seed), "model.fixed_alignment": args.q}
    )
    shown = sorted({t for t in (1, 2, 5, 10, 20, 50, 100, args.burn_in) if 0 < t <= args.steps})
    if args.steps not in shown:
        shown.append(args.steps)
    model = AlignmentParadoxModel(rng=seed, config=cfg)
    open0, budget = model.lab.open_weights.copy(), model.lab.budget.copy()
    opened_at = np.full(open0.size, np.inf)
    sim: dict[int, tuple] = {}
    seen, mean_n = 0.0, 0.0
    for t in range(1, args.steps + 1):
        model.step()
        opened_at[np.isinf(opened_at) & ~open0 & model.lab.open_weights] = t
        if t > args.burn_in:
            seen = seen + model.lab.seen_attempts.sum(axis=1) / (args.steps - args.burn_in)
            mean_n += model.outcomes["net_alignment"] / (args.steps - args.burn_in)
        if t in shown:
            sim[t] = (_defence_spending(model)[:3], model.lab.compromised.sum(axis=1)[:3].copy())
    theory = MarketTheory(cfg, channel_grid=args.channel_grid, lab_step=args.lab_step)
    structure = MarketStructure(
        open_weights=open0.astype(float), budget=budget, opened_at=opened_at
    )
    predicted: dict[int, tuple] = {}
    labs_step, calls = theory._labs_step, [0]

    def recording(ctx, x, v, labs):  # the expected dynamics move the labs once per step
        labs_step(ctx, x, v, labs)
        calls[0] += 1
        if calls[0] in shown:
            predicted[calls[0]] = (labs["spend"].sum(axis=1)[:3].copy(), x.phi[:3].copy())
        if calls[0] == args.steps:
            predicted["seen"] = labs["n"].sum(axis=1).copy()

    theory._labs_step = recording
    try:
        state = validate.solve_run(theory, args.q, structure, args.steps, args.burn_in)
    finally:
        theory._labs_step = labs_step
    print(f"market {market}, seed {seed}, q = {args.q}; labs open {open0.astype(int)}, "
          f"leaks at {opened_at}")  # fmt: skip
    print("  step: defence spending per step (3 largest labs), compromised share; sim | theory")
    for t in shown:
        got = predicted.get(t)
        told = f"{got[0]} {got[1]}" if got else "(no such step in the solve)"
        print(f"  {t:4d}: {sim[t][0]} {sim[t][1]} | {told}")
    print("  attempts per step each lab sees (smoothed):")
    print(f"    simulated {seen} (mean over steps {args.burn_in + 1}-{args.steps})")
    print(f"    theory    {predicted['seen']} (at step {args.steps})")
    print(f"  N over the window: simulated {mean_n:.3f}, theory {state.net_alignment:.3f}")


def _states_task(task: tuple) -> dict:
    """One seed and level: the simulated window means of N and of the top lab's defence
    spending, and the distribution option's, in its plain-path and give-up states (and on a
    stochastic path, ``noisy``, seeded as ``paradox validate --noise`` seeds it, when
    ``noise`` is that seed)."""
    (base, values, seed, q, steps, burn_in, grid, hold, noise, rounds, lab_step, adversaries,
     groups) = task  # fmt: skip
    cfg = validate.market_config(base, {**values, "model.fixed_alignment": q})
    run = validate.window_run(
        cfg, seed, steps, burn_in,
        lambda model: {"D": _defence_spending(model)[0],
                       "Phi_sq": model.outcomes["compromised_share"] ** 2},
    )  # fmt: skip
    structure = validate.run_structure(
        run["open"], run["budget"], run["opened_at"], None, "run",
        validate.adversary_structure(run, adversaries),
    )  # fmt: skip
    means = run["means"]
    row = {"seed": seed, "q": q, "open": validate.open_code(run["open"]),
           "sim_N": float(means["N"]), "sim_D": float(means["D"])}  # fmt: skip
    spread = {"sim_Phi_sd": float(np.sqrt(max(means["Phi_sq"] - means["Phi"] ** 2, 0.0)))}
    sides = [(state, state, None) for state in STATES]
    if noise is not None:
        sides.append(("noisy", "path", noise))
    for side, state, path_seed in sides:
        theory = MarketTheory(
            cfg, channel_grid=grid, state=state, give_up_steps=hold, lab_rounds=rounds,
            lab_step=lab_step, sample_groups=groups,
        )  # fmt: skip
        push, spent = theory._push, [0.0]

        def recording(ctx, labs, step, push=push, spent=spent):  # after each step's spending
            push(ctx, labs, step)
            if step > burn_in:  # the window's spending, as the simulation's is averaged
                spent[0] += labs["spend"][0].sum() / (steps - burn_in)

        theory._push = recording
        solved = validate.solve_run(theory, q, structure, steps, burn_in, path_seed)
        row[f"{side}_N"], row[f"{side}_D"] = solved.net_alignment, spent[0]
        spread[f"{side}_Phi_sd"] = solved.info["Phi_sd"]
    if noise is not None:  # how much Φ_t moves over the window: the size of the drawn noise
        row.update({k: spread[k] for k in ("sim_Phi_sd", "path_Phi_sd", "noisy_Phi_sd")})
    return row


def _one_market(what: str, args) -> tuple[int, dict, list[int], int]:
    """The first of ``--markets`` for a per-seed study (``states``, ``sinks``): its index, its
    design values, its first ``--seeds`` paired seeds and its leak seed, after refusing
    ``--noise`` and ``--lab-step`` where the theory cannot take them."""
    _noise_covered(what, args, _base(args))
    _step_covered(what, args, _base(args))
    market = args.markets[0]
    seeds = validate.paired_seeds(validate.DEFAULT_SEEDS, args.design_seed)[: args.seeds]
    return (market, _market(market, args.design_seed), seeds,
            validate.market_leak_seed(market, args.design_seed))  # fmt: skip


def _states(args) -> None:
    """For one market and its first ``--seeds`` seeds, at both levels: the simulation against
    the distribution option's two states (docs/theory.md §4.6, "Multiple stationary states")."""
    if args.channel_grid <= 0:
        raise SystemExit("states: needs --channel-grid > 0 (the give-up state is a path)")
    market, values, seeds, leak_seed = _one_market("states", args)
    try:  # the theory refuses a hold that is not a step range or would reach the window
        hold = tuple(int(t) for t in args.hold.split("-"))
        theory = MarketTheory(_base(args), channel_grid=args.channel_grid, state="give_up",
                              give_up_steps=hold)  # fmt: skip
        theory.check_warmup(args.burn_in)
    except ValueError as err:
        raise SystemExit(f"states: --hold {args.hold}: {err}") from None
    tasks = [(_base(args), values, seed, q, args.steps, args.burn_in, args.channel_grid, hold,
              validate.noise_seed(leak_seed, r, args.noise_stream) if args.noise else None,
              args.lab_rounds, args.lab_step, args.adversaries or "population",
              args.sample_groups)
             for r, seed in enumerate(seeds) for q in SECANT]  # fmt: skip
    with pools.fresh_pool(args.workers) as pool:  # workers end with this process
        table = pd.DataFrame(list(pool.map(_states_task, tasks)))
    pd.set_option("display.width", 160)
    print(
        f"market {market} of design {args.design_seed}, adversaries "
        f"{args.adversaries or 'population'}, give-up hold over steps {hold[0]}-"
        f"{hold[1]}: window means (D: the top lab's defence spending per step; Phi_sd: the SD "
        "of the compromised share Φ over the window's steps)"
    )
    print(table.round(3).to_string(index=False))
    wide = table.pivot(index="seed", columns="q")
    lo, hi = SECANT
    sides = ("sim", *STATES, *(("noisy",) if args.noise else ()))
    slopes = pd.DataFrame(
        {side: (wide[f"{side}_N"][hi] - wide[f"{side}_N"][lo]) / (hi - lo) for side in sides}
    )
    print("secant slopes per seed:")
    print(slopes.round(3).to_string())
    print("mean:", "  ".join(f"{k} {v:+.3f}" for k, v in slopes.mean().items()))


def _sinks_task(task: tuple) -> dict:
    """One seed at one level: which lab draws the most attempts over the window (the sink),
    its share of them, its compromised share and N, simulated and in the distribution option
    given the run's dated leaks (and, with ``adversaries="seed"``, its own adversaries). The
    simulated attempts are the window mean of what the labs see (their smoothed count, whose
    mean is the raw count's up to the window's two ends), the theory's its expected ones."""
    base, values, r, seed, q, steps, burn_in, grid, noise, lab_step, adversaries, groups = task
    cfg = validate.market_config(base, {**values, "model.fixed_alignment": q})
    run = validate.window_run(
        cfg, seed, steps, burn_in,
        lambda model: {"attempts": model.lab.seen_attempts.sum(axis=1),
                       "phi": model.lab.compromised.sum(axis=1)},
    )  # fmt: skip
    structure = validate.run_structure(
        run["open"], run["budget"], run["opened_at"], None, "run",
        validate.adversary_structure(run, adversaries),
    )  # fmt: skip
    theory = MarketTheory(cfg, channel_grid=grid, lab_step=lab_step, sample_groups=groups)
    solved = validate.solve_run(theory, q, structure, steps, burn_in, noise)
    row = {"replicate": r, "open": validate.open_code(run["open"]),
           "leaks": validate.leak_code(run["opened_at"])}  # fmt: skip
    sides = {
        "sim": (run["means"]["attempts"], run["means"]["phi"], float(run["means"]["N"])),
        "theory": (solved.attempts.sum(axis=1), solved.phi, solved.net_alignment),
    }
    for side, (attempts, phi, n) in sides.items():
        sink = int(np.argmax(attempts))
        row[f"{side}_sink"] = sink + 1  # labs numbered from 1 by reach, as in the docs
        row[f"{side}_share"] = float(attempts[sink] / max(attempts.sum(), 1e-300))
        row[f"{side}_phi"] = float(phi[sink])
        row[f"{side}_N"] = n
    return row


def _sinks(args) -> None:
    """For one market and level, per seed: the lab that draws most of the attacks over the
    window, simulated and in the distribution option (docs/theory.md §4.10)."""
    if args.channel_grid <= 0 or not 0 <= args.burn_in < args.steps:
        raise SystemExit("sinks: needs --channel-grid > 0 and 0 <= --burn-in < --steps")
    market, values, seeds, leak_seed = _one_market("sinks", args)
    adversaries = args.adversaries or "population"
    tasks = [(_base(args), values, r, seed, args.q, args.steps, args.burn_in, args.channel_grid,
              validate.noise_seed(leak_seed, r, args.noise_stream) if args.noise else None,
              args.lab_step, adversaries, args.sample_groups)
             for r, seed in enumerate(seeds)]  # fmt: skip
    with pools.fresh_pool(args.workers) as pool:  # workers end with this process
        table = pd.DataFrame(list(pool.map(_sinks_task, tasks)))
    pd.set_option("display.width", 160)
    print(
        f"market {market} of design {args.design_seed} at q = {args.q}, adversaries "
        f"{adversaries}{' on stochastic paths' if args.noise else ''}: per seed the lab that "
        "draws the most attempts over the window (labs numbered from 1 by reach; leaks: the "
        "step each closed lab's weights leaked), its share of the attempts and its compromised "
        "share"
    )
    print(table.round(3).to_string(index=False))
    same = int((table["sim_sink"] == table["theory_sink"]).sum())
    print(
        f"same sink in {same} of {len(table)} seeds; mean N simulated "
        f"{table['sim_N'].mean():+.3f}, theory {table['theory_N'].mean():+.3f}"
    )


def _reach_market() -> tuple[dict, int]:
    import yaml

    sweep = yaml.safe_load((REPO / "conf/sweep/regime_map_reach.yaml").read_text())
    return {f"model.{k}": v for k, v in sweep["model"].items()}, sweep["steps"]


def _patience(args) -> None:
    import time

    from sim.analysis import with_values

    reach, _ = _reach_market()
    cases = [
        {**reach, "model.reach_exponent": zeta, "model.coupling": kappa}
        for zeta in (1.0, 1.5, 2.0)
        for kappa in (0.5, 0.75, 1.0)
    ]
    cases += [_market(m) for m in range(0, validate.DEFAULT_MARKETS, 3)]
    cases.append({"model.n_labs": 3, "model.n_adversaries": 30})
    seconds = {"all": 0.0, "early stop": 0.0}
    changed, unconverged, worst, solves = 0, 0, 0.0, 0
    for values in cases:
        theory = MarketTheory(with_values(config_from_flat(), values))
        structure = theory.draw_structures(np.random.default_rng(0), 1, 41, 150)[0]
        for q in SECANT:
            t0 = time.perf_counter()
            full = theory.solve(q, structure, patience=None)
            t1 = time.perf_counter()
            early = theory.solve(q, structure)
            seconds["all"] += t1 - t0
            seconds["early stop"] += time.perf_counter() - t1
            solves += 1
            gap = abs(full.net_alignment - early.net_alignment)
            if full.converged:
                changed += int(gap > 0 or not early.converged)
            else:
                unconverged += 1
                worst = max(worst, gap)
    print(
        f"{solves} solves, {unconverged} unconverged: converged solves changed {changed}; "
        f"largest change of N in an unconverged one {worst:.4f}; time {seconds['all']:.0f} s "
        f"with all iterations, {seconds['early stop']:.0f} s with the early stop"
    )


def _residuals(args) -> None:
    from sim import market
    from sim.analysis import with_values

    values, steps = _reach_market()
    values.update({"model.reach_exponent": args.reach_exponent, "model.coupling": args.coupling})
    theory = MarketTheory(with_values(config_from_flat(), values))
    structure = theory.draw_structures(np.random.default_rng(0), 1, 41, steps)[0]
    changes = []
    relative = market._rel

    def recording(new, old):  # called once per variable per iteration, in a fixed order
        changes.append(relative(new, old))
        return changes[-1]

    market._rel = recording
    try:
        state = theory.solve(args.q, structure, patience=None)  # all 3,000 iterations
    finally:
        market._rel = relative
    last = np.array(changes).reshape(-1, 5)[-500:].max(axis=0)
    names = ("effort", "knowledge", "channel probabilities", "compromise", "defence")
    told = ", ".join(f"{n} {100 * c:.1f}%" for n, c in zip(names, last, strict=True))
    print(
        f"ζ = {args.reach_exponent}, κ = {args.coupling}, q = {args.q}: converged "
        f"{state.converged} after {state.iterations} iterations; largest change per iteration "
        f"over the last 500: {told}"
    )


def _rescore(task: tuple) -> pd.DataFrame:
    """One market's runs of a validation folder with the theory solved again."""
    (folder, base, market, values, design_seed, steps, burn_in, grid, leaks, state, noise, rounds,
     lab_step, adversaries, groups) = task  # fmt: skip
    # noise: None (the deterministic path), or the stream of the stochastic paths
    from sim.model import AlignmentParadoxModel

    runs = pd.read_parquet(folder / "markets" / f"{market:03d}.parquet")
    rows = []
    for r, seed in enumerate(runs["seed"].drop_duplicates()):
        leak_rng = np.random.default_rng([validate.market_leak_seed(market, design_seed), r])
        leak = None
        for q in SECANT:
            row = runs[(runs["seed"] == seed) & (runs["q"] == q)].iloc[0].to_dict()
            cfg = validate.market_config(base, {**values, "model.fixed_alignment": q})
            model = AlignmentParadoxModel(rng=int(seed), config=cfg)  # the run's initial draw
            open0, budget = model.lab.open_weights.copy(), model.lab.budget.copy()
            if validate.open_code(open0) != row["open_initial"]:
                raise RuntimeError(f"market {market}, seed {seed}: not the stored run's draw")
            theory = MarketTheory(
                cfg, channel_grid=grid, state=state, lab_rounds=rounds, lab_step=lab_step,
                sample_groups=groups,
            )  # fmt: skip
            if leak is None:
                leak = theory.with_leaks(open0, leak_rng, burn_in + 1, steps)
            dated = leaks == "run" and grid  # the point theory always takes the drawn leak
            opened = validate.leak_dates(row["opened_at"]) if dated else None
            structure = validate.run_structure(
                open0, budget, opened, leak, "run" if dated else "drawn",
                validate.adversary_structure(validate.drawn_adversaries(model), adversaries),
            )  # fmt: skip
            path_seed = (
                None
                if noise is None
                else validate.noise_seed(validate.market_leak_seed(market, design_seed), r, noise)
            )
            solved = validate.solve_run(theory, q, structure, steps, burn_in, path_seed)
            row.update(
                theory_N=solved.net_alignment, theory_Phi=solved.Phi, converged=solved.converged,
                market=market,
                # the seed's drawn adversaries' mean budget relative to the configured mean
                adversary_budget_ratio=float(model.adv.budget.mean())
                / cfg.model.adversary_budget_mean,
            )  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def _noise_covered(what: str, args, base: Config) -> None:
    """Refuse --noise where the theory is no path: the point theory, or adversaries that do
    not learn by Roth–Erev (the distribution option is solved only for them)."""
    if not args.noise:
        return
    if not MarketTheory(base, channel_grid=args.channel_grid).follows_path:
        raise SystemExit(
            f"{what}: --noise needs --channel-grid > 0 and Roth–Erev adversaries (only the "
            "distribution option follows a path)"
        )
    try:  # noise_seed refuses a stream that is not one of the paths'
        validate.noise_seed(0, 0, args.noise_stream)
    except ValueError as err:
        raise SystemExit(f"{what}: --noise-stream: {err}") from None


def _step_covered(what: str, args, base: Config) -> None:
    """Refuse --lab-step model where the theory cannot take it (no path, or labs that do
    not best-respond), before any worker starts."""
    try:
        MarketTheory(base, channel_grid=args.channel_grid, lab_step=args.lab_step)
    except ValueError as err:
        raise SystemExit(f"{what}: --lab-step {args.lab_step}: {err}") from None


def _compare(args) -> None:
    folder = Path(args.out)
    manifest = json.loads((folder / "validation_design.json").read_text())
    base = config_from_flat(**manifest["base"])  # the validation's overrides, if any
    _noise_covered("compare", args, base)
    _step_covered("compare", args, base)
    if manifest["base"] != json.loads(json.dumps(to_flat(base), default=str)):
        raise SystemExit("compare: the folder's base configuration does not rebuild exactly")
    design_seed = manifest["design_seed"]
    # the folder's own adversaries unless --adversaries says otherwise (as leaks, the run's)
    adversaries = args.adversaries or manifest.get("adversaries", "population")
    plan = validate.design(manifest["markets"], design_seed)
    tasks = []
    for _, row in plan.iterrows():
        values = {k: validate._plain(row[k]) for k in plan.columns if k != "market"}
        tasks.append((folder, base, int(row["market"]), values, design_seed, manifest["steps"],
                      manifest["burn_in"], args.channel_grid,
                      manifest.get("leaks", "drawn"), args.state,
                      args.noise_stream if args.noise else None, args.lab_rounds,
                      args.lab_step, adversaries, args.sample_groups))  # fmt: skip
    with pools.fresh_pool(args.workers) as pool:  # workers end with this process
        runs = list(pool.map(_rescore, tasks))
    rows = [
        {**row.to_dict(), **validate.summarise_market(r)}
        for (_, row), r in zip(plan.iterrows(), runs, strict=True)
    ]
    if args.save_runs:  # one row per market, seed and level: simulated and rescored N and Φ
        per_run = pd.concat(runs, ignore_index=True)
        if str(args.save_runs).endswith(".parquet"):  # keeps open_initial a string of 0s and 1s
            per_run.to_parquet(args.save_runs, index=False)
        else:
            per_run.to_csv(args.save_runs, index=False)
    table = pd.DataFrame(rows)
    summary = validate.summarise(table, manifest)
    clear = summary["sign_clear_markets"]
    print(
        f"{folder} rescored with channel grid {args.channel_grid}, state {args.state}"
        f"{' on stochastic paths' if args.noise else ''}, lab rounds {args.lab_rounds}, lab "
        f"step {args.lab_step}, adversaries {adversaries}"
        f"{f' ({args.sample_groups} groups)' if args.sample_groups else ''}: "
        f"{summary['within_tolerance']} of {summary['markets']} within max(0.03, 2 SE) "
        f"({summary['within_paired_tolerance']} with the paired SE, {summary['within_0_03']} "
        f"within 0.03); signs agree in {summary['sign_agreement_where_clear']:.0%} of the {clear} "
        f"clear; median |difference| {table['difference'].abs().median():.3f}; correlation "
        f"{np.corrcoef(table['theory_slope'], table['sim_slope'])[0, 1]:.2f}"
    )
    if args.save:
        table.to_csv(args.save, index=False)
    failing = table[~table["within"]]
    print("outside tolerance:", ", ".join(
        f"{int(r.market)} ({r.theory_slope:+.3f} vs {r.sim_slope:+.3f} ± {r.sim_se:.3f})"
        for r in failing.itertuples()) or "none")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what",
        choices=(
            "channels",
            "leaks",
            "window",
            "churn",
            "defence",
            "residuals",
            "patience",
            "compare",
            "states",
            "sinks",
        ),
    )
    parser.add_argument("--markets", "--market", default="16", help="comma-separated indices")
    parser.add_argument(
        "--seeds", type=int, default=4, help="paired seeds (leaks, window, states, sinks)"
    )
    parser.add_argument(
        "--seed-index", type=int, default=0, help="which seed (channels, churn, defence)"
    )
    parser.add_argument(
        "--q", type=float, default=SECANT[1], help="level (channels, churn, defence, sinks)"
    )
    parser.add_argument("--reach-exponent", type=float, default=1.5, help="(residuals)")
    parser.add_argument("--coupling", type=float, default=0.5, help="(residuals)")
    parser.add_argument("--steps", type=int, default=validate.DEFAULT_STEPS)
    parser.add_argument("--burn-in", type=int, default=validate.DEFAULT_BURN_IN)
    parser.add_argument(
        "--channel-grid", type=int, default=0, help="theory (channels, compare, defence; 0: point)"
    )
    parser.add_argument(
        "--design-seed",
        type=int,
        default=validate.DESIGN_SEED,
        help="the validation design of the markets (channels, churn, defence, leaks, window)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every market, repeatable (channels, churn, defence, leaks, window)",
    )
    parser.add_argument(
        "--hold",
        default="{}-{}".format(*GIVE_UP_STEPS),
        help="steps A-B over which the give-up state holds the top lab (states; %(default)s)",
    )
    parser.add_argument(
        "--state",
        choices=STATES,
        default="path",
        help="the theory's stationary state (compare; docs/theory.md §4.6)",
    )
    parser.add_argument(
        "--noise",
        action="store_true",
        help="the theory on stochastic paths, seeded as paradox validate --noise seeds them "
        "(compare, states, sinks; docs/theory.md §4.9)",
    )
    parser.add_argument(
        "--noise-stream",
        type=int,
        default=1,
        help="which stream of stochastic paths (compare, states, sinks; 1: the one paradox "
        "validate --noise uses, others: the theory's own Monte Carlo spread; %(default)s)",
    )
    parser.add_argument(
        "--lab-rounds",
        type=int,
        default=LAB_STEP_ROUNDS,
        help="refinement rounds of the labs' best response in each step of the expected "
        "dynamics (compare, states; 0: the grid alone, as before commit 772d027; %(default)s)",
    )
    parser.add_argument(
        "--lab-step",
        choices=LAB_STEPS,
        default="joint",
        help="how the theory's labs move along the path: their joint best response, or the "
        "model's own step (compare, states, defence, sinks; not learning.lab.rule; docs/theory.md "
        "§4.1; %(default)s)",
    )
    parser.add_argument(
        "--adversaries",
        choices=validate.ADVERSARIES,
        default=None,
        help="the theory's adversary budgets: the configured lognormal, or each run's own draw "
        "(compare: the folder's own by default; states, sinks: population by default; paradox "
        "validate --adversaries; docs/theory.md §4.10)",
    )
    parser.add_argument(
        "--sample-groups",
        type=int,
        default=None,
        help="quantile groups of a run's own adversary budgets with --adversaries seed "
        "(compare, states, sinks; default twice the 12 budget nodes; 12 reproduces the ninth "
        "design's measurements, docs/theory.md §4.10)",
    )
    parser.add_argument("--out", default=None, help="a paradox validate folder (compare)")
    parser.add_argument("--workers", type=int, default=2, help="processes (compare, states, sinks)")
    parser.add_argument("--save", default=None, help="CSV for the rescored table (compare)")
    parser.add_argument(
        "--save-runs",
        default=None,
        help="file of the rescored runs, one row per market, seed and level, with the seed's "
        "mean adversary budget relative to the configured mean (compare; .parquet or CSV)",
    )
    args = parser.parse_args(argv)
    if args.lab_rounds < 0:
        raise SystemExit(f"--lab-rounds must be an integer >= 0, got {args.lab_rounds}")
    if not 1 <= args.seeds <= validate.DEFAULT_SEEDS:  # the design's paired seeds
        raise SystemExit(
            f"--seeds must be an integer in [1, {validate.DEFAULT_SEEDS}], got {args.seeds}"
        )
    if args.sample_groups is not None and args.sample_groups < 1:
        raise SystemExit(f"--sample-groups must be an integer >= 1, got {args.sample_groups}")
    args.markets = [int(m) for m in str(args.markets).split(",")]
    single = {
        "channels": _channels,
        "churn": _churn,
        "defence": _defence,
        "residuals": _residuals,
        "patience": _patience,
        "compare": _compare,
        "states": _states,
        "sinks": _sinks,
    }
    if args.what in single:
        single[args.what](args)
    else:
        _runs(args, _leaks if args.what == "leaks" else _window)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
