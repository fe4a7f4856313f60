"""Rows in pieces played on anvil (issue 15; docs/referee.md, "Rows in pieces"): games over a recorded step
whose layer norm and its backward are 128 wide (over HostRules' and RowRules' caps) are decided by
RowPieceRules (RULES slot 5), at a running statistic and at an output element, for the honest party; a
statistic made wrong with every later statistic and output of its row recomputed from it is disputed at the
statistics and caught at the first wrong piece; the dearest piece and output element an honest defender can be
asked cost under 1,000,000 gas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_hash.auto import keccak

from engine.portable import record
from personas.referee_game import DECIDED, PROOF, Match, Side, corrupt, deploy_referee_stack
from protocol import referee_kit as rk
from protocol import referee_model as rm
from protocol import row_pieces
from protocol.deploy import RULES_CONTRACTS

from ..portable.test_row_pieces import _defender_values
from ..portable.test_step_record import wide_norm_mlp
from .helpers import reverted
from .test_loss_pieces import _replaced
from .test_referee_game import ARITY, LEVELS, MOVE, _deploy

PROVE_ELEMENT_TARGET = 1_000_000  # issue 15: the referee's final step
WHOLE_GAME_TARGET = 5_000_000  # issue 15: a whole game, every party's moves


@pytest.fixture(scope="module")
def stack(w3: Any) -> dict[str, Any]:
    """The referee stack with every rules contract the deployment has (RowPieceRules in slot 5)."""
    return deploy_referee_stack(w3, _deploy, RULES_CONTRACTS, ARITY, LEVELS, MOVE)


@pytest.fixture
def chain(w3: Any, stack: dict[str, Any]) -> Any:
    with reverted(w3):
        yield w3


@pytest.fixture(scope="module")
def wide_step() -> dict[str, Any]:
    """Step 0 of `wide_norm_mlp` (a layer norm over 128 values) in segments of one step."""
    from protocol.spec import load_spec

    from .helpers import first_step

    return first_step(load_spec(wide_norm_mlp()))


@pytest.fixture(scope="module")
def wide_kit(wide_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    """The honest party's dispute kit of that step (the statistics among its outputs), written and read back."""
    from engine.referee_kit import kit_from_record

    step = wide_step
    kit = kit_from_record(0, 0, step["roots"], 0, step["rec"], step["before"], step["binding"], step["next_leaves"])
    return rk.load_kit(rk.write_kit(tmp_path_factory.mktemp("row-pieces") / "kit", kit))


def _entry(rec: record.StepRecord, kernel: str) -> record.Entry:
    return next(e for e in rec.entries if e.kernel == kernel)


def _match(chain: Any, stack: dict[str, Any], step: dict[str, Any], target: int, output: int, element: int,
           wrong: bool, defender_rec: record.StepRecord | None = None) -> Match:  # fmt: skip
    rec = step["rec"]
    truth = Side(step["roots"], rec, step["next_leaves"])
    defender = truth
    if wrong:
        later = [keccak(b"wrong state %d" % i) for i in range(1, len(step["roots"]))]
        bad = defender_rec if defender_rec is not None else corrupt(rec, target, element, output)
        defender = Side([step["roots"][0], *later], bad, step["next_leaves"])
    return Match(chain, stack, ARITY, LEVELS, step["before"], step["binding"], defender, truth, honest_challenger=wrong,
                 target=target, target_element=element, output=output)  # fmt: skip


# (kernel, output: None for the statistics, element: None for the middle statistic of row 5's first statistic)
TARGETS = [("layer_norm", None, "S2 of row 5 after its last piece, from S2 after the first and S1's final value"),
           ("layer_norm", 0, "y[5, 127] from x, w, b and the row's final S1 and S2"),
           ("layer_norm_backward", None, "B of row 5 after piece 2, from the one before and dy, w, x̂"),
           ("layer_norm_backward", 0, "dx[5, 127] from x̂, rstd, w, dy and the row's final A and B")]


@pytest.mark.parametrize(("kernel", "output", "why"), TARGETS, ids=[f"{t[0]}-{t[1]}" for t in TARGETS])
@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_row_piece_is_ruled_on_chain(chain, stack, wide_step, wide_kit, wrong: bool, kernel: str, output: int | None,
                                       why: str) -> None:  # fmt: skip
    """A one-bit-wrong statistic or output element is caught by the honest challenger, and a right one upheld
    against a lying challenger, decided on chain by RowPieceRules (not escalated): prove_element under
    1,000,000 gas, the whole game under 5,000,000. The honest defender proves with its dispute kit's arguments
    (read back from disk: the statistics as SELF runs), which are the personas'."""
    entry = _entry(wide_step["rec"], kernel)
    skeleton = rk.parse_skeleton(entry.skeleton_bytes())
    piecing = row_pieces.row_piecing(kernel, [r.shape for r in entry.inputs])
    assert piecing is not None and piecing.width == 128
    statistics = len(entry.outputs) - 1
    if output is None:
        output = statistics
        element = piecing.final(1, 5) if kernel == "layer_norm" else piecing.index(1, 5, 2)
    else:
        element = 5 * 128 + 127
    match = _match(chain, stack, wide_step, entry.index, output, element, wrong)
    match.play(PROOF, "defender")
    game = match.game()
    assert (game["entry"], game["output"], game["rules"]) == (entry.index, output, rk.ROW_PIECE_RULES)
    assert rk.rules_of(skeleton, output) == rk.ROW_PIECE_RULES
    before = match.gas["defender"]
    if wrong:
        match.prove_element()
    else:
        proofs, columns = wide_kit.element_proof_args(entry.index, output, element)
        assert (proofs, columns) == tuple(match.element_proof_args()) and columns == []
        match.send("defender", "host", "prove_element", match.game_id, wide_kit.entries[entry.index].skeleton, proofs, [], [])
    proof_gas = match.gas["defender"] - before
    print(f"{kernel} output {output}: prove_element {proof_gas:,} gas, whole game {sum(match.gas.values()):,}")
    assert match.game()["stage"] == DECIDED and match.ruling() == (True, wrong, False)
    assert proof_gas < PROVE_ELEMENT_TARGET and sum(match.gas.values()) < WHOLE_GAME_TARGET


def test_a_wrong_statistic_with_consistent_later_ones_is_caught_at_its_piece(chain, stack, wide_step) -> None:
    """The defender's A of row 3 after piece 1 (layer_norm_backward) is one bit wrong, and A after every later
    piece of the row and the row's dx are recomputed from it by the referee model (each consistent with what it
    reads): the honest production player disputes the statistics (dx, consistent with them, would be upheld),
    the game reaches the first wrong statistic, and its piece from the agreed A before it rules the defender
    wrong."""
    from worker.referee_player import RefereePlayer

    rec = wide_step["rec"]
    entry = _entry(rec, "layer_norm_backward")
    piecing = row_pieces.row_piecing(entry.kernel, [r.shape for r in entry.inputs])
    assert piecing is not None
    call, statistics = record.referee_call(entry), len(entry.outputs) - 1
    inputs = [rec.input_value(entry, k) for k in range(len(entry.inputs))]
    stats = entry.outputs[statistics].copy()
    wrong_at = piecing.index(0, 3, 1)
    stats.view(np.uint32)[wrong_at] ^= np.uint32(1 << 20)
    for element in range(wrong_at + 1, piecing.final(0, 3) + 1):
        stats.view(np.uint32)[element] = rm.check_element(call, statistics, element,
                                                          _defender_values(call, inputs, stats, statistics, element))
    dx = entry.outputs[0].copy()
    for element in range(3 * 128, 4 * 128):
        dx.reshape(-1).view(np.uint32)[element] = rm.check_element(call, 0, element,
                                                                   _defender_values(call, inputs, stats, 0, element))
    bad = _replaced(rec, entry, {0: dx, statistics: stats})
    theirs = list(bad.entries[entry.index].out_roots)
    assert theirs[0] != entry.out_roots[0] and theirs[statistics] != entry.out_roots[statistics]
    mine = type("Mine", (), {"out_roots": entry.out_roots, "parsed": rk.parse_skeleton(entry.skeleton_bytes())})
    player = type("Player", (), {"kit": type("Kit", (), {"entries": {entry.index: mine}})})
    assert RefereePlayer.choose_output(player, entry.index, theirs) == statistics  # type: ignore[arg-type]
    match = _match(chain, stack, wide_step, entry.index, statistics, wrong_at, True, defender_rec=bad)
    match.play()
    game = match.game()
    assert (game["stage"], game["output"], game["chunk_index"] * 8 + game["element"]) == (DECIDED, statistics, wrong_at)
    assert match.ruling() == (True, True, False)


# the widths whose pieces measured dearest (docs/referee.md, "Rows in pieces"); the statistics and each output
DEAREST = {"softmax": 100, "softmax_backward": 300, "layer_norm": 300, "rms_norm": 600, "layer_norm_backward": 300,
           "rms_norm_backward": 300, "cross_entropy": 100, "cross_entropy_backward": 100}  # fmt: skip


@pytest.mark.parametrize("kernel", [k for k in row_pieces.KERNELS if k not in row_pieces.CAUSAL])  # (test_causal_lm_gas.py)
def test_the_dearest_row_piece_costs_under_a_million_gas(chain, stack, kernel: str) -> None:
    """The dearest prove_element rows in pieces let an honest defender make (`personas.row_worst_case.
    largest_row_piece_proof`: rows over a source as large as a kit holds, the piece placed where each of its
    row segments is two runs, every input under the deepest record path, the statistics a run of the entry's
    own output): a statistic of a full piece past the first, and the last element of each output, decided
    under 1,000,000 gas."""
    from personas.row_worst_case import largest_row_piece_proof

    outputs = (None, *row_pieces.FINAL_OUTPUTS[kernel])
    gas = [largest_row_piece_proof(chain, stack["host"], kernel, DEAREST[kernel], output, game_id=90 + i)
           for i, output in enumerate(outputs)]  # fmt: skip
    print(kernel, gas)
    assert max(gas) < PROVE_ELEMENT_TARGET, (kernel, gas)
