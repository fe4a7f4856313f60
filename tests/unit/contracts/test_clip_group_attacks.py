"""Attacks on the clip_sum / clip_factor rules (commit 4a73de9): edge skeletons on which ScalarRules' `output_of`
must not revert (RefereeGame.choose_output calls every rules contract; one revert blocks the challenger from naming
any output of the entry, so a wrong entry could not be disputed) and must agree with the mirror
(`scalar_rules.scalar_checkable`), and whose planned reads for a checkable element are `scalar_reads`'."""

from __future__ import annotations

import numpy as np
import pytest
from eth_hash.auto import keccak

from engine.portable import record
from personas.referee_game import ELEMENT, Match, Side
from protocol import scalar_rules
from protocol import tensor_commit as tc
from protocol.referee_kit import SELF_READ, parse_skeleton

from .helpers import reverted
from .test_referee_game import ARITY, LEVELS
from .test_scalar_rules import PROVE_ELEMENT_TARGET, scalar_contracts  # noqa: F401

OUT, STATE = record.OUTPUT, record.STATE


def _grad(a: int, shape: tuple[int, ...] = (70,)) -> record.Ref:
    return record.Ref(OUT, a, 0, 1, shape)


def _sum(refs: tuple, pieces: int, code: int = 3) -> record.Entry:
    return record.Entry(40, "clip_sum", tuple(("input", k) for k in range(len(refs))), refs, ((code, (pieces,)),), (tc.ZERO,))


def _factor(refs: tuple, args: tuple, outputs: tuple = ((1, (1,)),)) -> record.Entry:
    return record.Entry(40, "clip_factor", args, refs, outputs, (tc.ZERO,) * len(outputs))


EIGHT = (1, 1, 1, 1, 1, 1, 2, 70)
EDGES = {
    "factor-without-inputs": _factor((), (1.0,)),
    "factor-without-inputs-two-args": _factor((), (1.0, 2.0)),
    "factor-two-inputs": _factor((record.Ref(OUT, 3, 0, 3, (4,)), record.Ref(OUT, 3, 0, 3, (4,))), (("input", 0), ("input", 1))),
    "factor-binary32-max-norm": _factor((record.Ref(OUT, 3, 0, 3, (4,)),), (("input", 0), np.float32(1.0))),
    "factor-extra-arg": _factor((record.Ref(OUT, 3, 0, 3, (4,)),), (("input", 0), 1.0, 2.0)),
    "factor-2d-partials": _factor((record.Ref(OUT, 3, 0, 3, (2, 2)),), (("input", 0), 1.0)),
    "factor-state-partials": _factor((record.Ref(STATE, 3, 0, 3, (4,)),), (("input", 0), 1.0)),
    "factor-P1": _factor((record.Ref(OUT, 3, 0, 3, (1,)),), (("input", 0), 1.0)),
    "factor-two-outputs": _factor((record.Ref(OUT, 3, 0, 3, (4,)),), (("input", 0), 1.0), ((1, (1,)), (1, (1,)))),
    "sum-start-only": _sum((record.Ref(OUT, 3, 0, 3, (4,)),), 1),
    "sum-start-2d": _sum((record.Ref(OUT, 3, 0, 3, (2, 2)), _grad(5)), 2),
    "sum-start-state": _sum((record.Ref(STATE, 3, 0, 3, (4,)), _grad(5)), 2),
    "sum-start-P1": _sum((record.Ref(OUT, 3, 0, 3, (1,)), _grad(5)), 2),
    "sum-binary64-later": _sum((_grad(5), record.Ref(OUT, 3, 0, 3, (4,))), 3),
    "sum-start-eight-dims": _sum((record.Ref(OUT, 3, 0, 3, (4,)), *(_grad(5 + k, EIGHT) for k in range(32))), 96),
    "sum-no-start-eight-dims": _sum(tuple(_grad(5 + k, EIGHT) for k in range(32)), 96),
    "sum-output-counts-start": _sum((record.Ref(OUT, 3, 0, 3, (4,)), _grad(5)), 3),
    "sum-output-binary32": _sum((record.Ref(OUT, 3, 0, 3, (4,)), _grad(5)), 2, code=1),
    "sum-scalar-gradient": _sum((record.Ref(OUT, 3, 0, 3, (4,)), _grad(5, ())), 1),
    "sum-empty-start": _sum((record.Ref(OUT, 3, 0, 3, (0,)), _grad(5)), 2),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edge_clip_skeletons_never_revert_and_match_the_mirror(scalar_contracts, name: str) -> None:  # noqa: F811
    rules = scalar_contracts["rules"].functions
    entry = EDGES[name]
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    for output in range(len(entry.out_shapes) + 1):
        count, checkable, _, _ = rules.output_of(skeleton, output).call()  # must not revert
        assert count == len(entry.out_shapes)
        assert checkable == scalar_rules.scalar_checkable(parsed, output), (name, output)
        if not checkable:
            continue
        size = int(np.prod(entry.out_shapes[output][1]))
        for element in sorted({0, 1, size - 1} & set(range(size))):
            reads = rules.plan(skeleton, output, element, []).call()[2]
            mirror = [(SELF_READ + r[3] if r[1] == scalar_rules.SELF else r[0], r[7], r[8]) for r in reads]
            assert mirror == scalar_rules.scalar_reads(parsed, output, element), (name, element)


def _consistent_groups(rec: record.StepRecord, piece: int) -> record.StepRecord:
    """The record with the first clip_sum's running value `piece` off by a high bit and every later running value of
    every group and clip_factor's factor recomputed from it: a wrong fold whose later pieces and groups all check."""
    import dataclasses

    from protocol import referee_model as rm

    entries = list(rec.entries)
    clips = [e.index for e in entries if e.kernel in scalar_rules.CLIP_KERNELS]
    changed: dict[int, np.ndarray] = {}
    for n, j in enumerate(clips):
        entry = entries[j]
        call = record.referee_call(entry)
        flat = {k: (changed[entry.inputs[k].a] if entry.inputs[k].kind == OUT and entry.inputs[k].a in changed
                    else rec.input_value(entry, k)).reshape(-1) for k in range(len(entry.inputs))}  # fmt: skip
        out = entry.outputs[0].copy()
        for c in range(out.size):
            if n == 0 and c < piece:
                continue
            if n == 0 and c == piece:
                out.view(np.uint64)[c] ^= np.uint64(1 << 44)
                continue
            proven = {key: (int(out.view(np.uint64)[key[1]]) if key[0] == "partial" else flat[key[0]][key[1]])
                      for key in rm.dependencies(call, 0, c)}  # fmt: skip
            bits = rm.check_element(call, 0, c, proven)
            out.view(np.uint64 if out.dtype == np.float64 else np.uint32)[c] = bits
        changed[j] = out
        entries[j] = dataclasses.replace(entry, outputs=(out,), out_roots=(tc.tensor_root(out),))
    return dataclasses.replace(rec, entries=entries)


@pytest.fixture(scope="module")
def deep_step() -> dict:
    from ..portable.test_step_record import deep_gpt
    from .helpers import first_step

    return first_step(deep_gpt())


def test_a_wrong_group_followed_by_consistent_groups_is_caught_in_that_group(scalar_contracts, deep_step) -> None:  # noqa: F811
    """A defender whose first group's running Σ g² is wrong from piece 5 on, every later piece, every later group
    (each from the group before's wrong last partial) and the factor consistent with it: the honest challenger's
    bisection lands on the first clip_sum (the first entry whose prefix differs), the descent on piece 5, and the
    defender loses."""
    w3 = scalar_contracts["host"].w3
    rec = deep_step["rec"]
    wrong = _consistent_groups(rec, 5)
    clips = [e.index for e in rec.entries if e.kernel in scalar_rules.CLIP_KERNELS]
    assert all(wrong.entries[j].out_roots != rec.entries[j].out_roots for j in clips[:3])
    with reverted(w3):
        truth = Side(deep_step["roots"], rec, deep_step["next_leaves"])
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(deep_step["roots"]))]
        defender = Side([deep_step["roots"][0], *later], wrong, deep_step["next_leaves"])
        match = Match(w3, scalar_contracts, ARITY, LEVELS, deep_step["before"], deep_step["binding"], defender, truth,
                      honest_challenger=True, target=clips[0], target_element=5, output=0)  # fmt: skip
        match.play(ELEMENT, "challenger")
        game = match.game()
        assert game["entry"] == clips[0] and game["wide_code"] == 3
        match.dispute_element()
        before = match.gas["defender"]
        match.prove_element()
        assert match.game()["entry"] == clips[0] and 4 * match.game()["chunk_index"] + match.game()["element"] == 5
        assert match.ruling() == (True, True, False)
        assert match.gas["defender"] - before < PROVE_ELEMENT_TARGET
