"""The row caps against rank-8 skeletons (an attacker review, 2026-12-07): the caps were measured with rank-2
skeletons, and RowRules accepts the same rms_norm row with x and its x-shaped outputs of rank 8 (leading axes of
one, MAX_NDIM = 8), whose longer skeleton the defender's prove_element also pays for (about 19,000 gas). With
the persona's dearest adversarial scaling the dearest element at the cap stays under the 1,000,000-gas target
(issue 15): 986,208 measured (1,005,072 before ElementReferee's raw_call)."""

from __future__ import annotations

from typing import Any

import personas.row_worst_case as rw
from engine.portable import record
from protocol.referee_kit import ROW_CAPS

from .test_row_rules import PROVE_ELEMENT_TARGET, chain, row_contracts  # noqa: F401 (fixtures)

ROW_ENTRY = rw.row_entry


def rank8_row_entry(kernel: str, width: int, rows: int) -> record.Entry:
    """`rw.row_entry` with every rank-2 shape (x and the x-shaped outputs) padded to rank 8 by leading ones."""
    entry = ROW_ENTRY(kernel, width, rows)

    def up(shape: tuple) -> tuple:
        return (1,) * (8 - len(shape)) + tuple(shape) if len(shape) == 2 else tuple(shape)

    refs = tuple(record.Ref(r.kind, r.a, r.b, r.dtype, up(r.shape), r.root) for r in entry.inputs)
    return record.Entry(entry.index, entry.kernel, entry.args, refs, tuple((c, up(s)) for c, s in entry.out_shapes),
                        entry.out_roots)  # fmt: skip


def test_an_rms_norm_row_at_the_cap_with_a_rank8_skeleton_stays_under_a_million_gas(chain, row_contracts, monkeypatch: Any) -> None:  # noqa: F811
    """rms_norm at ROW_CAPS (210), output 0, with ADVERSE_SCALES' scalings (x and w times 2**-64 the dearest):
    under 1,000,000 gas at rank 8 (986,208 measured; 967,444 at rank 2)."""
    monkeypatch.setattr(rw, "row_entry", rank8_row_entry)
    cap = ROW_CAPS["rms_norm"]
    gas = max(rw.largest_row_proof(chain, row_contracts["host"], "rms_norm", cap, 0, game_id=90 + n, seed=0, scale=scale)
              for n, scale in enumerate(rw.ADVERSE_SCALES["rms_norm"]))  # fmt: skip
    assert gas <= PROVE_ELEMENT_TARGET, gas
