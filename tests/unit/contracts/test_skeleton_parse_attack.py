"""Skeletons no recorder writes, which the rules contracts took (an attacker review, 2026-12-07): each test
asserts the safe behaviour.

`host_rules._parse` (every rules contract parses with it) checked only that the fields it read fit the bytes
(`at <= len(raw)`), and read a shape of more than MAX_NDIM axes as dtype 0 with its first eight dims. So RowRules
planned rms_norm's y for the widest skeleton at its cap followed by 3,754 bytes of 0xff (1,074,827 gas to prove:
calldata, keccak and the copy into the rules call) and for one whose x̂ and rstd claimed 255 axes each (1,034,894:
rms_norm's rule reads neither dtype when y is disputed). The Python mirror (`referee_kit.parse_skeleton`) refused
both. Now the contracts refuse them too: a skeleton's fields must end exactly at its last byte, and a shape of
more axes than a tensor commitment holds makes the parse read past the skeleton. (Such a skeleton could only ever
burden the party who recorded it: both parties' records share every skeleton through the state header's skeleton
root, docs/referee.md section 2.)
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import personas.row_worst_case as rw
from personas.widest_skeleton import widest
from protocol.referee_kit import ROW_CAPS, ROW_RULES, parse_skeleton, rules_of

from .test_row_piece_games import stack  # noqa: F401 (the deployed rules contracts, shared)

ROLES = ("rules", "fold_rules", "row_rules", "data_rules", "scalar_rules", "row_piece_rules")


def _widest_rms_norm() -> Any:
    cap = ROW_CAPS["rms_norm"]
    return widest(rw.row_entry("rms_norm", cap, rw.rows_of("rms_norm", cap)), 0)


def _refused_everywhere(stack: dict, skeleton: bytes, output: int = 0) -> None:  # noqa: F811
    """Every rules contract's output_of reverts on `skeleton` (RefereeGame's dispute_output with it reverts)."""
    for role in ROLES:
        with pytest.raises(Exception):  # a revert: "host_rules: malformed skeleton" or a read out of bounds
            stack[role].functions.output_of(skeleton, output).call()


def test_the_untampered_skeleton_is_row_rules_to_decide(stack) -> None:  # noqa: F811
    """The control: the widest rms_norm skeleton at the cap, as the tampered ones start from."""
    skeleton = _widest_rms_norm().skeleton_bytes()
    assert rules_of(parse_skeleton(skeleton), 0) == ROW_RULES
    assert stack["row_rules"].functions.output_of(skeleton, 0).call()[1] is True


@settings(max_examples=12, deadline=None)
@given(extra=st.binary(min_size=1, max_size=64), long=st.booleans())
def test_trailing_bytes_are_refused_as_the_mirror_refuses_them(stack, extra: bytes, long: bool) -> None:  # noqa: F811
    """Any bytes after the last output shape (up to prove_element's 4,096): refused by every rules contract and
    by the mirror."""
    skeleton = _widest_rms_norm().skeleton_bytes()
    suffix = (extra * (4_096 // len(extra) + 1))[: 4_096 - len(skeleton)] if long else extra
    with pytest.raises(ValueError, match="trailing bytes"):
        parse_skeleton(skeleton + suffix)
    _refused_everywhere(stack, skeleton + suffix)


@settings(max_examples=12, deadline=None)
@given(ndim=st.integers(min_value=9, max_value=255), which=st.sampled_from([1, 2]), filler=st.integers(0, 2**32 - 1))
def test_a_shape_of_more_than_eight_axes_is_refused_as_the_mirror_refuses_it(stack, ndim: int, which: int,  # noqa: F811
                                                                             filler: int) -> None:  # fmt: skip
    """x̂ (output 1) or rstd (output 2) claiming `ndim` axes (its eight dims, then `filler`s), y disputed: refused
    by every rules contract and by the mirror."""
    entry = _widest_rms_norm()
    skeleton = entry.skeleton_bytes()
    fields = [struct.pack(">BB8I", code, 8, *shape) for code, shape in entry.out_shapes]
    tail = b"".join(fields[1:])
    assert skeleton.endswith(tail) and all(len(shape) == 8 for _, shape in entry.out_shapes)
    code, shape = entry.out_shapes[which]
    fields[which] = struct.pack(">BB8I", code, ndim, *shape) + struct.pack(f">{ndim - 8}I", *[filler] * (ndim - 8))
    tampered = skeleton[: len(skeleton) - len(tail)] + b"".join(fields[1:])
    with pytest.raises(ValueError):
        parse_skeleton(tampered)
    _refused_everywhere(stack, tampered)
