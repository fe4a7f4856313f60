"""Attacks on the recorder's clip groups (commit 4a73de9, `Recorder.clip`): every clip_sum's partials must be the
whole fold's running values cut at its group's pieces (`scalar_rules.clip_pieces`), whatever the gradients' sizes.
The recorder counted each gradient's pieces as `len(clip_pieces([size]))`, which is 1 for an empty gradient where
the fold has none: every later group's partials were then shifted by one piece, so a later group whose skeleton is
checkable (no empty gradient in it) carried running values the rules do not compute and an honest defender lost
any game over them. (Unreachable from a spec today, whose dims are >= 1; defence in depth.)"""

from __future__ import annotations

import numpy as np
import torch

from engine.portable import record
from protocol import referee_model as rm
from protocol import scalar_rules


def _clip(sizes: list[int]) -> tuple[record.Recorder, list[torch.Tensor]]:
    rng = np.random.default_rng(7)
    grads = [torch.tensor(rng.standard_normal(s).astype(np.float32)) for s in sizes]
    rec = record.Recorder(None, {})
    rec.clip(grads, 1.0, np.float32(0.5))
    return rec, grads


def test_group_partials_are_the_whole_fold_cut_at_the_groups_with_an_empty_gradient() -> None:
    sizes = [70] * 80
    sizes[3] = 0  # an empty gradient in the first group
    rec, grads = _clip(sizes)
    sums = [e for e in rec.entries if e.kernel == "clip_sum"]
    assert len(sums) == 3
    whole = scalar_rules.clip_partials([g.numpy().reshape(-1) for g in grads])
    cut, done = [], 0
    for group in scalar_rules.clip_groups(len(grads)):
        count = sum(-(-sizes[k] // scalar_rules.CLIP_PIECE_TERMS) for k in group)
        cut.append(whole[done : done + count])
        done += count
    for entry, want in zip(sums, cut, strict=True):
        assert entry.outputs[0].shape == want.shape and np.array_equal(entry.outputs[0].view(np.uint64), want.view(np.uint64))
    # the second group (32 non-empty gradients after the group before's partials) is each element by the model
    entry = sums[1]
    stored = record.StepRecord(rec.names, rec.entries, {}, rec.state_values, (), {"seed": 0, "step": -1})
    call = record.referee_call(entry)
    for element in (0, 1, entry.outputs[0].size - 1):
        proven = record.proven_values(stored, entry, 0, element)
        bits, _ = rm._check(call, 0, element, proven, None)
        assert bits == int(entry.outputs[0].view(np.uint64)[element])


def test_groups_without_empty_gradients_are_unchanged() -> None:
    """The engine's own bits: every scale entry reads clip_factor's factor, and the partials concatenate to the fold."""
    rec, grads = _clip([70] * 33 + [5, 64, 65])
    kernels = [e.kernel for e in rec.entries]
    assert kernels.count("clip_sum") == 2 and kernels.count("clip_factor") == 1 and kernels.count("scale") == 36
    whole = scalar_rules.clip_partials([g.numpy().reshape(-1) for g in grads])
    sums = [e for e in rec.entries if e.kernel == "clip_sum"]
    assert np.array_equal(np.concatenate([e.outputs[0] for e in sums]).view(np.uint64), whole.view(np.uint64))
