"""Mesa agents: labs (aligners) and adversaries.

Every lab and adversary is a ``mesa.Agent``, created and registered with the model when the model
is built (``len(model.agents)`` is the number of labs plus adversaries from the start). Their
state lives in one set of numpy arrays per population, held by the model (a struct of arrays), so
that targeting and contests run as whole-array operations; an agent's attributes are columns of
those arrays, read and written through one descriptor, :class:`ArrayField`. The dynamics are the
rules of :mod:`sim.rules`, which :class:`sim.model.AlignmentParadoxModel` applies to whole
populations each step (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mesa

from sim.config import CHANNELS

if TYPE_CHECKING:
    from sim.model import AlignmentParadoxModel


class ArrayField:
    """An agent attribute that is row ``agent.index`` of a population array of the model.

    ``ArrayField("lab", "quality")`` reads ``model.lab.quality[index]`` as a Python ``float``
    (or the ``kind`` given); arrays with one column per channel read as a dict keyed by
    channel. With ``writable=True`` assignment writes into the array; otherwise the attribute is
    read-only (it is derived by the model each step).
    """

    def __init__(
        self, population: str, array: str, kind: type = float, *, writable: bool = False
    ) -> None:
        self.population, self.array, self.kind, self.writable = population, array, kind, writable
        self.name = array

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _column(self, agent: Any) -> Any:
        return getattr(getattr(agent.model, self.population), self.array)

    def __get__(self, agent: Any, owner: type | None = None) -> Any:
        if agent is None:
            return self
        value = self._column(agent)[agent.index]
        if getattr(value, "ndim", 0) == 1:  # one value per channel
            return dict(zip(CHANNELS, value.tolist(), strict=True))
        return self.kind(value)

    def __set__(self, agent: Any, value: Any) -> None:
        if not self.writable:
            raise AttributeError(f"{type(agent).__name__}.{self.name} is derived by the model")
        self._column(agent)[agent.index] = value


class Lab(mesa.Agent):
    """An aligner: invests in alignment and defence, deploys a model with reach w_i."""

    model: AlignmentParadoxModel

    budget = ArrayField("lab", "budget")
    reach = ArrayField("lab", "reach")
    alignment_capital = ArrayField("lab", "capital", writable=True)
    alignment_quality = ArrayField("lab", "quality")
    clarity = ArrayField("lab", "clarity")
    alignment_share = ArrayField("lab", "alignment_share", writable=True)
    defence = ArrayField("lab", "defence")
    defence_split = ArrayField("lab", "defence_split")
    open_weights = ArrayField("lab", "open_weights", bool)
    net_alignment = ArrayField("lab", "net")
    marginal_return = ArrayField("lab", "marginal_return")

    def __init__(self, model: AlignmentParadoxModel, index: int) -> None:
        super().__init__(model)
        self.index = int(index)

    @property
    def compromised_share(self) -> float:
        """Share of the lab's use compromised, over all channels."""
        return float(self.model.lab.compromised[self.index].sum())


class Adversary(mesa.Agent):
    """An attacker with a budget, technique knowledge per channel and a position on G."""

    model: AlignmentParadoxModel

    budget = ArrayField("adv", "budget")
    effort = ArrayField("adv", "effort", writable=True)
    knowledge = ArrayField("adv", "knowledge")
    propensities = ArrayField("adv", "propensity")
    api_access = ArrayField("adv", "api_access", bool)
    deterred_until = ArrayField("adv", "deterred_until", int)

    def __init__(self, model: AlignmentParadoxModel, index: int) -> None:
        super().__init__(model)
        self.index = int(index)

    @property
    def active(self) -> bool:
        """Free to attack in the next step."""
        return bool(self.model.adv.deterred_until[self.index] <= self.model.steps)

    @property
    def neighbours(self) -> list[int]:
        """Indices of the adversaries this one learns from on the network G."""
        net = self.model.net
        return net.dst[net.indptr[self.index] : net.indptr[self.index + 1]].tolist()

    @property
    def last_target(self) -> tuple[int, str] | None:
        """The (lab index, channel) attacked last, or ``None`` before the first attempt."""
        lab = int(self.model.adv.target_lab[self.index])
        if lab < 0:
            return None
        return lab, CHANNELS[int(self.model.adv.target_channel[self.index])]
