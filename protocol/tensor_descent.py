"""The parties' side of the element-narrowing game (contracts/TensorDescent.vy): the chunk tree of a
tensor level by level, the descendants a defender posts for a node, and the descendant an honest
challenger disputes.

Heights count up from the chunk leaves (height 0) to the data root (height d = depth of the tree);
a node is named by (height, position), position its index among the nodes of its height. Each move
opens s = min(m, height) levels: the 2^s descendants of (height, position) at height − s.
NumPy-free and torch-free: the tree is built from `protocol.tensor_commit`'s chunk leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

from protocol import tensor_commit as tc


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """levels[h] = the nodes at height h of the zero-padded chunk tree (levels[0] the padded leaves,
    levels[-1] = [data root])."""
    width = tc.width_of(len(leaves))
    level = list(leaves) + [tc.ZERO] * (width - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [keccak(tc.TENSOR_NODE + level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def padding_node(height: int) -> bytes:
    """The root of an all-padding subtree of `height`: the zero word at the leaves (padding leaves are
    not hashed), keccak(0x11 ‖ Z ‖ Z) above."""
    node = tc.ZERO
    for _ in range(height):
        node = keccak(tc.TENSOR_NODE + node + node)
    return node


def steps_at(height: int, levels_per_move: int) -> int:
    """How many levels the move at `height` opens."""
    return min(levels_per_move, height)


def descendants(levels: Sequence[Sequence[bytes]], height: int, position: int, levels_per_move: int) -> list[bytes]:
    """The 2^s nodes a defender posts for node (height, position) of its tree."""
    steps = steps_at(height, levels_per_move)
    first = position << steps
    return list(levels[height - steps][first : first + (1 << steps)])


def honest_choice(true_levels: Sequence[Sequence[bytes]], height: int, position: int, levels_per_move: int,
                  posted: Sequence[bytes]) -> int | None:  # fmt: skip
    """The first posted descendant that differs from the true tree's (None when all agree: the
    defender's node is then the true one and there is nothing to dispute)."""
    truth = descendants(true_levels, height, position, levels_per_move)
    for child, (mine, theirs) in enumerate(zip(truth, posted, strict=True)):
        if mine != theirs:
            return child
    return None
