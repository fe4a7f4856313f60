"""Which calls of a portable job's step have no on-chain rule (`engine.api.uncovered_calls`): where a refereed
game over the job can still be steered to the arbiter (docs/disputes.md, "The game's own gaps")."""

from __future__ import annotations

from engine.api import uncovered_calls
from engine.presets import tiny_gpt_spec

from .test_step_record import cnn, deep_gpt, gpt, llama, mlp, overlapping_pool_cnn, wide_logits_mlp, wide_pool_cnn


def test_every_call_of_the_small_mlp_and_gpt_steps_has_an_on_chain_rule() -> None:
    """The MLP with clipping and the one-block GPT with dropout: every output of every entry (the batch
    entries, the losses, clipping, the optimizer's scalars, the folds in pieces) is decided by a rules
    contract, and the states fit the link, so neither party can steer a game over them to the arbiter."""
    assert uncovered_calls(mlp(grad_clip_norm=0.5), None) == []
    assert uncovered_calls(gpt(dropout=0.1), None) == []


def test_every_call_of_a_deep_gpt_with_clipping_has_an_on_chain_rule() -> None:
    """A GPT of six blocks clips 78 gradients: one clip_scale over them all would list more references than the
    rules read (4,096 bytes: it escalated), so the recorder writes the fold as clip_sum groups and clip_factor,
    each decided by ScalarRules (tests/unit/contracts/test_clip_groups.py)."""
    assert uncovered_calls(deep_gpt(), None) == []


def test_every_call_of_the_llama_step_and_of_a_k_300_linear_has_an_on_chain_rule() -> None:
    """The Llama-style decoder (its rotations and their backwards: DataRules; the grouped-query backward's
    head folds and the SwiGLU down projection over K = 12: FoldRules) and the MLP whose head reads a
    300-wide hidden layer (a linear over K = 300, in pieces: FoldRules) have no call left to the arbiter."""
    assert uncovered_calls(llama(), None) == []
    assert uncovered_calls(mlp(hidden=300), None) == []


def test_every_call_of_a_language_model_step_has_an_on_chain_rule(tmp_path) -> None:
    """A portable LM job (the tiny Llama of the fine-tuning tests, causal-LM loss over padded rows): its loss and
    backward, whose counted rows change from batch to batch, are decided by RowRules (the mean over the proven
    count, the count, their running values) and RowPieceRules (nll, dz and the statistics); at 320 rows too (the
    mean and the count in pieces). Before them every portable LM job could be steered to the arbiter."""
    from protocol.artifacts import LocalStore
    from tests.unit.finetune.lm_helpers import lm_dataset, lm_spec

    store = LocalStore(tmp_path)
    dataset = lm_dataset(store, rows=48, test=False)
    for batch in (4, 40):
        assert uncovered_calls(lm_spec(dataset, arithmetic="portable/1", batch_size=batch), store) == []


def test_the_calls_without_a_rule_are_listed() -> None:
    """The tiny-GPT preset has none left: its cross-entropy mean and embedding gradient, folds over its 512
    positions, are decided in pieces by RowRules (their running values are outputs of their entries, each
    with a rule too: tests/unit/contracts/test_loss_pieces.py). Nor has a GPT 128 wide: its layer norms' rows
    are over the caps (layer_norm 104, its backward's dx 64) and decided in pieces (RowPieceRules: every final
    output and the statistics, tests/unit/portable/test_row_pieces.py; FoldRules still the backwards' dw and
    db). Nor has an MLP with 40 logits: its cross-entropy rows are over RowRules' cap (32), so its nll and the
    backward are decided in pieces (RowPieceRules, with softmax's statistics of the logits:
    tests/unit/portable/test_cross_entropy_pieces.py), the mean (a fold over nll) by RowRules as before. Nor
    has the digits CNN: its convolution is recorded as im2col, linear's folds and col2im (DataRules and
    FoldRules: tests/unit/contracts/test_conv_rules.py), its max pooling and the backward are DataRules'
    (test_pool_rules.py), its SGD with Nesterov momentum ScalarRules' (test_sgd_rules.py); nor a CNN pooling
    overlapping 3×3 windows by 2 (the backward in pieces of one window), nor one pooling 4×4 windows (the forward in
    pieces of 2 rows). A CNN pooling 4×4 windows by 1 has: its max_pool_backward (overlapping windows over 4 rows,
    more than MAX_POOL_OVERLAP). Nor has a CNN whose 7×7 convolution makes col2im fold over 7 rows of windows (in
    pieces of 2 rows: tests/unit/contracts/test_col2im_pieces.py); one whose 25×25 convolution makes it fold over 25
    rows of 25 has: its col2im (a piece holds at most 20 windows: docs/referee.md)."""
    from engine.presets import digits_cnn_spec

    assert uncovered_calls(tiny_gpt_spec(arithmetic="portable/1"), None) == []
    assert uncovered_calls(gpt(dropout=0.0, width=128), None) == []
    assert uncovered_calls(wide_logits_mlp(), None) == []
    assert uncovered_calls(cnn(), None) == [] and uncovered_calls(digits_cnn_spec(arithmetic="portable/1"), None) == []
    assert uncovered_calls(overlapping_pool_cnn(), None) == []
    pool_4x4 = digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=4, model={"input_shape": [64], "layers": [
        {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 4}, {"type": "flatten"}, {"type": "linear", "in_features": 8, "out_features": 10}]})  # fmt: skip
    assert uncovered_calls(pool_4x4, None) == []
    uncovered = {(kernel, output) for _, kernel, output in uncovered_calls(wide_pool_cnn(), None)}
    assert uncovered == {("max_pool_backward", 0), ("max_pool_backward", 1)}
    def wide_window(kernel: int) -> dict:
        return digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=4, model={"input_shape": [64], "layers": [
            {"type": "reshape", "shape": [1, 8, 8]}, {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": kernel,
                                                     "padding": kernel // 2},
            {"type": "flatten"}, {"type": "linear", "in_features": 128, "out_features": 10}]})  # fmt: skip

    assert uncovered_calls(wide_window(7), None) == []
    assert {(kernel, output) for _, kernel, output in uncovered_calls(wide_window(25), None)} == {("col2im", 0)}
    assert uncovered_calls(mlp(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.01}), None) == []
