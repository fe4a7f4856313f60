"""SGD's update decided on chain (ScalarRules, contracts/lib/scalar_rules.vy `_sgd_checkable`, `_plan`; the element rule
SGD of contracts/lib/element_rules.vy): on recorded steps of the digits CNN (Nesterov momentum), an MLP with plain SGD
and one with momentum and weight decay, every `sgd` entry's outputs are checked by the contract the Python mirror
names (`rules_of`: ScalarRules, RefereeGame's fifth slot, after the four that check nothing of it), a sample of each
output's elements is planned as the mirror reads (`scalar_rules.scalar_reads`), and the element rule over the
recorded values the plan reads gives the recorded bits. Malformed sgd entries are checkable nowhere and never make
a rules contract revert."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from engine.portable import record
from protocol import tensor_commit as tc
from protocol.referee_kit import SCALAR_RULES, parse_skeleton, rules_of
from protocol.scalar_rules import scalar_reads

from .test_referee_game import _deploy
from .test_row_piece_rules import rules  # noqa: F401 (HostRules, FoldRules, RowRules, RowPieceRules, element rules)

SLOTS = ((0, "HostRules"), (1, "FoldRules"), (2, "RowRules"), (3, "DataRules"), (4, "ScalarRules"), (5, "RowPieceRules"))
STATE, OUTPUT, FLOAT32, INT64 = 1, 3, 1, 2


@pytest.fixture(scope="module")
def all_rules(w3: Any, rules: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    return {**rules, **{name: _deploy(w3, f"contracts/{name}.vy").functions for name in ("DataRules", "ScalarRules")}}


def _spec(name: str) -> Any:
    from tests.unit.portable.test_step_record import cnn, mlp

    if name == "cnn":
        return cnn()
    if name == "plain":
        return mlp(optimizer={"name": "sgd", "lr": 0.1})
    return mlp(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.01})


@pytest.fixture(scope="module")
def sgd_records() -> dict[str, record.StepRecord]:
    from engine.api import record_first_steps

    return {name: record_first_steps(_spec(name), None, 2)[1][1] for name in ("cnn", "plain", "momentum")}  # step 1: a buffer


def _bits(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def _first_slot(contracts: dict[str, Any], skeleton: bytes, output: int) -> int | None:
    for slot, name in SLOTS:
        if contracts[name].output_of(skeleton, output).call()[1]:
            return slot
    return None


@pytest.mark.parametrize("name", ["cnn", "plain", "momentum"])
def test_every_sgd_update_is_decided_as_recorded(all_rules, sgd_records, name: str) -> None:
    rec = sgd_records[name]
    entries = [e for e in rec.entries if e.kernel == "sgd"]
    assert entries and all(len(e.inputs) == (3 if name == "plain" else 4) for e in entries)
    for entry in entries:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output, (_, shape) in enumerate(entry.out_shapes):
            assert _first_slot(all_rules, skeleton, output) == rules_of(parsed, output) == SCALAR_RULES, (name, entry.index, output)
            size = int(np.prod(shape))
            for element in sorted({0, 1, size // 2, size - 1} & set(range(size))):
                rule, params, reads, zipped = all_rules["ScalarRules"].plan(skeleton, output, element, []).call()
                assert not zipped and [(r[0], r[7], r[8]) for r in reads] == scalar_reads(parsed, output, element)
                values = [v for r in reads for v in _bits(rec.value_of(entry.inputs[r[0]]).reshape(-1)[r[7] : r[7] + r[8]])]
                got = int(all_rules["element"].element(rule, params, values).call())
                assert got == _bits(entry.outputs[output])[element], (name, entry.index, output, element)


def _entry(buffer: bool = True, nesterov: Any = True, size: int = 12) -> record.Entry:
    refs = [record.Ref(STATE, 0, 0, FLOAT32, (3, 4)), record.Ref(OUTPUT, 7, 0, FLOAT32, (3, 4))]
    refs += [record.Ref(STATE, 1, 0, FLOAT32, (3, 4))] if buffer else []
    refs += [record.Ref(OUTPUT, 5, 0, FLOAT32, (3,))]
    args = tuple(("input", k) for k in range(len(refs))) + (nesterov,)
    outs = [(1, (3, 4))] * (2 if buffer else 1)
    return record.Entry(9, "sgd", args, tuple(refs), tuple(outs), (tc.ZERO,) * len(outs))


def _malformed() -> list[tuple[str, record.Entry]]:
    good = _entry()

    def with_ref(k: int, **change: Any) -> record.Entry:
        return dataclasses.replace(good, inputs=tuple(dataclasses.replace(r, **change) if i == k else r for i, r in enumerate(good.inputs)))

    def with_outs(outs: list[tuple[int, tuple[int, ...]]]) -> record.Entry:
        return dataclasses.replace(good, out_shapes=tuple(outs), out_roots=(tc.ZERO,) * len(outs))

    return [("four scalars", with_ref(3, shape=(4,))), ("g of another size", with_ref(1, shape=(3, 5))),
            ("the buffer int64", with_ref(2, dtype=INT64)), ("a constant p", with_ref(0, kind=5)),
            ("no buffer output", with_outs([(1, (3, 4))])), ("an output more", with_outs([(1, (3, 4))] * 3)),
            ("p' int64", with_outs([(2, (3, 4)), (1, (3, 4))])), ("nesterov an integer", _entry(nesterov=1)),
            ("nesterov missing", dataclasses.replace(good, args=good.args[:4])),
            ("arguments out of order", dataclasses.replace(good, args=(good.args[1], good.args[0], *good.args[2:])))]  # fmt: skip


def assert_checkable_only_when_good(contracts: dict[str, Any], cases: list[tuple[str, record.Entry]], slot: int) -> None:
    """For every case (`why` starting "good" for the well-formed ones): no rules contract reverts on any output (one
    past the last too), the contract RefereeGame asks first is the mirror's (`rules_of`), every output of a good
    case and none of a malformed one is checked by slot `slot`, whose plan of a malformed one's element 0 reverts."""
    name = dict(SLOTS)[slot]
    prefix = {"ScalarRules": "scalar_rules", "DataRules": "data_rules"}[name]
    for why, entry in cases:
        skeleton = entry.skeleton_bytes()
        parsed = parse_skeleton(skeleton)
        for output in range(len(entry.out_shapes) + 1):
            first = _first_slot(contracts, skeleton, output)  # (no contract reverts)
            if output < len(entry.out_shapes):
                assert first == rules_of(parsed, output), (why, output)
                assert (first == slot) == why.startswith("good"), (why, output)
        if not why.startswith("good"):
            with pytest.raises(Exception, match=f"{prefix}: not a checkable element"):
                contracts[name].plan(skeleton, 0, 0, []).call()


def test_malformed_sgd_entries_are_not_checkable_and_never_revert(all_rules) -> None:
    good = [("good", _entry()), ("good, no momentum", _entry(buffer=False, nesterov=False))]
    assert_checkable_only_when_good(all_rules, [*_malformed(), *good], SCALAR_RULES)
