"""``paradox theory``: the static game, the paradox curve and the mean-field trajectory.

Takes the same configuration keys as ``paradox run`` and writes, into a fresh folder under
``results/theory/``: ``theory.json`` (x*, y*, p*, q*, κ*, the paradox region, per channel and
for the channel a rational adversary would use), ``paradox_curve.parquet`` (the curve over a grid
of q, one block per channel), ``meanfield.parquet`` (the mean-field ODE over ``steps``) and
``market_curve.parquet`` (the market theory of docs/theory.md §4 over q = 0.1 … 0.9, 0.75 and
0.95: ``q``, ``N``, ``Phi``, ``deeper``, ``easier``, ``dN_dq`` and more), with a ``market`` block in
``theory.json`` (the secant slope over q 0.75 → 0.95 and its decomposition, q*, and the secant
and local κ*).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import outputs
from experiments.run import CONF_DIR
from experiments.schema import register
from sim import static_game as th
from sim.config import CHANNELS, Config
from sim.market import market_summary
from sim.meanfield import MeanField

DEFAULT_DIR = "results/theory/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}_${hydra:runtime.choices.scenario}"


def static_limit_notes(cfg: Config) -> list[str]:
    """Where the configuration departs from the static limit the closed forms assume."""
    m, notes = cfg.model, []
    if m.defence_floor != 0:
        notes.append(f"model.defence_floor = {m.defence_floor}: the static game assumes d0 = 0")
    if m.n_labs != 1 or m.n_adversaries != 1:
        notes.append("the static game has one lab and one adversary (see scenario=contest_1v1)")
    if m.decisiveness > 1:
        notes.append("μ > 1: the interior equilibrium needs the participation constraints")
    return notes


def theory(cfg: Config) -> tuple[dict, pd.DataFrame]:
    """Everything the static limit says for ``cfg``: the summary and the curves."""
    q_eval = th.evaluation_quality(cfg)
    accessible = th.accessible_channels(cfg)
    per_channel, curves = {}, []
    for name in CHANNELS:
        game = th.StaticGame.from_config(cfg, name)
        eq = th.equilibrium(game.effectiveness(q_eval), game.prize(q_eval), game.loss(q_eval),
                            game.decisiveness)  # fmt: skip
        per_channel[name] = {
            "accessible": name in accessible,
            "a": float(game.effectiveness(q_eval)),
            "x_star": float(eq.x),
            "y_star": float(eq.y),
            "p_star": float(eq.p),
            "equilibrium_valid": bool(eq.valid),
            "q_star": th.optimum(game),
            "paradox_region": [list(r) for r in th.paradox_region(game)],
            "kappa_star": th.threshold(game),
            "N_at_q": float(th.net_alignment(game, q_eval)),
        }
        block = th.curve(game)
        block.insert(0, "channel", name)
        curves.append(block)
    # A rational adversary uses the accessible channel with the highest effectiveness: its
    # equilibrium payoff V_a p*(1 − μ(1 − p*)) rises with p*, which rises with a.
    channel = max(accessible, key=lambda k: per_channel[k]["a"])
    head = per_channel[channel]
    summary = {
        "channel": channel,
        "q": q_eval,
        **{k: head[k] for k in ("x_star", "y_star", "p_star", "q_star", "kappa_star")},
        "paradox_region": head["paradox_region"],
        "per_channel": per_channel,
        "assumptions": "one lab, one adversary, one channel, q fixed, K = 1, d0 = 0 "
        "(docs/ODD.md §7.8); prize v_a q (1 + c), loss σ v_d q (1 + c)",
        "departures_from_static_limit": static_limit_notes(cfg),
        "game": {k: v for k, v in asdict(th.StaticGame.from_config(cfg, channel)).items()},
    }
    return summary, pd.concat(curves, ignore_index=True)


register()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    config, out_dir = outputs.validated_or_exit(cfg, "paradox theory")
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    summary, curves = theory(config)
    trajectory = MeanField(config).solve(config.steps)
    summary["meanfield_method"] = trajectory.attrs.get("method")
    summary["market"], market_curve = market_summary(
        config, progress=lambda text: print(text, file=sys.stderr, flush=True)
    )
    outputs.write_parquet(out_dir / "paradox_curve.parquet", curves)
    if not market_curve.empty:
        outputs.write_parquet(out_dir / "market_curve.parquet", market_curve)
    outputs.write_parquet(out_dir / "meanfield.parquet", trajectory)
    outputs.write_json(out_dir / "theory.json", summary)
    outputs.write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    outputs.write_json(
        out_dir / "provenance.json",
        outputs.provenance(
            seed=config.seed, overrides=list(hc.overrides.task), started=started,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_seconds=round(time.perf_counter() - t0, 4),
        ),
    )  # fmt: skip
    q_star = summary["q_star"]
    kappa_star = summary["kappa_star"]
    print(f"channel {summary['channel']} at q = {summary['q']:.4g}: "
          f"x* = {summary['x_star']:.4g}, y* = {summary['y_star']:.4g}, "
          f"p* = {summary['p_star']:.4g}")  # fmt: skip
    print(
        "q* = "
        + ("none (N rises on all of [0, 1))" if q_star is None else f"{q_star:.4g}")
        + ", κ* = "
        + ("none in [0, 1]" if kappa_star is None else f"{kappa_star:.4g}")
    )
    market = summary["market"]
    if market["covered"]:
        k_sec, k_loc = market["kappa_star_secant"], market["kappa_star_local"]
        print(
            f"market: slope over q {market['secant_levels'][0]}→{market['secant_levels'][1]} "
            f"{market['secant_slope']:+.3f} = 1 − deeper {market['deeper']:.3f} − easier "
            f"{market['easier']:.3f}; q* = "
            + ("none" if market["q_star"] is None else f"{market['q_star']:.3g}")
            + ", κ* (secant) = "
            + ("none in [0, 1]" if k_sec is None else f"{k_sec:.3g}")
            + ", κ* (local) = "
            + ("none in [0, 1]" if k_loc is None else f"{k_loc:.3g}")
        )
    else:
        print("market theory: not covered (" + "; ".join(market["reasons"]) + ")")
    if summary["meanfield_method"] != "RK45":
        print(f"mean field: {summary['meanfield_method']}", file=sys.stderr)
    print(out_dir)


HELP_HEADER = """paradox theory: what mathematics says about a configuration.
The closed-form one-lab, one-adversary Tullock contest (x*, y*, p*), the net-alignment curve
N(q), its optimum q*, the paradox region and the threshold coupling κ*, the mean-field ODE and
the market theory. Takes the same keys as paradox run, e.g.
  paradox theory scenario=contest_1v1 model.coupling=0.5
Writes theory.json, paradox_curve.parquet, meanfield.parquet and market_curve.parquet into a
fresh folder under results/theory/ and prints its path last.
"""


def main() -> None:
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv[1:]):
        sys.argv.append(f"hydra.run.dir={DEFAULT_DIR}")
    if any(a in ("--help", "-h") for a in sys.argv[1:]):  # not paradox run's help text
        sys.argv += ["hydra.help.app_name=paradox theory", f"hydra.help.header='{HELP_HEADER}'"]
    _hydra_main()


if __name__ == "__main__":
    main()
