"""The engine's fast paths change no bits: grouped (foreach) optimizer and clipping against the
per-tensor loops, background checkpoint commits against the committed trace, and pinned result
roots recorded before any of these paths existed."""

from __future__ import annotations

import struct
import threading
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import tensors_io
from engine.api import run_spec
from engine.determinism import configure, environment_fingerprint
from engine.presets import digits_cnn_spec, tiny_gpt_spec
from engine.training import Job, Optimizer, clip_gradients
from protocol.artifacts import LocalStore
from protocol.errors import ArtifactError, RunStoppedError
from protocol.hashing import sha256_hex
from protocol.spec import canonical_json, load_spec

from .helpers import examples, tiny_gpt

# Result roots computed by the engine before the grouped optimizer, grouped clipping and background
# commits were written (commit 6fce841), and the same runs on a second CPU generation. MKL picks matmul
# kernels by CPU generation, so the same torch build and ATen capability give different bits on different
# Xeons (which is why environment classes carry `cpu_features`). A root must be one of the known ones; a
# CPU generation we have not pinned skips, one we have pinned must match its own root.
PINNED_ENV = {"torch": "2.13.0+cpu", "machine": "x86_64", "cpu_capability": "AVX512", "cpu_threads": 1}
PINNED_ROOTS = {
    "tiny-gpt 40 steps / 10": (
        lambda: tiny_gpt_spec(steps=40, segment_steps=10),
        {
            None: ("0x34cf89c8c354d1b0103a6079a544639fc89fe160041167f821d13a8fba8dd07a",
                   "0x1c1523c9f70ad91e9d3400f95ee98f6880410c4883f1dbac3ff4beaad60b5c80"),
            "9e8fdfa210cc209b": ("0x0bed61b9bfc3ea5b14836e033912cd105ca04dd43e4332704073d4ba0983c2ab",
                                 "0x26b55d49aa50a6314fe45128cc8dc416fa3f9aaba2387b0c364bb46c1265dc29"),
        },
    ),
    "digits-cnn 40 steps / 20 (sgd nesterov)": (
        lambda: digits_cnn_spec(steps=40, segment_steps=20),
        {
            None: ("0x38a80cfcf68db872c5abf6f4d2e9355e0756fc2372e6076c3914e9cc77da400e", None),
            "9e8fdfa210cc209b": ("0x340475a4635bdfa64d7d300f06dd75d3469e02f5d4cbce16e75d24bec82bd20f",
                                 "0x1d30a2ad2065a68d450a16bdfd7d9470385dc512f6afbf044686d314bf01f9d7"),
        },
    ),
}


def _pinned_env() -> dict | None:
    configure("cpu", 1)
    found = environment_fingerprint("cpu", 1)
    return found if all(found.get(key) == value for key, value in PINNED_ENV.items()) else None


@pytest.mark.parametrize("name", sorted(PINNED_ROOTS))
def test_result_root_is_pinned(name: str, tmp_path) -> None:
    found = _pinned_env()
    if found is None:
        pytest.skip(f"roots were pinned on {PINNED_ENV}")
    make_spec, pins = PINNED_ROOTS[name]
    result = run_spec(make_spec(), LocalStore(tmp_path), device="cpu")
    known = {pin[0]: pin[1] for pin in pins.values()}
    own = pins.get(found["cpu_features"])
    if own is None and result.result_root not in known:
        pytest.skip(f"CPU generation {found['cpu_features']} is not pinned (root {result.result_root})")
    expected_root, expected_output = own if own is not None else (result.result_root, known[result.result_root])
    assert result.result_root == expected_root
    if expected_output is not None:
        assert result.output_hash == expected_output


def _params(shapes: list[tuple[int, ...]], seed: int) -> dict[str, torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return {f"p{i}": torch.nn.Parameter(torch.randn(shape, generator=gen)) for i, shape in enumerate(shapes)}


shapes = st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple), min_size=1, max_size=5)
optimizers = st.one_of(
    st.fixed_dictionaries({"name": st.just("adamw"), "lr": st.floats(1e-4, 0.5), "weight_decay": st.sampled_from([0.0, 0.01, 0.3]),
                           "beta1": st.floats(0.5, 0.99), "beta2": st.floats(0.9, 0.9999), "eps": st.sampled_from([1e-8, 1e-3])}),
    st.fixed_dictionaries({"name": st.just("sgd"), "lr": st.floats(1e-4, 0.5), "weight_decay": st.sampled_from([0.0, 0.01]),
                           "momentum": st.sampled_from([0.0, 0.5, 0.9]), "nesterov": st.booleans()}),
)  # fmt: skip


@settings(max_examples=examples(25), deadline=None)
@given(shapes=shapes, optimizer=optimizers, seed=st.integers(0, 2**16), steps=st.integers(1, 4))
def test_grouped_optimizer_matches_the_loop_bit_for_bit(shapes, optimizer, seed, steps) -> None:
    if optimizer["name"] == "sgd" and optimizer["nesterov"] and optimizer["momentum"] == 0.0:
        optimizer = {**optimizer, "nesterov": False}  # the spec refuses Nesterov without momentum
    spec = tiny_gpt(optimizer=optimizer)
    loop, grouped = _params(shapes, seed), _params(shapes, seed)
    loop_opt, grouped_opt = Optimizer(spec, loop), Optimizer(spec, grouped)
    assert grouped_opt.grouped  # CPU parameters take the foreach path
    loop_opt.grouped = False
    gen = torch.Generator().manual_seed(seed + 1)
    for step in range(1, steps + 1):
        grads = {name: torch.randn(p.shape, generator=gen) for name, p in loop.items()}
        loop_opt.step(grads, optimizer["lr"] * 0.9**step, step)
        grouped_opt.step(grads, optimizer["lr"] * 0.9**step, step)
    for name in loop:
        assert torch.equal(loop[name], grouped[name]), name
    assert set(loop_opt.state) == set(grouped_opt.state)
    for key in loop_opt.state:
        assert torch.equal(loop_opt.state[key], grouped_opt.state[key]), key


@settings(max_examples=examples(40), deadline=None)
@given(shapes=shapes, seed=st.integers(0, 2**16), scale=st.sampled_from([1e-4, 1.0, 30.0]),
       max_norm=st.sampled_from([0.1, 1.0, 5.0]))  # fmt: skip
def test_grouped_clipping_matches_the_plain_sum_bit_for_bit(shapes, seed, scale, max_norm) -> None:
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(shape, generator=gen) * scale for shape in shapes]
    plain = clip_gradients(grads, max_norm, grouped=False)
    grouped = clip_gradients(grads, max_norm, grouped=True)
    assert len(plain) == len(grouped) == len(grads)
    for a, b in zip(plain, grouped):
        assert torch.equal(a, b)


def test_spec_with_sgd_weight_decay_trains_identically_with_either_optimizer_path(tmp_path, monkeypatch) -> None:
    spec = load_spec({**tiny_gpt().model_dump(mode="json"),
                      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}})
    grouped = run_spec(spec, LocalStore(tmp_path / "a"))
    original_init = Optimizer.__init__

    def loop_only(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.grouped = False

    monkeypatch.setattr(Optimizer, "__init__", loop_only)
    looped = run_spec(spec, LocalStore(tmp_path / "b"))
    assert grouped.state_hashes == looped.state_hashes and grouped.output_hash == looped.output_hash


class _SlowStore(LocalStore):
    """A local store whose puts take `delay` seconds (a slow disk), optionally failing to store
    checkpoint `fail_at` (found by the boundary in its header, as escaped JSON in the metadata)."""

    def __init__(self, root, delay: float, fail_at: int | None = None):
        super().__init__(root)
        self.delay, self.fail_at = delay, fail_at
        self.threads: set[str] = set()

    def put(self, data: bytes) -> str:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and b'\\"boundary\\":%d,' % self.fail_at in data[:4096]:
            raise ArtifactError("disk full (test)")
        time.sleep(self.delay)
        return super().put(data)


def test_background_commits_store_the_same_trace_in_order(tmp_path) -> None:
    spec = tiny_gpt(steps=8, segment_steps=2)
    fresh = run_spec(spec, LocalStore(tmp_path / "fast"), device="cpu")
    slow = _SlowStore(tmp_path / "slow", delay=0.05)  # slower than a 2-step segment: training overtakes
    seen: list[tuple[int, str, str]] = []

    def on_segment(index: int, digest: str) -> None:
        assert slow.has(digest)  # reported only once stored
        seen.append((index, digest, threading.current_thread().name))

    result = run_spec(spec, slow, device="cpu", on_segment=on_segment)
    assert result.state_hashes == fresh.state_hashes and result.result_root == fresh.result_root
    assert [(i, h) for i, h, _ in seen] == list(enumerate(fresh.state_hashes))
    assert {name for _, _, name in seen} == {threading.main_thread().name}
    assert any(name.startswith("tessera-commit") for name in slow.threads)
    for digest in result.state_hashes:  # the stored bytes are the snapshot taken at the boundary
        assert sha256_hex(slow.get(digest)) == digest
    assert result.metrics["commit_background_s"] >= 0.05 * (spec.num_segments + 1) * 0.9


def test_a_failed_background_put_fails_the_run_and_stops_the_thread(tmp_path) -> None:
    store = _SlowStore(tmp_path, delay=0.0, fail_at=2)
    reported: list[int] = []
    with pytest.raises(ArtifactError, match="disk full"):
        run_spec(tiny_gpt(steps=8, segment_steps=2), store, device="cpu", on_segment=lambda i, h: reported.append(i))
    assert reported == [0, 1]
    assert not [t for t in threading.enumerate() if t.name.startswith("tessera-commit")]


def test_a_stopped_run_has_reported_every_stored_checkpoint_before_it(tmp_path) -> None:
    store = LocalStore(tmp_path)
    reported: list[tuple[int, str]] = []
    polls = []

    def stop_in_segment_three() -> bool:
        polls.append(1)
        return len(polls) > 5

    with pytest.raises(RunStoppedError):
        run_spec(tiny_gpt(steps=8, segment_steps=2), store, device="cpu",
                 on_segment=lambda i, h: reported.append((i, h)), should_stop=stop_in_segment_three)
    assert [i for i, _ in reported] == [0, 1, 2]
    assert all(store.has(h) for _, h in reported)


def _reference_encode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """docs/spec-format.md's canonical safetensors written out the slow, obvious way."""
    tags = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}  # fmt: skip
    header: dict = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous()
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"data_offsets": [offset, offset + len(blob)], "dtype": tags[tensor.dtype], "shape": list(tensor.shape)}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    raw = canonical_json(header)
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


@st.composite
def _tensor_dicts(draw):
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool]
    names = draw(st.lists(st.text("abc/._", min_size=1, max_size=6), max_size=5, unique=True))
    out = {}
    for name in names:
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        tensor = (torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**20)))) * 50).to(
            draw(st.sampled_from(dtypes)))
        if tensor.dim() >= 2 and draw(st.booleans()):
            tensor = tensor.transpose(0, 1)  # a non-contiguous view
        if draw(st.booleans()) and tensor.is_floating_point():
            tensor = torch.nn.Parameter(tensor.contiguous())  # requires grad, as parameters do
        out[name] = tensor
    return out


@settings(max_examples=examples(60), deadline=None)
@given(tensors=_tensor_dicts(), metadata=st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=2))
def test_fast_encoder_writes_the_reference_bytes(tensors, metadata) -> None:
    assert tensors_io.encode(tensors, metadata) == _reference_encode(tensors, metadata)


def test_checkpoint_bytes_follow_in_place_updates(tmp_path) -> None:
    """The checkpoint's cached tensor table must see training and restores (they update in place)."""
    spec = tiny_gpt(steps=4, segment_steps=2)
    job = Job(spec, None, "cpu")
    first = job.checkpoint(0)
    job.train(2)
    second = job.checkpoint(1)
    assert second != first
    job.restore(first, 0)
    assert job.checkpoint(0) == first
    job.train(2)
    assert job.checkpoint(1) == second
