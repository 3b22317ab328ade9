"""``paradox boundary``: where the paradox begins, in the plane of coupling κ and top-lab reach.

For each reach exponent ζ of ``--zeta`` (the top lab's reach w₁ follows from ζ and the number of
labs), the simulated boundary κ* is found by bisection on the sign of the secant slope
(N(0.95) − N(0.75)) / 0.2, each slope the mean over ``--seeds`` paired seeds (common random
numbers: the same seeds, hence the same open-weights draws and budgets, at every κ and level) of
runs of ``--steps`` steps averaged after ``--burn-in``. The bracket starts at ``--kappa lo,hi``
and is halved ``--rounds`` times; κ* is the zero of the straight line through the final
bracket's two slopes, with a delta-method standard error from their standard errors. A ζ whose
slope is negative already at the lower end, or still non-negative at the upper end, is reported
as censored (κ* below or above the range).

Beside each simulated boundary the command draws the market theory's secant κ* (docs/theory.md
§4) and the mean field's (§3, which ignores ζ), so the figure shows which theory predicts the
heterogeneous market. Writes into ``--out`` (default ``results/boundary/<date>/<time>``):

- ``zeta/<i>.parquet``: every κ evaluated for the i-th ζ: the per-seed slopes (one file per ζ,
  written when it finishes: rerunning with the same ``--out`` resumes);
- ``boundary.csv``: one row per ζ: w₁, the simulated κ* with its bracket, standard error and
  censoring, the slopes at the bracket's ends, and the theories' κ*;
- ``boundary.json``: the design and a summary (the market theory's and the mean field's mean
  absolute error in κ* where the simulated boundary is inside the range);
- ``figures/boundary.{pdf,png,txt}``: the regime map with both theories' lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments import outputs
from experiments.validate import ValidationMismatch, market_config, paired_seeds, parse_overrides
from sim import pools, rules
from sim.config import Config, ParameterError, config_from_flat, to_flat
from sim.market import SECANT, MarketTheory, NotCovered, market_threshold

#: Seeds of the paired replicates; fixed before any boundary was computed.
BOUNDARY_SEED = 20261205
ZETAS = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def run_slopes(cfg: Config, seeds: list[int], steps: int, burn_in: int) -> np.ndarray:
    """Per seed, the simulated secant slope (N(hi) − N(lo)) / (hi − lo) over :data:`SECANT`,
    N the mean net alignment after ``burn_in``."""
    from sim.model import AlignmentParadoxModel

    lo, hi = SECANT
    slopes = []
    for seed in seeds:
        level = {}
        for q in (lo, hi):
            model = AlignmentParadoxModel(
                rng=seed, config=market_config(cfg, {"model.fixed_alignment": q})
            )
            total = 0.0
            for t in range(1, steps + 1):
                model.step()
                if t > burn_in:
                    total += model.outcomes["net_alignment"]
            level[q] = total / (steps - burn_in)
        slopes.append((level[hi] - level[lo]) / (hi - lo))
    return np.array(slopes)


def find_boundary(
    slopes_at: Callable[[float], np.ndarray], lo: float, hi: float, rounds: int
) -> tuple[dict, list[dict]]:
    """Bisect [lo, hi] on the sign of the mean of ``slopes_at(κ)`` (per-seed slopes).

    Returns the boundary (``kappa_star``, its ``se``, the final bracket, ``censored``: ``below``,
    ``above`` or empty) and every evaluation (κ, mean slope, standard error, seeds).
    """
    evaluations: list[dict] = []

    def evaluate(kappa: float) -> dict:
        s = np.asarray(slopes_at(kappa), dtype=float)
        row = {
            "kappa": float(kappa),
            "slope": float(s.mean()),
            "se": float(s.std(ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan"),
            "seeds": int(s.size),
            "per_seed": s.tolist(),
        }
        evaluations.append(row)
        return row

    low, high = evaluate(lo), evaluate(hi)
    if low["slope"] < 0:
        return _censored("below", low, high), evaluations
    if high["slope"] >= 0:
        return _censored("above", low, high), evaluations
    for _ in range(rounds):
        mid = evaluate(0.5 * (low["kappa"] + high["kappa"]))
        low, high = (low, mid) if mid["slope"] < 0 else (mid, high)
    # the zero of the line through the bracket's ends, and its delta-method standard error
    s0, s1, k0, k1 = low["slope"], high["slope"], low["kappa"], high["kappa"]
    w = s0 / (s0 - s1)
    kappa_star = k0 + w * (k1 - k0)
    d0 = (k1 - k0) * -s1 / (s0 - s1) ** 2  # ∂κ*/∂s0
    d1 = (k1 - k0) * s0 / (s0 - s1) ** 2  # ∂κ*/∂s1
    se = float(np.sqrt((d0 * low["se"]) ** 2 + (d1 * high["se"]) ** 2))
    return {
        "kappa_star": float(kappa_star),
        "kappa_star_se": se,
        "bracket_lo": k0,
        "bracket_hi": k1,
        "slope_lo": s0,
        "slope_lo_se": low["se"],
        "slope_hi": s1,
        "slope_hi_se": high["se"],
        "censored": "",
    }, evaluations


def _censored(side: str, low: dict, high: dict) -> dict:
    return {
        "kappa_star": float("nan"),
        "kappa_star_se": float("nan"),
        "bracket_lo": low["kappa"],
        "bracket_hi": high["kappa"],
        "slope_lo": low["slope"],
        "slope_lo_se": low["se"],
        "slope_hi": high["slope"],
        "slope_hi_se": high["se"],
        "censored": side,
    }


def _zeta_task(args: tuple) -> tuple[int, dict, list[dict]]:
    index, base, zeta, seeds, steps, burn_in, lo, hi, rounds = args
    cfg = market_config(base, {"model.reach_exponent": zeta})

    def slopes_at(kappa: float) -> np.ndarray:
        return run_slopes(market_config(cfg, {"model.coupling": kappa}), seeds, steps, burn_in)

    boundary, evaluations = find_boundary(slopes_at, lo, hi, rounds)
    return index, boundary, evaluations


def run_boundary(
    out: Path,
    *,
    base: Config,
    zetas: list[float],
    seeds: int,
    steps: int,
    burn_in: int,
    kappa: tuple[float, float],
    rounds: int,
    workers: int,
    meanfield: bool = True,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Run (or resume) the boundary search into ``out``; returns the table and the summary."""
    seed_list = paired_seeds(seeds, BOUNDARY_SEED)
    folder = out / "zeta"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "seed": BOUNDARY_SEED,
        "zetas": list(zetas),
        "seeds": seeds,
        "steps": steps,
        "burn_in": burn_in,
        "kappa": list(kappa),
        "rounds": rounds,
        "levels": list(SECANT),
        "base": to_flat(base),
    }
    manifest_path = out / "boundary_design.json"
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()) != json.loads(json.dumps(manifest, default=str)):
            raise ValidationMismatch(f"{out} holds a boundary of another design; give a new --out")
    else:
        outputs.write_json(manifest_path, manifest)
    todo = [
        (i, base, z, seed_list, steps, burn_in, kappa[0], kappa[1], rounds)
        for i, z in enumerate(zetas)
        if not (folder / f"{i:02d}.json").exists()
    ]
    bar = tqdm(
        total=len(zetas),
        initial=len(zetas) - len(todo),
        desc="boundary",
        unit="ζ",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )

    def save(index: int, boundary: dict, evaluations: list[dict]) -> None:
        outputs.write_json(folder / f"{index:02d}.json", {"boundary": boundary,
                                                          "evaluations": evaluations})  # fmt: skip
        bar.update()

    with bar:
        if workers <= 1 or len(todo) <= 1:
            for task in todo:
                save(*_zeta_task(task))
        else:
            with pools.fresh_pool(workers) as pool:  # workers end with this process
                for fut in as_completed([pool.submit(_zeta_task, t) for t in todo]):
                    save(*fut.result())
    theory = market_threshold(base, "model.reach_exponent", list(zetas), workers=workers)
    rows = []
    for i, z in enumerate(zetas):
        found = json.loads((folder / f"{i:02d}.json").read_text())["boundary"]
        n = base.model.n_labs
        rows.append(
            {
                "zeta": float(z),
                "top_lab_reach": float(rules.reach_weights(n, z)[0]),
                **{k: (np.nan if v is None else v) for k, v in found.items()},
                "theory_kappa_star": float(theory["kappa_star"].iloc[i]),
                "theory_converged": bool(theory["converged"].iloc[i]),
            }
        )
    table = pd.DataFrame(rows)
    if meanfield:
        from sim.analysis import meanfield_threshold

        mf = meanfield_threshold(
            base, "model.reach_exponent", list(zetas), *SECANT, steps, burn_in=burn_in
        )
        table["meanfield_kappa_star"] = mf["kappa_star"].to_numpy()
    return table, summarise(table, manifest)


def summarise(table: pd.DataFrame, manifest: dict) -> dict:
    inside = table[table["censored"] == ""]
    out = {
        "zetas": len(table),
        "inside_range": len(inside),
        "censored_below": int((table["censored"] == "below").sum()),
        "censored_above": int((table["censored"] == "above").sum()),
        "design": manifest,
    }
    for name in ("theory", "meanfield"):
        column = f"{name}_kappa_star"
        if column in table and len(inside):
            err = (inside[column] - inside["kappa_star"]).abs()
            out[f"{name}_mean_abs_error"] = float(err.mean()) if err.notna().any() else None
            out[f"{name}_max_abs_error"] = float(err.max()) if err.notna().any() else None
            out[f"{name}_missing"] = int(err.isna().sum())
    return out


def draw_figure(table: pd.DataFrame, summary: dict, path: Path) -> None:
    from sim.figures import regime_boundary, save

    fig, caption = regime_boundary(table, summary)
    save(fig, path, caption)


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(name, text, "comma-separated numbers") from None
    if not values:
        raise ParameterError(name, text, "at least one number")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox boundary",
        description="The simulated paradox boundary κ*(top-lab reach) by bisection, with the "
        "market theory's and the mean field's lines (docs/theory.md §4.8).",
    )
    parser.add_argument("overrides", nargs="*", help="key=value settings (e.g. model.n_labs=8)")
    parser.add_argument(
        "--zeta", default=",".join(map(str, ZETAS)), help="reach exponents ζ (default %(default)s)"
    )
    parser.add_argument("--kappa", default="0.3,1.0", help="κ bracket lo,hi (default 0.3,1.0)")
    parser.add_argument("--rounds", type=int, default=4, help="bisection rounds (default 4)")
    parser.add_argument("--seeds", type=int, default=20, help="paired seeds (default 20)")
    parser.add_argument("--steps", type=int, default=600, help="steps per run (600)")
    parser.add_argument("--burn-in", type=int, default=150, help="steps left out (150)")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--no-meanfield", action="store_true", help="skip the mean-field line")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        zetas = _floats(args.zeta, "--zeta")
        if any(not 0 <= z <= 10 for z in zetas):
            raise ParameterError("--zeta", args.zeta, "reach exponents in [0, 10]")
        kappa = _floats(args.kappa, "--kappa")
        if len(kappa) != 2 or not 0 <= kappa[0] < kappa[1] <= 1:
            raise ParameterError("--kappa", args.kappa, "lo,hi with 0 <= lo < hi <= 1")
        for name, value, lo in (("--seeds", args.seeds, 2), ("--steps", args.steps, 1),
                                ("--rounds", args.rounds, 0)):  # fmt: skip
            if value < lo:
                raise ParameterError(name, value, f"an integer >= {lo}")
        if not 0 <= args.burn_in < args.steps:
            raise ParameterError("--burn-in", args.burn_in, f"[0, {args.steps - 1}] (< --steps)")
        values = parse_overrides(args.overrides)
        for key in ("model.reach_exponent", "model.coupling", "model.fixed_alignment"):
            if key in values:
                raise ParameterError(key, values[key], "a key the boundary search does not vary")
        base = market_config(config_from_flat(), values) if values else config_from_flat()
        MarketTheory(base)  # refuses rules the theory does not cover, before anything runs
    except (ParameterError, NotCovered, KeyError) as err:
        text = f"unknown key {err}" if isinstance(err, KeyError) else str(err)
        print(f"paradox boundary: {text}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC)
    out = args.out or Path("results/boundary") / stamp.strftime("%Y-%m-%d") / stamp.strftime(
        "%H-%M-%S"
    )
    workers = args.workers or len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    try:
        table, summary = run_boundary(
            out,
            base=base,
            zetas=zetas,
            seeds=args.seeds,
            steps=args.steps,
            burn_in=args.burn_in,
            kappa=(kappa[0], kappa[1]),
            rounds=args.rounds,
            workers=workers,
            meanfield=not args.no_meanfield,
        )
    except ValidationMismatch as err:
        print(f"paradox boundary: {err}", file=sys.stderr)
        return 2
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    outputs.atomic_write(out / "boundary.csv", lambda p: table.to_csv(p, index=False))
    outputs.write_json(out / "boundary.json", summary)
    draw_figure(table, summary, out / "figures" / "boundary")
    for _, row in table.iterrows():
        sim_text = (
            f"κ* {row['kappa_star']:.3f} ± {row['kappa_star_se']:.3f}"
            if not row["censored"]
            else f"κ* {'<' if row['censored'] == 'below' else '>'} "
            f"{row['bracket_lo'] if row['censored'] == 'below' else row['bracket_hi']:g}"
        )
        print(
            f"ζ {row['zeta']:g} (w₁ {row['top_lab_reach']:.2f}): simulation {sim_text}; "
            f"market theory {row['theory_kappa_star']:.3f}"
            + (
                f"; mean field {row['meanfield_kappa_star']:.3f}"
                if "meanfield_kappa_star" in row
                else ""
            )
        )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
