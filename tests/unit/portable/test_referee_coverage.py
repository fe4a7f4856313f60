"""Which calls of a portable job's step have no on-chain rule (`engine.api.uncovered_calls`): where a refereed
game over the job can still be steered to the arbiter (docs/disputes.md, "The game's own gaps")."""

from __future__ import annotations

from engine.api import initial_checkpoint, record_step, uncovered_calls
from engine.presets import tiny_gpt_spec
from protocol.fold_rules import fold_checkable
from protocol.referee_kit import parse_skeleton

from .test_step_record import gpt, llama, mlp


def test_every_call_of_the_small_mlp_and_gpt_steps_has_an_on_chain_rule() -> None:
    """The MLP with clipping and the one-block GPT with dropout: every output of every entry (the batch
    entries, the losses, clipping, the optimizer's scalars, the folds in pieces) is decided by a rules
    contract, and the states fit the link, so neither party can steer a game over them to the arbiter."""
    assert uncovered_calls(mlp(grad_clip_norm=0.5), None) == []
    assert uncovered_calls(gpt(dropout=0.1), None) == []


def test_every_call_of_the_llama_step_and_of_a_k_300_linear_has_an_on_chain_rule() -> None:
    """The Llama-style decoder (its rotations and their backwards: DataRules; the grouped-query backward's
    head folds and the SwiGLU down projection over K = 12: FoldRules) and the MLP whose head reads a
    300-wide hidden layer (a linear over K = 300, in pieces: FoldRules) have no call left to the arbiter."""
    assert uncovered_calls(llama(), None) == []
    assert uncovered_calls(mlp(hidden=300), None) == []


def test_the_calls_without_a_rule_are_listed() -> None:
    """The tiny-GPT preset has none left: its cross-entropy mean and embedding gradient, folds over its 512
    positions, are decided in pieces by RowRules (their running values are outputs of their entries, each
    with a rule too: tests/unit/contracts/test_loss_pieces.py). A GPT 128 wide has its layer norms' rows over
    the caps (layer_norm 112, its backward's dx 64): they are decided in pieces (RowPieceRules: every final
    output and the statistics, tests/unit/portable/test_row_pieces.py). What is left are the backwards' column
    folds (dw, db and their running values) wherever FoldRules does not decide them next to the statistics."""
    assert uncovered_calls(tiny_gpt_spec(arithmetic="portable/1"), None) == []
    spec = gpt(dropout=0.0, width=128)
    wide = uncovered_calls(spec, None)
    rec, _ = record_step(spec, None, 0, initial_checkpoint(spec, None))
    fold_gaps = {(e.index, e.kernel, o) for e in rec.entries if e.kernel == "layer_norm_backward"
                 for o in range(1, len(e.outputs) - 1) if not fold_checkable(parse_skeleton(e.skeleton_bytes()), o)}  # fmt: skip
    assert set(wide) == fold_gaps
    assert {kernel for _, kernel, _ in wide} <= {"layer_norm_backward"}
