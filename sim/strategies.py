"""Learning rules as strategy objects: one class per rule, shared by every layer that runs them.

A strategy says which rules of :mod:`sim.rules` an agent follows when it adapts (``docs/ODD.md``
§4). The engine (:mod:`sim.model`), the plain-Mesa reference (``benchmarks/reference.py``), the
mean field (:mod:`sim.meanfield`) and the market theory (:mod:`sim.market`) all ask the strategy,
never the rule's name, so a rule is added in one place: write its class here, decorate it with
:func:`adversary_strategy` or :func:`lab_strategy`, and the configuration accepts its name
(``learning.adversary.rule`` / ``learning.lab.rule`` take their choices from the registries
below). ``docs/architecture.md`` works through an example.

The classes carry no state: the state they act on (efforts, propensities, policies) is the
population's arrays. Like the strategies of the Axelrod library, each is a small class with a
``name``, a one-paragraph description of the rule and the properties (``classifier``) that the
layers dispatch on.
"""

from __future__ import annotations

from typing import ClassVar


class AdversaryStrategy:
    """How an adversary adapts after each step's contest."""

    #: The configuration value (``learning.adversary.rule``).
    name: ClassVar[str] = ""
    #: Effort moves a share η_x of the way to the myopic best response
    #: (:func:`sim.rules.adversary_effort_step` on :meth:`sim.rules.BestResponse.effort`).
    best_responds: ClassVar[bool] = False
    #: The channel is drawn by Roth–Erev propensities and the lab within it by logit
    #: (:func:`sim.rules.target_logits` with propensities), and the propensities are reinforced
    #: by realised payoffs (:func:`sim.rules.roth_erev_update`).
    reinforces_channels: ClassVar[bool] = False
    #: Copies a network neighbour's effort share by the Fermi rule (:func:`sim.rules.fermi`).
    imitates: ClassVar[bool] = False
    #: Why the market theory (:mod:`sim.market`) has no stationary state for this rule, or
    #: ``None`` if it has one.
    no_stationary_theory: ClassVar[str | None] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LabStrategy:
    """How a lab sets its policy (alignment share s and defence split ω) after each step."""

    name: ClassVar[str] = ""
    #: One myopic (or, with foresight, forward-looking) best-response step on the expected
    #: objective (:func:`sim.rules.lab_policy_step` on :func:`sim.rules.lab_objective`).
    best_responds: ClassVar[bool] = False
    #: Copies another lab's policy by the Fermi rule on smoothed realised performance.
    imitates: ClassVar[bool] = False
    no_stationary_theory: ClassVar[str | None] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: name → strategy class, in the order the configuration lists them (the first is the default).
ADVERSARY_STRATEGIES: dict[str, type[AdversaryStrategy]] = {}
LAB_STRATEGIES: dict[str, type[LabStrategy]] = {}


def adversary_strategy(cls: type[AdversaryStrategy]) -> type[AdversaryStrategy]:
    """Class decorator: register an adversary strategy under its ``name``."""
    if not cls.name or cls.name in ADVERSARY_STRATEGIES:
        raise ValueError(f"adversary strategy needs a new, non-empty name, not {cls.name!r}")
    ADVERSARY_STRATEGIES[cls.name] = cls
    return cls


def lab_strategy(cls: type[LabStrategy]) -> type[LabStrategy]:
    """Class decorator: register a lab strategy under its ``name``."""
    if not cls.name or cls.name in LAB_STRATEGIES:
        raise ValueError(f"lab strategy needs a new, non-empty name, not {cls.name!r}")
    LAB_STRATEGIES[cls.name] = cls
    return cls


@adversary_strategy
class RothErev(AdversaryStrategy):
    """Reinforcement learning over channels (Roth & Erev 1995), with best-response effort.

    The channel is drawn in proportion to propensities that realised payoffs reinforce, with
    forgetting and experimentation; the lab within the channel by logit on expected gain; effort
    moves toward the myopic best response against the target just fought.
    """

    name = "roth_erev"
    best_responds = True
    reinforces_channels = True


@adversary_strategy
class BestResponse(AdversaryStrategy):
    """Logit targeting over every accessible (lab, channel) and best-response effort."""

    name = "best_response"
    best_responds = True


@adversary_strategy
class Imitation(AdversaryStrategy):
    """Fermi imitation of a random network neighbour's effort share (Szabó & Tőke 1998), with
    mutation; targets by logit like :class:`BestResponse`."""

    name = "imitation"
    imitates = True
    no_stationary_theory = "no stationary theory of the Fermi rule"


@adversary_strategy
class Fixed(AdversaryStrategy):
    """Effort stays at its initial share of the budget; targets by logit (a null model)."""

    name = "fixed"


@lab_strategy
class LabBestResponse(LabStrategy):
    """Best response on the one-step-ahead expected objective, in partial adjustment."""

    name = "best_response"
    best_responds = True


@lab_strategy
class LabImitation(LabStrategy):
    """Fermi imitation of another lab's policy on smoothed realised performance, with mutation."""

    name = "imitation"
    imitates = True
    no_stationary_theory = "no stationary theory of the Fermi rule"


@lab_strategy
class LabFixed(LabStrategy):
    """The initial policy, held (a null model and the market theory's exogenous case)."""

    name = "fixed"


def for_adversaries(name: str) -> AdversaryStrategy:
    """The adversary strategy called ``name`` (a configuration value)."""
    try:
        return ADVERSARY_STRATEGIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown adversary rule {name!r}; one of {', '.join(ADVERSARY_STRATEGIES)}"
        ) from None


def for_labs(name: str) -> LabStrategy:
    """The lab strategy called ``name`` (a configuration value)."""
    try:
        return LAB_STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown lab rule {name!r}; one of {', '.join(LAB_STRATEGIES)}") from None
