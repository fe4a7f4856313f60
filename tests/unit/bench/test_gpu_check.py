"""bench/gpu_check.py: a CPU-only machine gets a clear "no CUDA device" exit; the report goes under
"gpu" in latest.json without touching the CPU figures (and `make bench` keeps it); the script's
identity and timing path runs end to end (here CPU against CPU, a smoke test of the code only)."""

from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check


def test_no_cuda_device_exits_clearly(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--no-write"]) == gpu_check.NO_DEVICE_EXIT
    assert "no CUDA device" in capsys.readouterr().err


def test_report_is_written_under_gpu_and_kept_by_bench(tmp_path, monkeypatch) -> None:
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"figures": {"gas_post": {"value": 1}}, "errors": {}}))
    gpu_check.write({"device": "test", "figures": {"f": {"value": 2}}}, path)
    data = json.loads(path.read_text())
    assert data["figures"] == {"gas_post": {"value": 1}} and data["gpu"]["device"] == "test"

    from bench import run_all

    monkeypatch.setattr(run_all, "RESULTS", path)
    monkeypatch.setattr(run_all, "PERFORMANCE_DOC", tmp_path / "performance.md")
    monkeypatch.setattr(run_all, "run", lambda modules: {"measured_at": "now", "host": {"machine": "m", "python": "3", "cpus": 1},
                                                          "figures": {}, "errors": {}})  # fmt: skip
    run_all.main([])
    assert json.loads(path.read_text())["gpu"]["device"] == "test"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU host run `python -m bench.gpu_check` itself")
def test_check_runs_end_to_end_on_cpu() -> None:
    report, identical = gpu_check.check(12, 2, 2, device="cpu")
    assert identical and report["identical"]
    figures = report["figures"]
    assert {f"gpu_portable_{n}_identical_to_cpu" for n in ("mlp", "cnn", "gpt")} <= set(figures)
    assert all(figures[f"gpu_step_ms_portable_{n}"]["value"] > 0 for n in ("mlp", "cnn", "gpt"))
