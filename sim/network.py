"""The adversary network G, generated with networkx and stored as compressed adjacency arrays."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from sim.config import NetworkConfig


@dataclass(frozen=True)
class Network:
    """Undirected graph as directed edge arrays sorted by source (CSR layout).

    ``dst[indptr[j]:indptr[j + 1]]`` are the neighbours of node j; ``src`` repeats j for each.
    """

    n: int
    src: NDArray[np.intp]
    dst: NDArray[np.intp]
    indptr: NDArray[np.intp]
    degree: NDArray[np.float64]

    @classmethod
    def from_edges(cls, n: int, edges: NDArray[np.intp]) -> Network:
        edges = np.asarray(edges, dtype=np.intp).reshape(-1, 2)
        both = np.concatenate([edges, edges[:, ::-1]])
        order = np.lexsort((both[:, 1], both[:, 0]))
        src, dst = both[order, 0], both[order, 1]
        counts = np.bincount(src, minlength=n)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        return cls(n=n, src=src, dst=dst, indptr=indptr, degree=counts.astype(float))

    def to_networkx(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        keep = self.src < self.dst
        g.add_edges_from(zip(self.src[keep].tolist(), self.dst[keep].tolist(), strict=True))
        return g


def build_network(cfg: NetworkConfig, n: int, seed: int) -> Network:
    """Generate G with networkx (seeded) and convert it to edge arrays."""
    k = cfg.mean_degree
    if cfg.topology == "none" or n < 2:
        return Network.from_edges(n, np.empty((0, 2), dtype=np.intp))
    if cfg.topology == "watts_strogatz":
        g = nx.watts_strogatz_graph(n, k, cfg.rewiring, seed=seed)
    elif cfg.topology == "barabasi_albert":
        g = nx.barabasi_albert_graph(n, max(1, k // 2), seed=seed)
    elif cfg.topology == "erdos_renyi":
        g = nx.fast_gnp_random_graph(n, min(1.0, k / (n - 1)), seed=seed)
    else:  # pragma: no cover - guarded by config validation
        raise ValueError(f"unknown topology {cfg.topology!r}")
    edges = np.fromiter(
        (v for e in g.edges() for v in e), dtype=np.intp, count=2 * g.number_of_edges()
    )
    return Network.from_edges(n, edges)
