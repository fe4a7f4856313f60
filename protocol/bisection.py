"""The level-2 bisection game's arithmetic, as `contracts/Bisection.vy` does it (torch-free).

A game narrows c_0 … c_n (c_0 agreed, c_n disputed) to one index j with c_j agreed and c_{j+1}
disputed. Each round the interval [lo, hi] (L = hi - lo >= 2) is cut into parts = min(k, L) parts at
p_j = lo + (j * L) // parts; the defender posts c at p_1 … p_{parts-1}; the challenger picks the part
whose start it accepts and whose end it disputes. The players below are what an honest worker and
an honest verifier answer, given the sequence they computed themselves.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_points(lo: int, hi: int, arity: int) -> list[int]:
    """p_0 = lo … p_parts = hi for an interval of length >= 2 (strictly increasing)."""
    if hi - lo < 2 or arity < 2:
        raise ValueError(f"cannot split [{lo}, {hi}] with arity {arity}")
    length = hi - lo
    parts = min(arity, length)
    return [lo + j * length // parts for j in range(parts + 1)]


def max_rounds(n: int, arity: int) -> int:
    """ceil(log_arity(n)) in integers: the most rounds a game over n steps can take."""
    if n < 1 or arity < 2:
        raise ValueError(f"bad game shape n={n}, arity={arity}")
    rounds, reach = 0, 1
    while reach < n:
        reach *= arity
        rounds += 1
    return rounds


def defender_values(lo: int, hi: int, arity: int, sequence: Sequence[bytes]) -> list[bytes]:
    """The defender's move: its commitments at the interior split points of [lo, hi]."""
    return [sequence[p] for p in split_points(lo, hi, arity)[1:-1]]


def challenger_part(lo: int, hi: int, arity: int, posted: Sequence[bytes], sequence: Sequence[bytes]) -> int:
    """The honest challenger's move: the first part whose end differs from its own sequence.

    The start of the interval is agreed (by induction), and the end is disputed, so some part's end
    differs; the first such part has an agreed start."""
    points = split_points(lo, hi, arity)
    for part, point in enumerate(points[1:-1]):
        if posted[part] != sequence[point]:
            return part
    return len(points) - 2
