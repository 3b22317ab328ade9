"""Mesa agents: labs (aligners) and adversaries.

The state of each population lives in one set of numpy arrays held by the model (struct of
arrays), so that targeting and contests run as whole-array operations. An agent is a named view
onto its row: reading ``lab.alignment_quality`` reads the model's array, and the setters write
into it. Agents carry no behaviour of their own; the dynamics are the kernels in
:mod:`sim.kernels`, called by :class:`sim.model.AlignmentParadoxModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa

from sim.config import CHANNELS

if TYPE_CHECKING:
    from sim.model import AlignmentParadoxModel


class Lab(mesa.Agent):
    """An aligner: invests in alignment and defence, deploys a model with reach w_i."""

    model: AlignmentParadoxModel

    def __init__(self, model: AlignmentParadoxModel, index: int) -> None:
        super().__init__(model)
        self.index = index

    @property
    def budget(self) -> float:
        return float(self.model.lab.budget[self.index])

    @property
    def reach(self) -> float:
        return float(self.model.lab.reach[self.index])

    @property
    def alignment_capital(self) -> float:
        return float(self.model.lab.capital[self.index])

    @alignment_capital.setter
    def alignment_capital(self, value: float) -> None:
        self.model.lab.capital[self.index] = value

    @property
    def alignment_quality(self) -> float:
        return float(self.model.lab.quality[self.index])

    @property
    def clarity(self) -> float:
        return float(self.model.lab.clarity[self.index])

    @property
    def alignment_share(self) -> float:
        return float(self.model.lab.alignment_share[self.index])

    @alignment_share.setter
    def alignment_share(self, value: float) -> None:
        self.model.lab.alignment_share[self.index] = value

    @property
    def defence(self) -> dict[str, float]:
        return dict(zip(CHANNELS, self.model.lab.defence[self.index].tolist(), strict=True))

    @property
    def defence_split(self) -> dict[str, float]:
        return dict(zip(CHANNELS, self.model.lab.defence_split[self.index].tolist(), strict=True))

    @property
    def open_weights(self) -> bool:
        return bool(self.model.lab.open_weights[self.index])

    @property
    def compromised_share(self) -> float:
        return float(self.model.lab.compromised[self.index].sum())

    @property
    def net_alignment(self) -> float:
        return float(self.model.lab.net[self.index])

    @property
    def marginal_return(self) -> float:
        return float(self.model.lab.marginal_return[self.index])


class Adversary(mesa.Agent):
    """An attacker with a budget, technique knowledge per channel and a position on G."""

    model: AlignmentParadoxModel

    def __init__(self, model: AlignmentParadoxModel, index: int) -> None:
        super().__init__(model)
        self.index = index

    @property
    def budget(self) -> float:
        return float(self.model.adv.budget[self.index])

    @property
    def effort(self) -> float:
        return float(self.model.adv.effort[self.index])

    @effort.setter
    def effort(self, value: float) -> None:
        self.model.adv.effort[self.index] = value

    @property
    def knowledge(self) -> dict[str, float]:
        return dict(zip(CHANNELS, self.model.adv.knowledge[self.index].tolist(), strict=True))

    @property
    def propensities(self) -> dict[str, float]:
        return dict(zip(CHANNELS, self.model.adv.propensity[self.index].tolist(), strict=True))

    @property
    def api_access(self) -> bool:
        return bool(self.model.adv.api_access[self.index])

    @property
    def active(self) -> bool:
        # free to attack in the next step
        return bool(self.model.adv.deterred_until[self.index] <= self.model.steps)

    @property
    def deterred_until(self) -> int:
        return int(self.model.adv.deterred_until[self.index])

    @property
    def neighbours(self) -> list[int]:
        net = self.model.net
        return net.dst[net.indptr[self.index] : net.indptr[self.index + 1]].tolist()

    @property
    def last_target(self) -> tuple[int, str] | None:
        lab = int(self.model.adv.target_lab[self.index])
        if lab < 0:
            return None
        return lab, CHANNELS[int(self.model.adv.target_channel[self.index])]
