"""Adversarial review of cross-entropy rows in pieces (RowPieceRules over wide logits). Each test asserts the SAFE
behaviour: a failure shows a hole. Found and fixed: a constant targets read carried no root (so no honest proof of it
could pass RefereeGame), and RowPieceRules took nll of entries whose mean or running sums were misshapen where the
mirror did not."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.referee_kit import parse_skeleton, rules_of

from .test_cross_entropy_pieces import CONSTANT, _entry
from .test_row_piece_rules import rules  # noqa: F401 (the contracts fixture, shared)

ROOT = b"\x07" * 32  # the constant targets' root _entry gives them


def _plan_reads(rules, entry, output, element, hints):  # noqa: F811
    return rules["RowPieceRules"].plan(entry.skeleton_bytes(), output, element, hints).call()[2]


@pytest.mark.parametrize(("kernel", "z", "output", "element", "hints"),
                         [("cross_entropy", (5, 100), 1, 2, [3]), ("cross_entropy_backward", (2, 300), 0, 7, [])])
def test_constant_targets_read_carries_the_constant_root(rules, kernel, z, output, element, hints) -> None:  # noqa: F811
    """RefereeGame._input_root proves a REF_CONSTANT read against the read's `a` (the rules contract must copy
    the skeleton's constant root there, as RowRules' _loss_plan does with _constant_root): RowPieceRules' plan
    does too (host_rules._read alone gives the parsed 4-byte field, and the honest defender's proof then failed
    'referee: not the skeleton's constant')."""
    entry = _entry(kernel, z, 0.25 if kernel == "cross_entropy_backward" else None, constant=True)
    reads = _plan_reads(rules, entry, output, element, hints)
    target = reads[3]
    assert target[1] == CONSTANT
    assert int(target[2]).to_bytes(32, "big") == ROOT, f"the targets read's a is {int(target[2]):#x}, not the constant root"


def test_whole_row_rule_copies_the_root_for_comparison(rules) -> None:  # noqa: F811
    """Control: RowRules' whole-row nll (C = 32) copies the constant root into the targets read."""
    entry = _entry("cross_entropy", (3, 32), None, constant=True, statistics=False)
    reads = rules["RowRules"].plan(entry.skeleton_bytes(), 1, 1, []).call()[2]
    target = reads[-1]
    assert target[1] == CONSTANT and int(target[2]).to_bytes(32, "big") == ROOT


def _first_slot(rules, skeleton, output):  # noqa: F811
    for slot, name in ((0, "HostRules"), (1, "FoldRules"), (2, "RowRules"), (5, "RowPieceRules")):
        if rules[name].output_of(skeleton, output).call()[1]:
            return slot
    return None


def _misshapen():
    import dataclasses

    good, many = _entry("cross_entropy", (3, 40)), _entry("cross_entropy", (300, 33))

    def with_outs(entry, new):
        from protocol import tensor_commit as tc

        return dataclasses.replace(entry, out_shapes=tuple(new), out_roots=(tc.ZERO,) * len(new))

    g, m = list(good.out_shapes), list(many.out_shapes)
    return [("mean of two", with_outs(good, [(1, (2,)), *g[1:]])), ("mean int64", with_outs(good, [(2, ()), *g[1:]])),
            ("mean empty", with_outs(good, [(1, (0,)), *g[1:]])),
            ("running sums of three", with_outs(many, [*m[:2], (1, (3,)), m[3]])),
            ("running sums int64", with_outs(many, [*m[:2], (2, (1,)), m[3]]))]


@pytest.mark.parametrize("index", range(5))
def test_contract_and_mirror_agree_on_misshapen_mean_or_running_sums(rules, index) -> None:  # noqa: F811
    """The slot RefereeGame asks (first rules contract that says checkable) equals the mirror's `rules_of` for every
    output, on cross_entropy entries whose mean or running sums are misshapen (the mirror's _loss_shapes_fit
    checks them; RowPieceRules' _check for KERNEL_NLL only counts them)."""
    why, entry = _misshapen()[index]
    skeleton = entry.skeleton_bytes()
    for output in range(len(entry.out_shapes)):
        assert _first_slot(rules, skeleton, output) == rules_of(parse_skeleton(skeleton), output), (why, output)


def _shape_cases():
    import dataclasses

    from engine.portable import record
    from protocol import tensor_commit as tc

    out = []
    for kernel in ("cross_entropy", "cross_entropy_backward"):
        grad = 0.25 if kernel == "cross_entropy_backward" else None
        for c in (29, 30, 31, 32, 33, 64, 256, 257):
            for r in (1, 256, 257):
                for stats in (True, False):
                    out.append((f"{kernel} {r}x{c} stats={stats}", _entry(kernel, (r, c), grad, statistics=stats)))
        good = _entry(kernel, (4, 40), grad)
        z = good.inputs[0]
        out.append((f"{kernel} 3-d z", dataclasses.replace(good, inputs=(dataclasses.replace(z, shape=(2, 2, 40)), good.inputs[1]))))
        out.append((f"{kernel} float t", dataclasses.replace(good, inputs=(z, dataclasses.replace(good.inputs[1], dtype=1)))))
        out.append((f"{kernel} 1-d z", dataclasses.replace(good, inputs=(dataclasses.replace(z, shape=(160,)), good.inputs[1]))))
        out.append((f"{kernel} t [R, 1]", dataclasses.replace(good, inputs=(z, dataclasses.replace(good.inputs[1], shape=(4, 1))))))
        # the statistics shaped for the whole rows' count of pieces of another width
        outs = list(good.out_shapes)
        out.append((f"{kernel} stats [2R]", dataclasses.replace(good, out_shapes=(*outs[:-1], (1, (8,))), out_roots=(tc.ZERO,) * len(outs))))
        # a statistics-shaped output replacing nll / dz
    return out


SHAPES = _shape_cases()


@pytest.mark.parametrize("index", range(len(SHAPES)), ids=[s[0] for s in SHAPES])
def test_slot_agreement_over_shapes(rules, index) -> None:  # noqa: F811
    """The first rules contract that checks each output is the mirror's `rules_of`, and where RowPieceRules
    checks, its plan of the first and last element equals the mirror's (nll hinted with class 0 and C − 1)."""
    from protocol import row_pieces

    why, entry = SHAPES[index]
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    for output in range(len(entry.out_shapes)):
        slot = _first_slot(rules, skeleton, output)
        assert slot == rules_of(parsed, output), (why, output)
        if slot != 5:
            continue
        size = int(np.prod(entry.out_shapes[output][1]))
        width = entry.inputs[0].shape[-1]
        for element in sorted({0, size - 1}):
            for hints in (([0], [width - 1]) if entry.kernel == "cross_entropy" and output == 1 else ([],)):
                rule, params, reads, _ = rules["RowPieceRules"].plan(skeleton, output, element, hints).call()
                mirror = row_pieces.row_piece_rule(parsed, output, element, tuple(hints))
                assert (rule, list(params)) == (mirror[0], list(mirror[1])), (why, output, element)
                assert [(r[0], r[7], r[8]) for r in reads] == row_pieces.row_piece_reads(parsed, output, element, tuple(hints))


GRADS = [0.1, 1e-50, 1e39, -0.0, float("nan"), float("inf"), 3.4028235677973366e38, 1.401298464324817e-45 * 0.5,
         1.401298464324817e-45 * 1.5, 2.0 ** -149 * 0.75, np.float32(1e-45), np.float32(3.0e38)]


@pytest.mark.parametrize("grad", GRADS, ids=[repr(g) for g in GRADS])
def test_backward_grad_bits_agree_with_the_engine(rules, grad) -> None:  # noqa: F811
    """dz's grad parameter (binary64 rounded, or binary32) is the engine's np.float32(grad) bits, in the contract's
    plan and the mirror's."""
    from protocol import row_pieces

    entry = _entry("cross_entropy_backward", (3, 40), grad)
    skeleton = entry.skeleton_bytes()
    parsed = parse_skeleton(skeleton)
    if rules_of(parsed, 0) is None:
        pytest.skip("not checkable")
    _, params, _, _ = rules["RowPieceRules"].plan(skeleton, 0, 5, []).call()
    engine = int(np.array([np.float32(grad)], dtype=np.float32).view(np.uint32)[0])
    mirror = row_pieces.row_piece_rule(parsed, 0, 5)[1]
    assert params[3] == mirror[3], (grad, params[3], mirror[3])
    if not np.isnan(np.float32(grad)):
        assert params[3] == engine, (grad, hex(params[3]), hex(engine))
