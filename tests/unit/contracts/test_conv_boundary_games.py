"""Attack: a col2im element whose covering columns are two adjacent elements of dcols (s = 1, OH = 1, OW = 2, so
s·L − 1 = 1: DataRules plans a read of stride 1, a run) that straddle a 256-element boundary. The honest
defender's kit proved every read of stride 1 by a run, and the smallest aligned run holding elements 511 and 512
is 128 chunks, over RefereeGame's MAX_RUN (32): the honest defender could not prove the element, so a lying
challenger steering the game there won by the defender's timeout. Such a convolution is an ordinary layer: a
3×3 window with padding 1 over a 1×2 map (here 32 channels, reshaped from the digits' 64 features)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import data_rules
from protocol import referee_kit as rk

from .helpers import play_element_game, step_kit
from .test_row_piece_games import chain, stack  # noqa: F401 (fixtures)

ELEMENT = 28 * 2  # dx[0, 28, 0, 0]: covering rows i = 1, columns j = 0, 1 at dcols elements 511 and 512


def _spec() -> Any:
    from engine.presets import digits_cnn_spec

    return digits_cnn_spec(arithmetic="portable/1", steps=2, segment_steps=1, batch_size=2, model={"input_shape": [64], "layers": [
        {"type": "reshape", "shape": [32, 1, 2]}, {"type": "conv2d", "in_channels": 32, "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "in_features": 4, "out_features": 10}]})  # fmt: skip


@pytest.fixture(scope="module")
def narrow_step() -> dict[str, Any]:
    from protocol.spec import load_spec

    from .helpers import first_step

    return first_step(load_spec(_spec()))


@pytest.fixture(scope="module")
def narrow_kit(narrow_step: dict[str, Any], tmp_path_factory: Any) -> Any:
    return step_kit(narrow_step, tmp_path_factory.mktemp("narrow-conv-kit"))


def test_the_kit_proves_a_stride_one_column_across_a_boundary_within_max_run(narrow_step, narrow_kit) -> None:
    entry = next(e for e in narrow_step["rec"].entries if e.kernel == "col2im")
    parsed = rk.parse_skeleton(entry.skeleton_bytes())
    assert data_rules.data_strided_reads(parsed, 0, ELEMENT, ()) == [(0, 511, 2, 1)]
    proofs, _ = narrow_kit.element_proof_args(entry.index, 0, ELEMENT)
    assert all(len(proof[5]) <= 32 for proof in proofs), [len(proof[5]) for proof in proofs]  # MAX_RUN chunks a run


@pytest.mark.parametrize("wrong", [False, True], ids=["honest-defender", "wrong-defender"])
def test_a_col2im_element_across_a_boundary_is_ruled_on_chain(chain, stack, narrow_step, narrow_kit, wrong: bool) -> None:  # noqa: F811
    entry = next(e for e in narrow_step["rec"].entries if e.kernel == "col2im")
    play_element_game(chain, stack, narrow_step, narrow_kit, entry, 0, ELEMENT, wrong, rk.DATA_RULES)
