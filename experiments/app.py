"""``paradox app``: the model live in the browser, on Mesa's SolaraViz, served offline.

The page is a :class:`mesa.visualization.SolaraViz` of :class:`Explorer`, a thin Mesa model that
holds one :class:`sim.model.AlignmentParadoxModel` built from the controls (or, when the
controls make an invalid configuration, the validation message instead of a model). Its views
are Mesa components (``make_plot_component``'s ``PlotMatplotlib`` for the time series, and
matplotlib figures for the labs and the adversary network), updated after every step.

The controls live in one per-session reactive dict that :class:`Explorer` reads when Mesa's
Reset button builds a new model, so a scenario selection can set every control at once; as
everywhere in Mesa 3.5, changed settings take effect on Reset. Scenarios are the files in
``conf/scenario/``, composed as ``paradox run scenario=<name>`` composes them
(:func:`sim.config.config_from_flat` with ``scenario=``).

``paradox app [--host H] [--port P]`` runs ``solara run`` on this module with Solara's
telemetry off; the JavaScript and CSS come from the ``solara-assets`` package in the
environment (``.venv/share/solara/cdn``), so the page needs no internet.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mesa
import numpy as np

from sim.config import CHANNELS, OPEN_SELECTIONS, Config, ParameterError, config_from_flat, to_flat

REPO = Path(__file__).resolve().parent.parent

#: Adversary networks larger than this are not drawn (the view says so).
NETWORK_MAX_NODES = 500
#: Labs shown in the per-lab bars (the largest by reach).
LABS_SHOWN = 50

CHANNEL_COLOURS = {"weights": "tab:red", "prompt": "tab:blue", "output": "tab:green"}


@dataclass(frozen=True)
class Control:
    """One control of the page: a flat model parameter (see :func:`sim.config.flat_keys`)."""

    name: str
    label: str
    lo: float = 0.0
    hi: float = 1.0
    step: float = 0.05
    kind: str = "float"  # float, int or select
    choices: tuple[str, ...] = ()


#: The controls, in the order the page shows them (the alignment level q has its own pair:
#: a checkbox for exogenous q and a slider for its level).
CONTROLS: tuple[Control, ...] = (
    Control("coupling", "coupling κ", 0.0, 1.0, 0.05),
    Control("n_labs", "labs N", 1, 50, 1, "int"),
    Control("n_adversaries", "adversaries M", 1, 5000, 1, "int"),
    Control("reach_exponent", "reach exponent ζ", 0.0, 3.0, 0.1),
    Control("adversary_budget_mean", "adversary budget ē", 0.05, 2.0, 0.05),
    Control("open_weights_share", "open-weights share", 0.0, 1.0, 0.05),
    Control(
        "open_weights_selection", "open weights: which labs", kind="select", choices=OPEN_SELECTIONS
    ),
    Control("leak_probability", "leak probability ℓ", 0.0, 0.05, 0.001),
    Control("api_access_share", "query access share", 0.0, 1.0, 0.05),
    Control("publication_rate", "publication rate π", 0.0, 1.0, 0.05),
    Control("defence_mandate", "defence mandate m", 0.0, 1.0, 0.05),
    Control("decoupling_share", "decoupling R&D share", 0.0, 0.9, 0.05),
    Control("decoupling_efficiency", "decoupling efficiency η_κ", 0.0, 2.0, 0.05),
    Control("detection_probability", "detection probability ψ", 0.0, 0.5, 0.01),
    Control("deterrence_steps", "deterrence steps T", 0, 100, 1, "int"),
    Control("liability", "liability λ_L", 0.0, 10.0, 0.5),
)
Q_LABEL = "alignment q (when held fixed)"
Q_FIXED_LABEL = "hold alignment q fixed (exogenous)"
#: The level q takes when "hold fixed" is ticked in a scenario that lets it evolve.
DEFAULT_Q = 0.8

# ---------------------------------------------------------------------------------------------
# Scenarios and control values
# ---------------------------------------------------------------------------------------------


@functools.cache
def scenarios() -> dict[str, Config | ParameterError]:
    """Every scenario in ``conf/scenario/``, composed as ``paradox run scenario=<name>`` composes
    it (:mod:`sim.scenarios`) and validated; an invalid one maps to its error. Baseline first."""
    from sim.scenarios import scenario_names

    out: dict[str, Config | ParameterError] = {}
    for name in sorted(scenario_names(), key=lambda n: (n != "baseline", n)):
        try:
            out[name] = config_from_flat(scenario=name)
        except ParameterError as err:
            out[name] = err
    return out


def scenario_values(name: str) -> dict[str, Any]:
    """The controls' values in scenario ``name`` (raises ``KeyError`` for an unknown one)."""
    known = scenarios()
    if name not in known:
        raise KeyError(f"unknown scenario '{name}'; allowed: {', '.join(known)}")
    cfg = known[name]
    flat = to_flat(Config() if isinstance(cfg, ParameterError) else cfg)
    values: dict[str, Any] = {"scenario": name}
    values.update({c.name: flat[c.name] for c in CONTROLS})
    q = flat["fixed_alignment"]
    values["q_fixed"] = q is not None
    values["q"] = DEFAULT_Q if q is None else float(q)
    return values


def configure(values: dict[str, Any]) -> Config:
    """The configuration the controls describe: their scenario with the controls' values set
    (its other keys as the scenario has them), validated; raises ``ParameterError`` naming the
    offending key."""
    controls = {c.name: values[c.name] for c in CONTROLS}
    q = float(values["q"]) if values["q_fixed"] else None
    return config_from_flat(scenario=values["scenario"], fixed_alignment=q, **controls)


# ---------------------------------------------------------------------------------------------
# The Mesa model behind the page
# ---------------------------------------------------------------------------------------------


class Explorer(mesa.Model):
    """The model the page shows: an :class:`AlignmentParadoxModel` built from the controls.

    ``controls`` is a dict of control values (:func:`scenario_values`) or a Solara reactive
    holding one; it is read once, here. Attributes: ``sim`` (the model, or ``None`` when the
    values are invalid), ``error`` (the validation message, else ``None``), ``values`` (the
    values used), ``theory`` (the market theory's stationary state, when it applies) and
    ``theory_note`` (why it does not, else ``None``). ``datacollector`` is the model's, so
    Mesa's plot components read the outcomes directly.
    """

    def __init__(self, controls: Any = None, seed: int = 0) -> None:
        super().__init__(rng=int(seed))
        if controls is None:
            controls = scenario_values("baseline")
        values = dict(getattr(controls, "value", controls))
        self.values = values
        self.seed = int(seed)
        self.sim = None
        self.error: str | None = None
        self.theory = None
        self.theory_note: str | None = None
        self._layout: dict | None = None
        try:
            config = configure(values)
        except ParameterError as err:
            self.error = str(err)
            self.running = False
            self.datacollector = _empty_collector()
            return
        from sim.model import AlignmentParadoxModel

        self.sim = AlignmentParadoxModel(rng=self.seed, config=config)
        self.datacollector = self.sim.datacollector
        self._solve_theory(config)

    def step(self) -> None:
        if self.sim is None:
            self.running = False
            return
        self.sim.step()

    def _solve_theory(self, config: Config) -> None:
        from sim.market import MarketStructure, MarketTheory, coverage

        q = config.model.fixed_alignment
        if q is None:
            self.theory_note = (
                "market theory: needs alignment held fixed (tick 'hold alignment q fixed')"
            )
            return
        reasons = coverage(config)
        if reasons:
            self.theory_note = "market theory does not cover this setting: " + "; ".join(reasons)
            return
        structure = MarketStructure(
            open_weights=self.sim.lab.open_weights.copy(), budget=self.sim.lab.budget.copy()
        )
        try:
            self.theory = MarketTheory(config).solve(q, structure)
        except Exception as err:  # the page reports it instead of failing
            self.theory_note = f"market theory failed: {type(err).__name__}: {err}"

    def latest(self) -> dict[str, float]:
        """The last collected value of every outcome (empty without a model)."""
        return {} if self.sim is None else dict(self.sim.outcomes)

    def network_layout(self) -> tuple[Any, np.ndarray] | None:
        """(edges as an E x 2 array, node positions M x 2), computed once per model."""
        if self._layout is None:
            import networkx as nx

            graph = self.sim.network
            n = graph.number_of_nodes()
            pos = nx.spring_layout(graph, seed=self.seed, iterations=30)
            xy = np.array([pos[j] for j in range(n)]) if n else np.empty((0, 2))
            edges = np.array(list(graph.edges()), dtype=int).reshape(-1, 2)
            self._layout = {"edges": edges, "xy": xy}
        return self._layout["edges"], self._layout["xy"]


def _empty_collector() -> mesa.DataCollector:
    """A collector with every outcome's column and no rows (what the plots show without a
    model)."""
    from sim.outcomes import OUTCOMES

    return mesa.DataCollector(model_reporters={name: (lambda m: math.nan) for name in OUTCOMES})


# ---------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------


def _title(ax: Any, model: Explorer, text: str) -> None:
    ax.set_title(text if model.error is None else f"{text}\n(no model: invalid settings)",
                 fontsize=10)  # fmt: skip


def _overlay_alignment(model: Explorer, ax: Any) -> None:
    _title(ax, model, "Net alignment, compromised share, paradox index")
    if model.theory is not None:
        th = model.theory
        ax.axhline(th.net_alignment, color="tab:blue", ls="--", lw=1,
                   label=f"market theory N = {th.net_alignment:.3f}")  # fmt: skip
        ax.axhline(th.Phi, color="tab:red", ls=":", lw=1,
                   label=f"market theory Φ = {th.Phi:.3f}")  # fmt: skip
    ax.legend(loc="best", fontsize=8)


def _overlay_attacks(model: Explorer, ax: Any) -> None:
    _title(ax, model, "Attack attempts by channel (dotted: successes)")
    df = model.datacollector.get_model_vars_dataframe()
    for k in CHANNELS:
        if len(df):
            ax.plot(df[f"successes_{k}"].to_numpy(), ls=":", color=CHANNEL_COLOURS[k])
    ax.legend(loc="best", fontsize=8)


def TimeSeriesView(model: Explorer):
    from mesa.visualization.components.matplotlib_components import PlotMatplotlib

    measure = {"net_alignment": "tab:blue", "compromised_share": "tab:red",
               "paradox_index": "tab:purple"}  # fmt: skip
    return PlotMatplotlib(model, measure, post_process=functools.partial(_overlay_alignment, model))


def AttacksView(model: Explorer):
    from mesa.visualization.components.matplotlib_components import PlotMatplotlib

    measure = {f"attempts_{k}": CHANNEL_COLOURS[k] for k in CHANNELS}
    return PlotMatplotlib(model, measure, post_process=functools.partial(_overlay_attacks, model))


def _arms_figure(model: Explorer):
    """Defence against attack spending, one point per step (as the report's arms-race figure,
    left panel): circle at step 1, square at the current step."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    _title(ax, model, "Arms race: defence against attack spending per step")
    ax.set_xlabel("attack spending (adversaries' effort)")
    ax.set_ylabel("defence spending (labs)")
    df = model.datacollector.get_model_vars_dataframe()
    if len(df) < 2:
        return fig
    attack = df["spend_attack"].to_numpy()[1:]
    defence = df["spend_defence"].to_numpy()[1:]
    steps = np.arange(1, attack.size + 1)
    ax.plot(attack, defence, color="0.6", lw=0.8, zorder=1)
    points = ax.scatter(attack, defence, c=steps, cmap="viridis", s=14, zorder=2)
    ax.plot(attack[:1], defence[:1], "o", mfc="none", mec="k", ms=9, label="step 1")
    ax.plot(attack[-1:], defence[-1:], "s", mfc="none", mec="k", ms=9,
            label=f"step {steps[-1]}")  # fmt: skip
    fig.colorbar(points, ax=ax, label="step")
    ax.legend(loc="best", fontsize=8)
    return fig


def _labs_figure(model: Explorer):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    axes = fig.subplots(4, 1, sharex=True)
    if model.sim is None:
        axes[0].set_title("Labs (no model: invalid settings)", fontsize=10)
        return fig
    lab = model.sim.lab
    n = min(lab.reach.size, LABS_SHOWN)
    x = np.arange(1, n + 1)
    shown = "" if lab.reach.size <= LABS_SHOWN else f" (the {LABS_SHOWN} largest)"
    axes[0].set_title(f"Labs by reach rank{shown}, step {model.sim.steps}", fontsize=10)
    colours = np.where(lab.open_weights[:n], "tab:orange", "tab:blue")
    rows = (
        ("reach w", lab.reach[:n]),
        ("alignment q", lab.quality[:n]),
        ("defence ΣD", lab.defence[:n].sum(axis=1)),
        ("compromised φ", lab.compromised[:n].sum(axis=1)),
    )
    for ax, (name, values) in zip(axes, rows, strict=True):
        ax.bar(x, values, color=colours)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
    if model.theory is not None:
        axes[3].plot(x, model.theory.phi[:n], "k_", ms=10, mew=2, label="market theory φ")
        axes[3].legend(loc="upper right", fontsize=7)
    axes[1].set_ylim(0, 1)
    axes[3].set_xlabel("lab (1 = largest reach; orange: open weights)", fontsize=8)
    return fig


def _network_figure(model: Explorer, colour_by: str):
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.subplots()
    ax.set_axis_off()
    if model.sim is None:
        ax.set_title("Adversary network (no model: invalid settings)", fontsize=10)
        return fig
    m = model.sim.config.model
    if m.network.topology == "none":
        ax.set_title("Adversary network: none (model.network.topology = none)", fontsize=10)
        return fig
    if m.n_adversaries > NETWORK_MAX_NODES:
        ax.set_title(f"Adversary network: drawn up to {NETWORK_MAX_NODES} adversaries\n"
                     f"(now {m.n_adversaries}; lower 'adversaries M' and press Reset)",
                     fontsize=10)  # fmt: skip
        return fig
    edges, xy = model.network_layout()
    adv = model.sim.adv
    if colour_by == "deterrence":
        remaining = np.maximum(adv.deterred_until - model.sim.steps, 0)
        values, cmap, label = remaining, "Reds", "steps still deterred"
        vmax = max(1, model.sim.config.policy.deterrence_steps)
    else:
        values, cmap, label = adv.knowledge.mean(axis=1), "viridis", "mean knowledge K"
        vmax = max(float(values.max()), 1e-9)
    if len(edges):
        ax.add_collection(LineCollection(xy[edges], colors="0.8", linewidths=0.3, zorder=1))
    vmin = float(values.min()) if colour_by == "knowledge" else 0.0
    points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=cmap, vmin=min(vmin, vmax), vmax=vmax,
                        s=max(4.0, 3000.0 / max(len(xy), 1)), zorder=2)  # fmt: skip
    fig.colorbar(points, ax=ax, shrink=0.7, label=label)
    ax.set_title(f"Adversary network ({m.network.topology}), step {model.sim.steps}",
                 fontsize=10)  # fmt: skip
    ax.set_aspect("equal")
    ax.autoscale_view()
    return fig


def _components():
    """The page's views: Mesa components taking the model (the page renders them in a grid)."""
    import solara
    from mesa.visualization.utils import update_counter

    @solara.component
    def LabsView(model: Explorer):
        update_counter.get()
        solara.FigureMatplotlib(_labs_figure(model), format="png", bbox_inches="tight")

    @solara.component
    def ArmsRaceView(model: Explorer):
        update_counter.get()
        solara.FigureMatplotlib(_arms_figure(model), format="png", bbox_inches="tight")

    @solara.component
    def NetworkView(model: Explorer):
        update_counter.get()
        colour_by, set_colour_by = solara.use_state("knowledge")
        solara.ToggleButtonsSingle(value=colour_by, values=["knowledge", "deterrence"],
                                   on_value=set_colour_by)  # fmt: skip
        solara.FigureMatplotlib(_network_figure(model, colour_by), format="png",
                                bbox_inches="tight")  # fmt: skip

    return [TimeSeriesView, AttacksView, LabsView, ArmsRaceView, NetworkView]


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def user_params(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The controls as Mesa ``UserInputs`` options, at ``values`` (labels show the value;
    slider ranges widen to include a scenario's value)."""
    names = list(scenarios())
    params: dict[str, dict[str, Any]] = {
        "scenario": {"type": "Select", "label": "scenario (loads its values)",
                     "value": values["scenario"], "values": names},
        "q_fixed": {"type": "Checkbox", "label": Q_FIXED_LABEL, "value": values["q_fixed"]},
        "q": {"type": "SliderFloat", "label": f"{Q_LABEL} = {values['q']:.2f}",
              "value": values["q"], "min": 0.0, "max": 0.99, "step": 0.01},
    }  # fmt: skip
    for c in CONTROLS:
        v = values[c.name]
        if c.kind == "select":
            params[c.name] = {"type": "Select", "label": c.label, "value": v,
                              "values": list(c.choices)}  # fmt: skip
            continue
        lo, hi = min(c.lo, v), max(c.hi, v)
        params[c.name] = {
            "type": "SliderInt" if c.kind == "int" else "SliderFloat",
            "label": f"{c.label} = {_fmt(v)}",
            "value": v,
            "min": int(lo) if c.kind == "int" else float(lo),
            "max": int(hi) if c.kind == "int" else float(hi),
            "step": c.step,
        }
    return params


def make_page():
    """The Solara page (``Page``) for ``solara run experiments.app``."""
    import solara
    from mesa.visualization import Slider, SolaraViz
    from mesa.visualization.solara_viz import UserInputs
    from mesa.visualization.utils import update_counter

    views = _components()

    @solara.component
    def ParameterPanel(controls: Any, model: Explorer):
        def on_change(name: str, value: Any) -> None:
            if name == "scenario":
                controls.set(scenario_values(value))
            else:
                controls.set({**controls.value, name: value})

        with solara.Card("Scenario and parameters"):
            # one element whatever the state: inserting one would re-create (and unfocus) the
            # sliders below it
            if controls.value != model.values:
                solara.Text("Settings changed: press Reset to apply them.",
                            style={"color": "#b71c1c", "font-weight": "bold"})  # fmt: skip
            else:
                solara.Text("Changes take effect on Reset.")
            UserInputs(user_params(controls.value), on_change=on_change)

    @solara.component
    def Readout(model: Explorer):
        update_counter.get()
        with solara.Card("Now"), solara.Column(gap="6px"):
            v = model.values
            q = f"q fixed at {v['q']:.2f}" if v["q_fixed"] else "q endogenous"
            solara.Text(f"scenario {v['scenario']}, seed {model.seed}, κ = {_fmt(v['coupling'])}, "
                        f"{q}, N = {v['n_labs']}, M = {v['n_adversaries']}")  # fmt: skip
            if model.error is not None:
                solara.Error(f"Invalid settings: {model.error}")
                return
            out = model.latest()
            # plain text: solara.Markdown would load KaTeX, which solara-assets does not ship
            solara.Text(
                f"step {model.sim.steps}: net alignment {out['net_alignment']:.4f}, "
                f"compromised share {out['compromised_share']:.4f}, "
                f"paradox index {out['paradox_index']:.3f}",
                style={"font-weight": "bold"},
            )
            if model.theory is not None:
                th = model.theory
                solara.Text(f"market theory (stationary): N = {th.net_alignment:.4f}, "
                            f"Φ = {th.Phi:.4f}"
                            + ("" if th.converged else " (did not converge)"))  # fmt: skip
            elif model.theory_note:
                solara.Text(model.theory_note)

    @solara.component
    def SidebarPanels(controls: Any, model: Explorer, depth: int):
        # Solara orders sidebar content by the depth of the component that adds it; nested
        # below SolaraViz's own, these panels come after Mesa's Reset/Play/Step controls.
        if depth > 0:
            SidebarPanels(controls, model, depth - 1)
            return
        with solara.Sidebar():
            Readout(model)
            ParameterPanel(controls, model)

    @solara.component
    def Page():
        controls = solara.use_reactive(solara.use_memo(lambda: scenario_values("baseline"), []))
        first = solara.use_memo(lambda: Explorer(controls=controls, seed=0), [])
        model = solara.use_reactive(first)
        SidebarPanels(controls, model.value, 3)
        SolaraViz(
            model,
            components=views,
            model_params={"controls": controls, "seed": Slider("seed", 0, 0, 99, 1)},
            name="Alignment paradox: live model",
        )

    return Page


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server: no telemetry (Solara reports to mixpanel by default)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "False")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "solara", "run", "experiments.app:Page", "--host", host,
            "--port", str(port), "--production", "--no-open"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox app",
        description="Serve the live model (Mesa SolaraViz) on this machine and print its URL.",
        epilog="Stop with Ctrl-C. Works offline: the page's assets come from the environment.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: a free one)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import solara  # noqa: F401
        from mesa.visualization import SolaraViz  # noqa: F401
    except ImportError as err:
        print(f"paradox app: the viz extra is not installed ({err}); run `make app` or "
              "pip install -e '.[viz]'", file=sys.stderr)  # fmt: skip
        return 2
    port = args.port or free_port(args.host)
    print(f"paradox app: http://{args.host}:{port}/ (Ctrl-C stops it)", flush=True)
    # The server replaces this process (same PID: a signal to it stops the server).
    os.chdir(REPO)
    command = server_command(args.host, port)
    os.execve(command[0], command, server_env())
    return 0  # not reached


def __getattr__(name: str) -> Any:
    # ``solara run experiments.app:Page`` looks the page up here; building it imports Solara,
    # which the rest of the project does not need.
    if name == "Page":
        page = make_page()
        globals()["Page"] = page
        return page
    raise AttributeError(f"module 'experiments.app' has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
