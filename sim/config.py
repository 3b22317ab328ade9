"""The configuration schema: every parameter, its default, its allowed range and its meaning.

These plain dataclasses are the single source of truth for parameters. Hydra registers them as
structured-config schemas (see ``experiments/``), the Mesa model builds them from its keyword
arguments, and ``docs/ODD.md``'s parameter table is checked against them by the tests. This module
does not import Hydra.

Validation is explicit: :func:`validate` walks a :class:`Config` (or one of its parts), checks
every field against the range in its metadata, then checks the rules that span fields. It raises
:class:`ParameterError`, whose message names the offending key and what is allowed. ``Config``
calls it from ``__post_init__``, so ``OmegaConf.to_object`` on a composed config runs it before
any simulation starts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sim.strategies import ADVERSARY_STRATEGIES, LAB_STRATEGIES

CHANNELS: tuple[str, ...] = ("weights", "prompt", "output")
#: The learning rules, one strategy class each (sim/strategies.py); the first is the default.
ADVERSARY_RULES: tuple[str, ...] = tuple(ADVERSARY_STRATEGIES)
LAB_RULES: tuple[str, ...] = tuple(LAB_STRATEGIES)
TOPOLOGIES: tuple[str, ...] = ("watts_strogatz", "barabasi_albert", "erdos_renyi", "none")
#: Which labs publish open weights; the last two are the strata of ``random`` by the largest
#: lab's access that blocked sweep replicates use (sim.rules.open_weights).
OPEN_SELECTIONS: tuple[str, ...] = (
    "random",
    "largest",
    "smallest",
    "random_top_open",
    "random_top_closed",
)
PRIZE_CONGESTION: tuple[str, ...] = ("none", "linear")
#: How a best-responding lab moves its defence split (sim.rules.lab_policy_step).
SPLIT_STEPS: tuple[str, ...] = ("per_channel", "simplex")


class ParameterError(ValueError):
    """A parameter value outside its allowed range, or an inconsistent combination."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid value for '{key}': {value!r}; allowed: {allowed}")


def param(
    default: Any,
    *,
    symbol: str = "",
    doc: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: Collection[str] | None = None,
    nullable: bool = False,
) -> Any:
    """A dataclass field carrying its symbol, documentation and allowed range."""
    meta = {
        "symbol": symbol,
        "doc": doc,
        "lo": lo,
        "hi": hi,
        "lo_open": lo_open,
        "hi_open": hi_open,
        "choices": choices,
        "nullable": nullable,
    }
    return field(default=default, metadata=meta)


def allowed_text(meta: dataclasses.Field | dict) -> str:
    """Human-readable allowed range of a field, as used in error messages and the ODD table."""
    m = meta.metadata if isinstance(meta, dataclasses.Field) else meta
    if m.get("choices"):
        text = "one of " + ", ".join(m["choices"])
    else:
        lo, hi = m.get("lo"), m.get("hi")
        left = "(" if m.get("lo_open") else "["
        right = ")" if m.get("hi_open") else "]"
        lo_s = "-inf" if lo is None else _num(lo)
        hi_s = "inf" if hi is None else _num(hi)
        if hi is None:
            right = ")"
        if lo is None:
            left = "("
        text = f"{left}{lo_s}, {hi_s}{right}"
    if m.get("nullable"):
        text += " or null"
    return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# --------------------------------------------------------------------------------------------
# Model: populations, alignment, clarity, channels, contest, harm, knowledge, network
# --------------------------------------------------------------------------------------------


@dataclass
class ChannelConfig:
    """One attack channel k (docs/ODD.md §2): a_ijk = K_jk (alpha_k + theta_k c_i^eps_k)."""

    base_vulnerability: float = param(
        0.3, symbol="α_k", lo=0.0, hi=100.0, doc="attack effectiveness that needs no clarity"
    )
    clarity_gain: float = param(
        1.0, symbol="θ_k", lo=0.0, hi=100.0, doc="extra effectiveness at full clarity"
    )
    clarity_elasticity: float = param(
        1.0,
        symbol="ε_k",
        lo=0.0,
        hi=10.0,
        lo_open=True,
        doc="elasticity of the clarity term (d log(θ c^ε) / d log c)",
    )
    severity: float = param(
        1.0, symbol="h_k", lo=0.0, hi=100.0, doc="exploitation harm per unit of compromised use"
    )
    initial_knowledge: float = param(
        0.2,
        symbol="K0_k",
        lo=0.0,
        hi=1.0,
        doc="mean initial technique knowledge of adversaries (Beta-distributed)",
    )


def _weights_channel() -> ChannelConfig:
    # Model tinkering: harmful fine-tuning of open weights works without clarity (high α), and a
    # clean value direction makes steering very strong (large θ, most elastic: Arditi et al. 2024).
    return ChannelConfig(
        base_vulnerability=0.4,
        clarity_gain=3.0,
        clarity_elasticity=2.0,
        severity=1.0,
        initial_knowledge=0.15,
    )


def _prompt_channel() -> ChannelConfig:
    # Input tinkering: generic jailbreaks exist; persona inversion gains least from clarity.
    return ChannelConfig(
        base_vulnerability=0.3,
        clarity_gain=1.0,
        clarity_elasticity=0.5,
        severity=0.4,
        initial_knowledge=0.4,
    )


def _output_channel() -> ChannelConfig:
    # Output tinkering: a reversed value editor needs (misaligned, aligned) pairs, which a sharper
    # dichotomy makes cleaner; little works without it.
    return ChannelConfig(
        base_vulnerability=0.1,
        clarity_gain=1.5,
        clarity_elasticity=1.0,
        severity=0.6,
        initial_knowledge=0.2,
    )


@dataclass
class ChannelsConfig:
    """The three channels of West & Aydin (2024): model, input and output tinkering."""

    weights: ChannelConfig = field(default_factory=_weights_channel)
    prompt: ChannelConfig = field(default_factory=_prompt_channel)
    output: ChannelConfig = field(default_factory=_output_channel)


@dataclass
class NetworkConfig:
    """The adversary network G over which techniques diffuse and strategies are imitated."""

    topology: str = param(
        "watts_strogatz", choices=TOPOLOGIES, doc="graph family (networkx generator)"
    )
    mean_degree: int = param(
        6, symbol="k", lo=1, hi=1000, doc="mean number of neighbours (even for Watts–Strogatz)"
    )
    rewiring: float = param(
        0.1, symbol="p_rw", lo=0.0, hi=1.0, doc="Watts–Strogatz rewiring probability"
    )


@dataclass
class ModelConfig:
    """Populations and the mechanisms of docs/ODD.md §2–3."""

    n_labs: int = param(20, symbol="N", lo=1, hi=100_000, doc="number of labs (aligners)")
    n_adversaries: int = param(1000, symbol="M", lo=1, hi=100_000_000, doc="number of adversaries")
    coupling: float = param(
        0.8,
        symbol="κ",
        lo=0.0,
        hi=1.0,
        doc="paradox coupling: share of alignment that becomes exploitable clarity",
    )
    clarity_exponent: float = param(
        1.5, symbol="γ", lo=0.0, hi=20.0, lo_open=True, doc="shape of clarity c = κ q^γ"
    )
    alignment_scale: float = param(
        5.0,
        symbol="A0",
        lo=0.0,
        hi=1e6,
        lo_open=True,
        doc="alignment capital giving q = 1 − 1/e",
    )
    alignment_decay: float = param(
        0.05, symbol="δ_A", lo=0.0, hi=1.0, doc="per-step depreciation of alignment capital"
    )
    defence_decay: float = param(
        0.2, symbol="δ_D", lo=0.0, hi=1.0, doc="per-step depreciation of defence capital"
    )
    initial_alignment: float = param(
        5.0, symbol="A_i(0)", lo=0.0, hi=1e6, doc="initial alignment capital of every lab"
    )
    initial_defence: float = param(
        0.5, symbol="D_ik(0)", lo=0.0, hi=1e6, doc="initial defence capital per lab and channel"
    )
    fixed_alignment: float | None = param(
        None,
        symbol="q̄_fix",
        lo=0.0,
        hi=1.0,
        hi_open=True,
        nullable=True,
        doc="if set, every lab's q is held at this value; alignment spending is then retained",
    )
    lab_budget_mean: float = param(
        1.0, symbol="b̄", lo=0.0, hi=1e6, lo_open=True, doc="mean lab budget per step"
    )
    lab_budget_dispersion: float = param(
        0.5, symbol="σ_b", lo=0.0, hi=3.0, doc="log-sd of lab budgets (mean-preserving lognormal)"
    )
    reach_exponent: float = param(
        1.0, symbol="ζ", lo=0.0, hi=5.0, doc="Zipf exponent of reach: w_i ∝ rank^−ζ"
    )
    adversary_budget_mean: float = param(
        0.2, symbol="ē", lo=0.0, hi=1e6, lo_open=True, doc="mean adversary budget per step"
    )
    adversary_budget_dispersion: float = param(
        1.0, symbol="σ_e", lo=0.0, hi=3.0, doc="log-sd of adversary budgets"
    )
    attacker_value: float = param(
        40.0,
        symbol="v_a",
        lo=0.0,
        hi=1e9,
        doc="attacker's prize scale: V_a(i) = v_a w_i q_i (1 + c_i)",
    )
    defender_value: float = param(
        20.0,
        symbol="v_d",
        lo=0.0,
        hi=1e9,
        lo_open=True,
        doc="lab's stake scale: V_d(i) = v_d w_i q_i (1 + c_i)",
    )
    prize_congestion: str = param(
        "none",
        choices=PRIZE_CONGESTION,
        doc="attacker's prize for lab i: none = V_a(i) whatever is already compromised; "
        "linear = V_a(i) (1 − φ_i), φ_i its compromised share before the step's contests",
    )
    decisiveness: float = param(
        1.0, symbol="μ", lo=0.0, hi=10.0, lo_open=True, doc="Tullock contest decisiveness"
    )
    defence_floor: float = param(
        0.1, symbol="d0", lo=0.0, hi=1e6, doc="defence an attacker faces at zero defence capital"
    )
    compromise_share: float = param(
        0.01,
        symbol="σ",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        doc="share of a lab's use compromised by one successful attack",
    )
    compromise_persistence: float = param(
        0.5,
        symbol="ρ",
        lo=0.0,
        hi=1.0,
        hi_open=True,
        doc="share of compromised use still compromised one step later",
    )
    residual_severity: float = param(
        0.5, symbol="h0", lo=0.0, hi=100.0, doc="residual harm per unit of unaligned use"
    )
    knowledge_gain: float = param(
        0.2, symbol="η_K", lo=0.0, hi=1.0, doc="a success moves K_jk this share of the way to 1"
    )
    knowledge_decay: float = param(
        0.02,
        symbol="δ_K",
        lo=0.0,
        hi=1.0,
        doc="per-step loss of technique knowledge (techniques get patched)",
    )
    diffusion_rate: float = param(
        0.05,
        symbol="η_diff",
        lo=0.0,
        hi=1.0,
        doc="rate of moving toward better-informed neighbours",
    )
    knowledge_concentration: float = param(
        10.0,
        symbol="ν_K",
        lo=0.0,
        hi=1e6,
        lo_open=True,
        doc="Beta concentration of initial knowledge (higher: less spread)",
    )
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)


# --------------------------------------------------------------------------------------------
# Policy levers (docs/ODD.md §7.6): each has an explicit "off" value, given in its doc
# --------------------------------------------------------------------------------------------


@dataclass
class PolicyConfig:
    """Policy levers. The value that switches each lever off is named in its documentation."""

    open_weights_share: float = param(
        0.3, symbol="s_open", lo=0.0, hi=1.0, doc="share of labs releasing open weights (off: 0)"
    )
    open_weights_selection: str = param(
        "random",
        choices=OPEN_SELECTIONS,
        doc="which labs release open weights: at random, the largest or the smallest by reach, "
        "or at random with the largest lab open (random_top_open) or closed (random_top_closed)",
    )
    leak_probability: float = param(
        0.001,
        symbol="ℓ_leak",
        lo=0.0,
        hi=1.0,
        doc="per-step probability that closed weights leak (off: 0)",
    )
    api_access_share: float = param(
        1.0,
        symbol="s_api",
        lo=0.0,
        hi=1.0,
        doc="share of adversaries with query access to closed models (no access control: 1)",
    )
    publication_rate: float = param(
        0.2, symbol="π", lo=0.0, hi=1.0, doc="share of alignment know-how published (off: 0)"
    )
    defence_mandate: float = param(
        0.0, symbol="m", lo=0.0, hi=1.0, doc="minimum share of budget spent on defence (off: 0)"
    )
    decoupling_share: float = param(
        0.0,
        symbol="s_dec",
        lo=0.0,
        hi=1.0,
        hi_open=True,
        doc="share of lab budgets funding decoupling R&D (off: 0)",
    )
    decoupling_efficiency: float = param(
        0.1,
        symbol="η_κ",
        lo=0.0,
        hi=100.0,
        doc="κ ← κ exp(−η_κ × mean decoupling spend per lab) each step",
    )
    detection_probability: float = param(
        0.02, symbol="ψ", lo=0.0, hi=1.0, doc="probability an attempt is detected (off: 0)"
    )
    deterrence_steps: int = param(
        10, symbol="T", lo=0, hi=1_000_000, doc="steps a detected adversary stays deterred"
    )
    liability: float = param(
        0.0,
        symbol="λ_L",
        lo=0.0,
        hi=1000.0,
        doc="weight of exploitation harm in the lab's own objective (off: 0)",
    )


# --------------------------------------------------------------------------------------------
# Learning rules (docs/ODD.md §7.3)
# --------------------------------------------------------------------------------------------


@dataclass
class AdversaryLearningConfig:
    """How adversaries choose targets and adapt effort and strategies."""

    # the live registry: a strategy registered later (sim.strategies) is accepted too
    rule: str = param("roth_erev", choices=ADVERSARY_STRATEGIES, doc="adversary learning rule")
    rationality: float = param(
        2.0, symbol="λ", lo=0.0, hi=1e6, doc="logit (quantal) rationality of target choice"
    )
    effort_share: float = param(
        0.5,
        symbol="x_j(0)/e_j",
        lo=0.0,
        hi=1.0,
        doc="initial effort as a share of budget (constant under the fixed rule)",
    )
    effort_adjustment: float = param(
        0.3,
        symbol="η_x",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        doc="share of the way effort moves to the myopic best response each step",
    )
    forgetting: float = param(
        0.1, symbol="φ_RE", lo=0.0, hi=1.0, doc="Roth–Erev forgetting of channel propensities"
    )
    experimentation: float = param(
        0.1,
        symbol="ε_RE",
        lo=0.0,
        hi=1.0,
        hi_open=True,
        doc="Roth–Erev share of reinforcement spilling to other channels",
    )
    imitation_intensity: float = param(
        5.0, symbol="β_a", lo=0.0, hi=1e6, doc="Fermi-rule selection intensity (1/payoff)"
    )
    payoff_memory: float = param(
        0.3,
        symbol="m_π",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        doc="weight of the newest payoff in the smoothed payoff that imitation compares",
    )
    mutation: float = param(
        0.02, symbol="ς_a", lo=0.0, hi=1.0, doc="sd of noise added to an imitated effort share"
    )


@dataclass
class DefenceSplitConfig:
    """Shares of defence spending across channels (they must sum to 1)."""

    weights: float = param(1 / 3, symbol="ω_w", lo=0.0, hi=1.0, doc="defence share on weights")
    prompt: float = param(1 / 3, symbol="ω_p", lo=0.0, hi=1.0, doc="defence share on prompts")
    output: float = param(1 / 3, symbol="ω_o", lo=0.0, hi=1.0, doc="defence share on outputs")


@dataclass
class LabLearningConfig:
    """How labs set their alignment share s_i and defence split ω_i."""

    rule: str = param("best_response", choices=LAB_STRATEGIES, doc="lab learning rule")
    alignment_share: float = param(
        0.5,
        symbol="s_i(0)",
        lo=0.0,
        hi=1.0,
        doc="initial share of budget on alignment (constant under the fixed rule)",
    )
    defence_split: DefenceSplitConfig = field(default_factory=DefenceSplitConfig)
    step_size: float = param(
        0.3,
        symbol="η_s",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        doc="share of the way (s, ω) moves to the lab's best response each step",
    )
    memory: float = param(
        0.5,
        symbol="m_obs",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        doc="weight of the newest observation in smoothed attack rates and payoffs",
    )
    foresight: float = param(
        0.0,
        symbol="β",
        lo=0.0,
        hi=1.0,
        hi_open=True,
        doc="discount factor of a best-responding lab: its compromise loss is weighted by "
        "F = 1 / ((1 − β (1 − δ_D)) (1 − β ρ)); 0 = myopic",
    )
    split_step: str = param(
        "simplex",
        choices=SPLIT_STEPS,
        doc="how a best-responding lab moves its defence split: per_channel (a Newton step per "
        "channel, each capped, then projected onto the simplex) or simplex (the Newton step "
        "constrained to the simplex, shrunk as a whole to the cap)",
    )
    imitation_intensity: float = param(
        20.0, symbol="β_l", lo=0.0, hi=1e6, doc="Fermi-rule selection intensity for labs"
    )
    mutation: float = param(
        0.02, symbol="ς_l", lo=0.0, hi=1.0, doc="sd of noise added to an imitated alignment share"
    )


@dataclass
class LearningConfig:
    adversary: AdversaryLearningConfig = field(default_factory=AdversaryLearningConfig)
    lab: LabLearningConfig = field(default_factory=LabLearningConfig)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    """One run: its seed, length, scenario name and every parameter group."""

    seed: int = param(0, lo=0, hi=2**63 - 1, doc="seed of the run's numpy Generator")
    steps: int = param(200, lo=0, hi=10_000_000, doc="number of steps to simulate")
    burn_in: int | str = param(
        "auto",
        doc="steps left out of time averages: auto (MSER-5 on net_alignment, per run) or an "
        "integer in [0, steps) (docs/ODD.md §4.1)",
    )
    scenario: str = param("baseline", doc="name of the scenario the run composes")
    collect_agents: bool = param(False, doc="also record per-agent state (labs.parquet)")
    model: ModelConfig = field(default_factory=ModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)

    def __post_init__(self) -> None:
        validate(self)


def check_run_settings(steps: Any, seed: Any) -> tuple[Any, Any]:
    """``steps`` and ``seed`` of a run given apart from its :class:`Config` (the Python API),
    checked like the config keys of those names; integral floats become ints."""
    fields = _leaf_fields()
    steps, seed = integral(steps, fields["steps"]), integral(seed, fields["seed"])
    _check_leaf("steps", fields["steps"], steps)
    if not hasattr(seed, "bit_generator"):  # a numpy Generator is used as given
        _check_leaf("seed", fields["seed"], seed)
    return steps, seed


def _check_run(cfg: Config) -> None:
    """The run settings that a range in the metadata cannot express: ``burn_in``."""
    b, steps = cfg.burn_in, cfg.steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        steps = 0  # the leaf check reports a bad steps; here only burn_in's own rule applies
    upper = f"[0, steps) = [0, {steps})" if steps > 0 else "[0, inf) when steps = 0"
    allowed = f"auto (MSER-5 on net_alignment) or an integer number of steps in {upper}"
    if isinstance(b, str):
        if b != "auto":
            raise ParameterError("burn_in", b, allowed)
        return
    if isinstance(b, bool) or not isinstance(b, numbers.Integral):
        raise ParameterError("burn_in", b, allowed)
    if b < 0 or (steps > 0 and b >= steps):
        raise ParameterError("burn_in", b, allowed)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def iter_fields(obj: Any, prefix: str = ""):
    """Yield (dotted key, field, value) for every leaf field of a config dataclass."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, key + ".")
        else:
            yield key, f, value


def _check_leaf(key: str, f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    if value is None:
        if m.get("nullable"):
            return
        raise ParameterError(key, value, allowed_text(f) if m else "a value")
    if not m:
        return
    if m.get("choices"):
        if value not in m["choices"]:
            raise ParameterError(key, value, allowed_text(f))
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if m.get("lo") is None and m.get("hi") is None:
            return
        raise ParameterError(key, value, "a number in " + allowed_text(f))
    if f.type in ("int", "int | None") and not isinstance(value, numbers.Integral):
        raise ParameterError(key, value, "an integer in " + allowed_text(f))
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(key, value, "a finite number in " + allowed_text(f))
    lo, hi = m.get("lo"), m.get("hi")
    bad_lo = lo is not None and (value <= lo if m.get("lo_open") else value < lo)
    bad_hi = hi is not None and (value >= hi if m.get("hi_open") else value > hi)
    if bad_lo or bad_hi:
        return _raise_range(key, value, f)
    return None


def _raise_range(key: str, value: Any, f: dataclasses.Field) -> None:
    kind = "an integer" if f.type in ("int", int) else "a number"
    raise ParameterError(key, value, f"{kind} in {allowed_text(f)}")


def validate(cfg: Any, prefix: str | None = None) -> None:
    """Check every field of a config dataclass and the rules that span fields.

    ``prefix`` is the dotted path of ``cfg`` inside a full :class:`Config`; it is inferred for the
    known group types so that error messages always name the full key (``model.n_labs``).
    """
    if prefix is None:
        prefix = _GROUP_PREFIX.get(type(cfg), "")
    if isinstance(cfg, Config):
        _check_run(cfg)  # first: burn_in's rule is not a range the leaf check could name
    for key, f, value in iter_fields(cfg, prefix):
        _check_leaf(key, f, value)
    model = cfg.model if isinstance(cfg, Config) else cfg if isinstance(cfg, ModelConfig) else None
    lab = (
        cfg.learning.lab
        if isinstance(cfg, Config)
        else cfg
        if isinstance(cfg, LabLearningConfig)
        else None
    )
    if model is not None:
        _check_model(model, "model." if isinstance(cfg, Config) else prefix)
    if lab is not None:
        _check_lab(lab, "learning.lab." if isinstance(cfg, Config) else prefix)
    if isinstance(cfg, Config):
        _check_combined(cfg)


def _check_model(m: ModelConfig, p: str) -> None:
    net = m.network
    if net.topology == "none":
        return
    if net.topology == "watts_strogatz" and net.mean_degree % 2:
        raise ParameterError(
            f"{p}network.mean_degree", net.mean_degree, "an even integer for watts_strogatz"
        )
    if net.mean_degree >= m.n_adversaries:
        raise ParameterError(
            f"{p}network.mean_degree",
            net.mean_degree,
            f"an integer below model.n_adversaries ({m.n_adversaries}), or network.topology=none",
        )


def _check_lab(lab: LabLearningConfig, p: str) -> None:
    total = lab.defence_split.weights + lab.defence_split.prompt + lab.defence_split.output
    if abs(total - 1.0) > 1e-6:
        raise ParameterError(
            f"{p}defence_split", f"sums to {total:.6g}", "three shares summing to 1"
        )


def _check_combined(cfg: Config) -> None:
    selection, share = cfg.policy.open_weights_selection, cfg.policy.open_weights_share
    if selection in ("random_top_open", "random_top_closed"):
        n_open = round(share * cfg.model.n_labs)
        if not 0 < n_open < cfg.model.n_labs:
            raise ParameterError(
                "policy.open_weights_selection",
                selection,
                f"random, largest or smallest when round(policy.open_weights_share x "
                f"model.n_labs) = {n_open} labs are open (the strata need some open and some "
                "closed)",
            )
    if cfg.learning.adversary.rule == "imitation" and cfg.model.network.topology == "none":
        raise ParameterError(
            "model.network.topology",
            "none",
            "a network (imitation needs neighbours to imitate)",
        )
    if cfg.policy.defence_mandate > 1.0 - cfg.learning.lab.alignment_share + 1e-12:
        # Not an error in the dynamics (labs are clipped to the mandate), but a fixed-rule run
        # would silently not use the alignment share it was given.
        if cfg.learning.lab.rule == "fixed":
            raise ParameterError(
                "learning.lab.alignment_share",
                cfg.learning.lab.alignment_share,
                f"at most 1 − policy.defence_mandate = {1 - cfg.policy.defence_mandate:.6g} "
                "under the fixed lab rule",
            )


_GROUP_PREFIX: dict[type, str] = {
    ModelConfig: "model.",
    PolicyConfig: "policy.",
    LearningConfig: "learning.",
    AdversaryLearningConfig: "learning.adversary.",
    LabLearningConfig: "learning.lab.",
}


# --------------------------------------------------------------------------------------------
# Flat keyword parameters for the Mesa model and the plain-function interface
# --------------------------------------------------------------------------------------------


def _flat_name(path: tuple[str, ...]) -> str:
    """Keyword name of a config leaf: ``model.coupling`` → ``coupling``,
    ``model.channels.weights.severity`` → ``weights_severity``,
    ``learning.adversary.rule`` → ``adversary_rule``,
    ``learning.lab.defence_split.prompt`` → ``lab_defence_split_prompt``."""
    group, *rest = path
    if group == "model" and rest[0] == "channels":
        rest = rest[1:]
    return "_".join(rest)


def flat_keys() -> dict[str, str]:
    """Map every model keyword to its dotted config key (run-level keys excluded)."""
    out: dict[str, str] = {}
    for key, _, _ in iter_fields(Config(), ""):
        path = tuple(key.split("."))
        if len(path) == 1:
            continue
        out[_flat_name(path)] = key
    return out


FLAT_KEYS: dict[str, str] = {}


def config_from_flat(**params: Any) -> Config:
    """Build (and validate) a Config from flat keyword parameters, e.g. ``coupling=0.5``.

    ``scenario=<name>`` starts from that scenario of ``conf/scenario/`` (or a scenario YAML
    file's path), composed as ``paradox run scenario=<name>`` composes it; the other parameters
    then override it. Integral floats (``n_labs=12.0``, as EMA Workbench and SALib sample) are
    accepted for integer keys. Unknown names raise ``TypeError`` naming the closest known ones.
    """
    if not FLAT_KEYS:
        FLAT_KEYS.update(flat_keys())
    if params.get("scenario") is not None:
        from sim.scenarios import scenario_config

        cfg = scenario_config(str(params["scenario"]))  # raises ParameterError if unknown
    else:
        cfg = Config.__new__(Config)  # skip validation until every value is in place
        base = Config()
        for f in dataclasses.fields(Config):
            setattr(cfg, f.name, getattr(base, f.name))
    fields = _leaf_fields()
    for name, value in params.items():
        if name == "scenario":
            continue
        if name in ("seed", "steps", "burn_in", "collect_agents"):
            setattr(cfg, name, integral(value, fields[name]))
            continue
        if name not in FLAT_KEYS:
            import difflib

            close = difflib.get_close_matches(name, FLAT_KEYS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TypeError(f"unknown model parameter '{name}'{hint}")
        *parents, leaf = FLAT_KEYS[name].split(".")
        node: Any = cfg
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, integral(value, fields[FLAT_KEYS[name]]))
    validate(cfg)
    return cfg


_LEAF_FIELDS: dict[str, dataclasses.Field] = {}


def _leaf_fields() -> dict[str, dataclasses.Field]:
    if not _LEAF_FIELDS:
        _LEAF_FIELDS.update({key: f for key, f, _ in iter_fields(Config())})
    return _LEAF_FIELDS


def integral(value: Any, f: dataclasses.Field) -> Any:
    """``value`` in its field's numeric type: a Python int if ``f`` is an integer field and
    ``value`` an integral float (``12.0``, ``numpy.float64(12.0)``), a float if ``f`` is a float
    field and ``value`` an integer (``model.initial_defence=0``, so that arrays built from it are
    float arrays, as Hydra's typed config gives them); otherwise unchanged (so the range check
    still refuses ``12.5``, and bools and strings keep their type)."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if "float" in str(f.type) and whole:
        return float(value)
    if "int" not in str(f.type) or isinstance(value, (bool, numbers.Integral)):
        return value
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return value


def to_flat(cfg: Config) -> dict[str, Any]:
    """Inverse of :func:`config_from_flat` for the model parameters (every leaf, flat names)."""
    return {_flat_name(tuple(k.split("."))): v for k, _, v in iter_fields(cfg) if "." in k}


#: Source or rationale of each default, for the ODD parameter table. Keys without an entry are
#: illustrative choices of this model (see docs/ODD.md, "Calibration status").
SOURCES: dict[str, str] = {
    "model.coupling": "free parameter of the paradox (docs/ODD.md §2); 0 is the control",
    "model.clarity_exponent": "convex default: clarity appears late in alignment (illustrative)",
    "model.alignment_scale": "sets the capital scale; q(A0) = 0.63",
    "model.alignment_decay": "alignment goes stale as capabilities move on (docs/ODD.md §3)",
    "model.reach_exponent": (
        "heavy-tailed deployment shares (docs/ODD.md §2); Zipf's law as default"
    ),
    "model.lab_budget_dispersion": "heterogeneous budgets, lognormal around 1 (docs/ODD.md §2)",
    "model.prize_congestion": (
        "none keeps published results reproducible; linear stops the prize of a largely "
        "compromised lab from drawing every attack (docs/ODD.md §7.1)"
    ),
    "model.decisiveness": "Tullock (1980) ratio form; μ = 1 is the classic lottery contest",
    "model.defence_floor": "keeps p < 1 against an undefended lab; d0 = 0 in the static limit",
    "model.channels.weights.clarity_elasticity": (
        "ordering weights > output > prompt (docs/ODD.md §2); a single refusal direction "
        "(Arditi et al. 2024, arXiv:2406.11717) makes steering most clarity-sensitive"
    ),
    "model.channels.prompt.clarity_elasticity": (
        "least elastic: persona prompts work from a sharp persona boundary (Wolf et al., ICML 2024)"
    ),
    "model.channels.output.clarity_elasticity": (
        "between the two: reverse value editors train on (misaligned, aligned) pairs "
        "(Liu et al. 2022; Ji et al. 2024)"
    ),
    "model.channels.weights.base_vulnerability": (
        "harmful fine-tuning of open weights works without clarity (docs/ODD.md §1)"
    ),
    "model.channels.prompt.base_vulnerability": "generic jailbreaks (docs/ODD.md §1)",
    "model.network.topology": "small-world contact network of adversary communities",
    "policy.open_weights_share": "policy lever (docs/ODD.md §7.6)",
    "policy.leak_probability": "policy lever (docs/ODD.md §7.6): small per-step leak risk",
    "policy.api_access_share": "policy lever (docs/ODD.md §7.6)",
    "policy.publication_rate": "policy lever (docs/ODD.md §7.6)",
    "policy.defence_mandate": "policy lever (docs/ODD.md §7.6)",
    "policy.decoupling_share": "policy lever (docs/ODD.md §7.6)",
    "policy.decoupling_efficiency": "policy lever (docs/ODD.md §7.6)",
    "policy.detection_probability": "policy lever (docs/ODD.md §7.6)",
    "policy.deterrence_steps": "policy lever (docs/ODD.md §7.6)",
    "policy.liability": "policy lever (docs/ODD.md §7.6)",
    "learning.adversary.rule": "docs/ODD.md §7.3",
    "learning.adversary.rationality": "quantal (logit) response, McKelvey & Palfrey (1995)",
    "learning.adversary.forgetting": "Roth & Erev (1995), Erev & Roth (1998): φ ≈ 0.1",
    "learning.adversary.experimentation": "Roth & Erev (1995), Erev & Roth (1998): ε ≈ 0.1",
    "learning.adversary.imitation_intensity": "Fermi rule, Szabó & Tőke (1998)",
    "learning.lab.rule": "docs/ODD.md §7.3",
    "learning.lab.foresight": (
        "0 (myopic) keeps published results reproducible; β > 0 values defence by its "
        "discounted stream, holding its marginal value at the stationary level (docs/ODD.md §7.1)"
    ),
    "learning.lab.split_step": (
        "simplex reaches the best split the theory assumes (its resting points meet the KKT "
        "conditions); per_channel, the default before 2026-12-06, reproduces earlier results, "
        "but its capped steps cancel in the projection, so the split can stay where it started "
        "(docs/ODD.md §7.3)"
    ),
    "learning.lab.imitation_intensity": "Fermi rule, Szabó & Tőke (1998)",
}
