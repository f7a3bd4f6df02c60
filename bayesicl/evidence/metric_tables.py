"""The fit's metrics (docs/model.md#metrics) tabulated over w_M in the pass that builds the evidence.

With two strategies the model's output at a condition is h(w) = w·M + (1 − w)·G for one
number w = w_M, so each metric of h against the transformer T_c is a function of w alone.
The evidence pass tabulates every metric at Chebyshev nodes w_k
(`bayesicl.evidence.tabulation.chebyshev_nodes`, dense at both ends: `METRIC_NODES` of them,
kl at the objective's), summed over chunks of sequences, and the fit reads them at its
weights (`bayesicl.metrics`) without reading a token again:

- tvd: ½ Σ_v |g_v − t_v + w δ_v| (δ = M − G) is piecewise linear in w with one kink per token
  entry; adding each entry's line to the node interval of its kink gives the sum exactly at
  every node (`tvd_sums`). Between nodes it is read linearly: the function is convex, so the
  reading is never below the truth and is above it by at most the slope change inside the
  interval times a quarter of its width.
- spearman: per (sequence, position) the rank correlation's numerator is
  ½ Σ_{u<v} sgn(h_v − h_u)(R_v − R_u), R the centred ranks of T; sgn(h_v − h_u) changes
  only where the two colours' lines cross, so the numerator is the ranks just above w = 0
  plus one jump per crossing (`RankCrossings`). Exact at every node, ties included (at w = 0
  and 1, where G and M have ties, and in a row where two colours tie exactly at a node, the
  ranks are computed directly); linear between nodes.
- agreement: the argmax of h at every node (classification's one query); linear between.
- kl: KL(T‖h) and its first two derivatives at the nodes, on both splits (the ID split's are
  the objective's tables); quintic Hermite between.
- mse, r2 (regression): exact at any w, from each split's quadratic (`quadratic_sums`).

The constant baseline does not depend on w: one value per condition and split (`constant_sums`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import observe

#: Metrics of a family whose spec names none (`bayesicl.families.FamilySpec.metrics`: the
#: family's "other" metrics of docs/model.md#metrics, plus the fit's objective).
DEFAULT_METRICS = ("tvd", "spearman", "kl")
#: Metrics whose tables are (condition, node) sums with counts, read linearly between nodes.
LINEAR = ("tvd", "spearman", "agreement")
#: Their nodes: Chebyshev, as the objective's, but finer (their cost barely grows with the
#: count, and linear reading errs by the change within one interval, ~0.003 wide mid-range).
METRIC_NODES = 513
#: Most colours ranked by pairwise comparisons (d(d − 1)/2 of them); more are sorted.
PAIRWISE_RANKS = 32


def tabulated(names: Sequence[str], output_kind: str, num_strategies: int, num_outputs: int) -> bool:
    """Whether the metrics `names` of this evidence are tabulated at build time: two strategies,
    metrics this module knows and, for spearman, at most `PAIRWISE_RANKS` outputs (its
    crossings are per pair of outputs); else a fit reads the tokens once more (`bayesicl.metrics`).

    >>> tabulated(("tvd", "spearman", "kl"), "log_probs", 2, 8), tabulated(("tvd", "spearman"), "log_probs", 2, 64)
    (True, False)
    """
    known = set(LINEAR) | {"kl"} if output_kind == "log_probs" else {"mse", "r2"}
    small = "spearman" not in names or num_outputs <= PAIRWISE_RANKS
    return num_strategies == 2 and set(names) <= known and small


# -- ranks ----------------------------------------------------------------------------------------

def average_ranks(x) -> np.ndarray:
    """Ranks (1-based) over the last axis, ties sharing their average rank.

    Up to `PAIRWISE_RANKS` values per row: (d + 1)/2 + ½ Σ_{u≠v} sgn(x_v − x_u), exact with
    ties; more: ordinal ranks from sorting, rows with a tie re-ranked by counting comparisons.

    >>> average_ranks(np.array([0.3, 0.1, 0.3, 0.2])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    x = np.asarray(x)
    d = x.shape[-1]
    if d <= PAIRWISE_RANKS:
        columns = np.moveaxis(x, -1, 0)
        ranks = np.full(columns.shape, (d + 1) / 2.0)
        step = np.empty(columns.shape[1:])
        for u in range(d):
            for v in range(u + 1, d):
                np.subtract(columns[v], columns[u], out=step)
                np.sign(step, out=step)
                step *= 0.5
                ranks[v] += step
                ranks[u] -= step
        return np.ascontiguousarray(np.moveaxis(ranks, 0, -1))
    ranks = np.argsort(np.argsort(x, axis=-1), axis=-1) + 1.0
    ordered = np.sort(x, axis=-1)
    tied = (ordered[..., 1:] == ordered[..., :-1]).any(axis=-1)
    if tied.any():
        rows = x[tied]
        below = (rows[..., None, :] < rows[..., :, None]).sum(axis=-1)
        equal = (rows[..., None, :] == rows[..., :, None]).sum(axis=-1)
        ranks[tied] = below + (equal + 1.0) / 2.0
    return ranks


def standardized_ranks(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks − their mean) / √Σ(ranks − mean)² over the last axis, 0 on a constant row, and
    whether each row is non-constant: the rank correlation of two rows is the sum of the
    products of their standardized ranks.

    >>> z, defined = standardized_ranks(np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]]))
    >>> z.round(3).tolist(), defined.tolist()
    ([[-0.707, 0.0, 0.707], [0.0, 0.0, 0.0]], [True, False])
    """
    centred = ranks - ranks.mean(axis=-1, keepdims=True)
    norm = np.sqrt((centred * centred).sum(axis=-1))
    defined = norm > 0
    return centred / np.where(defined, norm, 1.0)[..., None], defined


class RankCrossings:
    """The rank correlation of h(w) = g + w(m − g) with any T, at every node, per chunk of rows.

    m, g (rows, d) probabilities of M and G. Holds what depends on the strategies only: the
    standardized ranks at w = 0 (G), just above 0 (G's order, ties broken by m − g), and at
    w = 1 (M); and every crossing of two colours' lines inside (0, 1) with its node interval.
    """

    def __init__(self, m: np.ndarray, g: np.ndarray, nodes: np.ndarray):
        self.nodes = nodes
        rows, d = g.shape
        delta = m - g
        self.at_zero, self.defined_zero = standardized_ranks(average_ranks(g))
        self.at_one, self.defined_one = standardized_ranks(average_ranks(m))
        u, v = np.triu_indices(d, 1)
        a = g[:, v] - g[:, u]                    # h_v − h_u = a + w b
        b = delta[:, v] - delta[:, u]
        left = np.where(a != 0, np.sign(a), np.sign(b))           # its sign just above w = 0
        # Ranks just above 0: the pairs' signs there, ½ Σ_{u≠v} sgn(h_v − h_u) per colour.
        centred = np.zeros((rows, d))
        np.add.at(centred.T, v, 0.5 * left.T)
        np.add.at(centred.T, u, -0.5 * left.T)
        norm = np.sqrt((centred * centred).sum(axis=1))
        self.defined_inside = norm > 0
        self.inside = centred / np.where(self.defined_inside, norm, 1.0)[:, None]
        row, pair = np.nonzero((a != 0) & (a * (a + b) < 0))      # the sign flips inside (0, 1)
        where = -a[row, pair] / b[row, pair]
        node = np.searchsorted(nodes, where, side="left")         # first node at or after the crossing
        # A row where two colours tie exactly at a node is ranked directly at every node (the
        # tie changes the spread of its ranks there); in real outputs there are none.
        self.special = np.unique(row[nodes[np.minimum(node, nodes.size - 1)] == where])
        keep = ~np.isin(row, self.special)
        row, pair, node = row[keep], pair[keep], node[keep]
        self.inside[self.special] = 0.0
        self.defined_inside[self.special] = False
        self.node = node.astype(np.int32)
        self.row, self.u, self.v = row.astype(np.int32), u[pair].astype(np.int16), v[pair].astype(np.int16)
        # At the crossing sgn(h_v − h_u) goes from `left` to −left: the standardized numerator
        # changes by −left·(R_v − R_u) / (norm of h's ranks).
        self.jump = -left[row, pair] / np.where(norm > 0, norm, 1.0)[row]
        mixtures = g[self.special][None] + nodes[:, None, None] * delta[self.special][None]   # (K, rs, d)
        self.at_nodes, self.defined_at_nodes = standardized_ranks(average_ranks(mixtures))

    def sums(self, t_ranks: np.ndarray, t_defined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Σ over rows of the rank correlation, rows where it is defined), each (c, K), for T
        given by its standardized ranks (c, rows, d) and non-constant rows (c, rows)."""
        count, size = t_ranks.shape[0], self.nodes.size
        flat = t_ranks.reshape(count, -1)
        total = np.empty((count, size))
        defined = np.empty((count, size))
        total[:, 0] = flat @ self.at_zero.reshape(-1)
        total[:, -1] = flat @ self.at_one.reshape(-1)
        inside = flat @ self.inside.reshape(-1)
        t_defined = t_defined.astype(np.float64)
        defined[:, 0] = t_defined @ self.defined_zero.astype(np.float64)
        defined[:, -1] = t_defined @ self.defined_one.astype(np.float64)
        defined[:, 1:-1] = (t_defined @ self.defined_inside.astype(np.float64))[:, None]
        if size > 2:
            change = self.jump * (t_ranks[:, self.row, self.v] - t_ranks[:, self.row, self.u])   # (c, E)
            steps = np.cumsum(_per_node(self.node, change, size), axis=1)
            total[:, 1:-1] = inside[:, None] + steps[:, 1:size - 1]
            if self.special.size:
                total[:, 1:-1] += np.einsum("crd,krd->ck", t_ranks[:, self.special], self.at_nodes[1:-1])
                defined[:, 1:-1] += t_defined[:, self.special] @ self.defined_at_nodes[1:-1].T.astype(np.float64)
        return total, defined


# -- the sums -------------------------------------------------------------------------------------

def tvd_sums(t: np.ndarray, m: np.ndarray, g: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Σ over entries of |h(w_k) − t| at every node, exactly: t (c, n), m and g (n,) probabilities.

    Each entry's |g − t + w δ| is |c(w)| with c(w) = sgn(δ)(g − t) + w|δ| increasing and zero
    at its kink; at node k the entries whose kink is at or below w_k add c(w_k), the others
    subtract it.

    >>> nodes = np.linspace(0, 1, 5); m, g = np.array([0.9, 0.1]), np.array([0.5, 0.5])
    >>> t = np.array([[0.6, 0.4]])
    >>> direct = [np.abs(g + w * (m - g) - t).sum() for w in nodes]
    >>> bool(np.allclose(tvd_sums(t, m, g, nodes)[0], direct))
    True
    """
    count, size = t.shape[0], nodes.size
    delta = m - g
    direction, slope = np.sign(delta), np.abs(delta)
    offset = direction * (g - t)                                   # c(0), (c, n)
    flat = delta == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        kink = (t - g) / np.where(flat, 1.0, delta)
    node = np.searchsorted(nodes, kink, side="left")              # kink ≤ w_k  ⇔  node ≤ k
    node[:, flat] = size                                           # flat entries: c ≡ 0 here
    below_offset = np.cumsum(_per_node(node, offset, size + 1), axis=1)[:, :size]
    below_slope = np.cumsum(_per_node(node, np.broadcast_to(slope, t.shape), size + 1), axis=1)[:, :size]
    total_offset, total_slope = offset.sum(axis=1), np.broadcast_to(slope, t.shape).sum(axis=1)
    constant = np.abs(g[flat] - t[:, flat]).sum(axis=1)
    return (2 * (below_offset + nodes * below_slope) - (total_offset[:, None] + nodes * total_slope[:, None])
            + constant[:, None])


def _per_node(node: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Σ of `weights` (c, n) into bins `node` ((c, n) or (n,)), per row: (c, size)."""
    count = weights.shape[0]
    node = np.broadcast_to(node, weights.shape)
    index = (node + size * np.arange(count)[:, None]).reshape(-1)
    return np.bincount(index, weights=np.asarray(weights, dtype=np.float64).reshape(-1),
                       minlength=count * size).reshape(count, size)


class StrategyMetrics:
    """The metric tables' view of M and G on one chunk of sequences of one split.

    `s` holds the two strategies prepared (2, b, P', O) (`bayesicl.observe.prepare`);
    `sums(t)` gives, for prepared conditions t (c, b, P', O), {metric: (sum, count)} at the
    nodes, each (c, K), for the linear metrics among `names` (kl and the regression
    quadratic come from `bayesicl.evidence.statistics`).
    """

    def __init__(self, names: Sequence[str], s: observe.Prepared, nodes: np.ndarray):
        self.names = tuple(names)
        self.nodes = nodes
        self.crossings = None
        self.labels = None
        if s.probs is None:
            return
        outputs = s.probs.shape[-1]
        self.m, self.g = s.probs[0].reshape(-1), s.probs[1].reshape(-1)
        if "spearman" in self.names:
            self.crossings = RankCrossings(s.probs[0].reshape(-1, outputs), s.probs[1].reshape(-1, outputs), nodes)
        if "agreement" in self.names:
            mixtures = s.probs[1].reshape(-1, outputs)[None] + nodes[:, None, None] * (
                s.probs[0] - s.probs[1]).reshape(-1, outputs)[None]
            self.labels = mixtures.argmax(axis=-1)                                     # (K, rows)

    def sums(self, t: observe.Prepared) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if t.probs is None:                      # predictions: the quadratic holds mse and r2
            return {}
        count, size = t.probs.shape[0], self.nodes.size
        outputs = t.probs.shape[-1]
        rows = int(np.prod(t.probs.shape[1:-1]))
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        tokens = np.full((count, size), float(rows))
        if "tvd" in self.names:
            out["tvd"] = (0.5 * tvd_sums(t.probs.reshape(count, -1), self.m, self.g, self.nodes), tokens)
        if self.crossings is not None:
            ranks, defined = standardized_ranks(average_ranks(t.probs.reshape(count, rows, outputs)))
            out["spearman"] = self.crossings.sums(ranks, defined)
        if self.labels is not None:
            label = t.probs.reshape(count, rows, outputs).argmax(axis=-1)               # (c, rows)
            agree = (label[:, None, :] == self.labels[None]).sum(axis=-1).astype(np.float64)
            out["agreement"] = (agree, tokens)
        return out


def constant_sums(names: Sequence[str], t: observe.Prepared) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric: (sum, count)} per condition (c,) of the constant strategy C against prepared
    T (c, b, P', O): the uniform distribution over the outputs, or the prediction 0."""
    count = t.values.shape[0]
    tokens = np.full(count, float(np.prod(t.values.shape[1:-1])))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if t.probs is None:
        flat = t.values.reshape(count, -1)
        if "mse" in names:
            out["mse"] = ((flat * flat).sum(axis=1), tokens)
        if "r2" in names:
            out["r2"] = (explained_fraction((flat * flat).sum(axis=1), total_squares(t)), np.ones(count))
        return out
    outputs = t.probs.shape[-1]
    if "tvd" in names:
        out["tvd"] = (0.5 * np.abs(t.probs - 1.0 / outputs).sum(axis=-1).reshape(count, -1).sum(axis=1), tokens)
    if "spearman" in names:                                          # a constant row has no ranks
        out["spearman"] = (np.zeros(count), np.zeros(count))
    if "agreement" in names:                                         # argmax of a uniform row: label 0
        out["agreement"] = ((t.probs.argmax(axis=-1) == 0).reshape(count, -1).sum(axis=1).astype(np.float64),
                            tokens)
    if "kl" in names:
        out["kl"] = ((t.probs * (t.values + np.log(outputs))).reshape(count, -1).sum(axis=1), tokens)
    return out


def explained_fraction(residual, total) -> np.ndarray:
    """R² from its two sums: 1 − residual / total, NaN where the total is 0.

    >>> explained_fraction(np.array([1.0, 1.0]), np.array([4.0, 0.0])).tolist()
    [0.75, nan]
    """
    residual, total = np.asarray(residual), np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.nan)


def total_squares(t: observe.Prepared) -> np.ndarray:
    """Σ (T − mean T)² over all entries of each condition (c,): R²'s denominator."""
    flat = t.values.reshape(t.values.shape[0], -1)
    return ((flat - flat.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
