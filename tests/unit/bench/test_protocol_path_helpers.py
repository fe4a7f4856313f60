"""The arithmetic and parsing behind bench/protocol_path.py's figures (the benchmark itself never passes or fails)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.protocol_path import (
    JobTimeline,
    WorkerMarks,
    binding_limit,
    cycle_shares,
    median,
    overhead_ratio,
    parse_log_time,
    parse_worker_log,
    steps_for,
    timeline,
)


def _line(ts: str, **fields: object) -> str:
    return json.dumps({"ts": ts, "level": "INFO", "daemon": "worker", "msg": "x", **fields})


def test_median_of_odd_even_and_empty():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError, match="no samples"):
        median([])


def test_overhead_ratio_subtracts_block_wait_and_rejects_nonsense():
    assert overhead_ratio(12.0, 2.0, 10.0) == pytest.approx(1.0)
    assert overhead_ratio(15.0, 3.0, 10.0) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="positive"):
        overhead_ratio(5.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="block wait"):
        overhead_ratio(5.0, 6.0, 1.0)


@given(st.floats(0.1, 600), st.floats(1, 5_000), st.integers(1, 200))
def test_steps_for_is_whole_segments_near_the_target(train_s, steps_per_s, segment_steps):
    steps = steps_for(train_s, steps_per_s, segment_steps)
    assert steps >= segment_steps and steps % segment_steps == 0
    # Off by at most half a segment from the exact count (or clamped up to one segment).
    assert abs(steps - train_s * steps_per_s) <= segment_steps / 2 + 1e-6 or steps == segment_steps


def test_parse_log_time_is_utc_with_milliseconds():
    assert parse_log_time("1970-01-01T00:01:00.250Z") == pytest.approx(60.25)


def test_parse_worker_log_takes_first_sends_and_run_marks_and_skips_noise():
    text = "\n".join([
        "=== start 0 at 1.0 ===",
        _line("1970-01-01T00:00:10.000Z", event="tx_sent", key="claim:7", job_id=7),
        _line("1970-01-01T00:00:11.000Z", event="tx_sent", key="claim:7", job_id=7),  # a resend: keep the first
        _line("1970-01-01T00:00:12.000Z", event="run_start", job_id=7),
        "Traceback (most recent call last): not json",
        "{broken json",
        _line("1970-01-01T00:00:20.500Z", event="run_end", job_id=7),
        _line("1970-01-01T00:00:21.000Z", event="tx_sent", key="commit:7", job_id=7),
        _line("1970-01-01T00:00:22.000Z", event="tx_sent", key="finalize:7", job_id=7),
        _line("1970-01-01T00:00:23.000Z", event="tx_sent", key="claim:8", job_id=8),
        _line("1970-01-01T00:00:24.000Z", event="job_state", job_id="not-an-int"),
    ])
    marks = parse_worker_log(text)
    assert marks[7] == WorkerMarks(claim_sent=10.0, run_start=12.0, run_end=20.5, commit_sent=21.0)
    assert marks[8] == WorkerMarks(claim_sent=23.0)


def _job(**overrides: float) -> JobTimeline:
    values = dict(job_id=1, post_block=10, claim_block=12, commit_block=20, posted=100.0, claim_sent=101.2,
                  claim_mined=102.0, run_start=102.4, run_end=109.0, commit_sent=109.3, commit_mined=110.0)
    values.update(overrides)
    return JobTimeline(**values)


def test_timeline_splits_protocol_time_into_blocks_and_work():
    job = _job()
    assert job.protocol_s == pytest.approx(10.0)
    assert job.block_wait_s == pytest.approx(2.0 + 0.7)
    assert job.work_s == pytest.approx(7.3)
    assert job.block_wait_s + job.work_s == pytest.approx(job.protocol_s)
    assert job.claim_latency_blocks == 2


def test_timeline_join_names_what_is_missing():
    marks = WorkerMarks(claim_sent=1.0, run_start=2.0, run_end=3.0, commit_sent=None)
    blocks = {"JobPosted": 5, "JobClaimed": 7}
    with pytest.raises(ValueError) as info:
        timeline(3, blocks, {5: 0.5, 7: 1.5}, marks)
    assert "JobCommitted" in str(info.value) and "commit_sent" in str(info.value)
    full = WorkerMarks(claim_sent=1.0, run_start=2.0, run_end=3.0, commit_sent=3.5)
    line = timeline(3, {**blocks, "JobCommitted": 9}, {5: 0.5, 7: 1.5, 9: 4.0}, full)
    assert (line.posted, line.claim_mined, line.commit_mined) == (0.5, 1.5, 4.0)


def test_cycle_shares_and_binding_limit():
    # Three queued jobs: each cycle 10 s = 7 s child + 2 s claim inclusion + 1 s daemon/RPC.
    jobs = [_job(job_id=i, claim_sent=10.0 * i, claim_mined=10.0 * i + 2, run_start=10.0 * i + 3,
                 run_end=10.0 * i + 10) for i in range(3)]
    shares = cycle_shares(jobs)
    assert shares == pytest.approx({"compute": 0.7, "block": 0.2, "daemon_rpc": 0.1})
    assert binding_limit(shares) == "compute"
    assert binding_limit({"compute": 0.2, "block": 0.5, "daemon_rpc": 0.3}) == "block time"
    assert binding_limit({"compute": 0.2, "block": 0.3, "daemon_rpc": 0.5}) == "RPC/daemon polling"
    with pytest.raises(ValueError, match="two queued"):
        cycle_shares(jobs[:1])


def test_figures_have_the_fixed_names_units_and_medians():
    from bench.protocol_path import _figures

    def sample(plain_wall: float, train: float, shift: float) -> tuple[float, JobTimeline, dict]:
        line = _job(posted=100.0 + shift, claim_sent=101.0 + shift, claim_mined=102.0 + shift,
                    run_start=102.5 + shift, run_end=102.5 + shift + plain_wall, commit_sent=103.0 + shift + plain_wall,
                    commit_mined=104.0 + shift + plain_wall)
        return plain_wall, line, {"train_s": train, "compute_s": train * 1.1, "commit_s": train * 0.02,
                                  "optimizer_ctor_s": 0.5}

    samples = {2.0: [sample(5.0, 2.0, 0), sample(5.2, 2.1, 50)], 8.0: [sample(11.0, 8.0, 100), sample(11.4, 8.2, 150)]}
    queued = [_job(job_id=i, claim_sent=10.0 * i, claim_mined=10.0 * i + 2, run_start=10.0 * i + 3,
                   run_end=10.0 * i + 10, commit_sent=10.0 * i + 10.5, commit_mined=10.0 * i + 11) for i in range(4)]
    idle = [_job(post_block=5, claim_block=5 + k) for k in (1, 2, 2, 3, 2)]
    figures = _figures(samples, idle, queued, {"device": "cpu"}, reps=2, long_run=False)
    assert set(figures) == {"overhead_ratio", "overhead_ratio_loop", "overhead_ratio_by_train_s", "block_wait_s",
                            "claim_latency_blocks", "jobs_per_hour_cpu", "jobs_per_hour_cpu_bound"}
    # 8 s job: worker time = plain_wall + 1.0 (0.5 notice + 0.5 commit prep), blocks are not counted.
    assert figures["overhead_ratio"]["value"] == pytest.approx(median([12.0 / 11.0, 12.4 / 11.4]), abs=1e-3)
    assert figures["overhead_ratio_loop"]["value"] == pytest.approx(1.12)
    assert set(figures["overhead_ratio_by_train_s"]["value"]) == {"2.0", "8.1"}
    assert figures["block_wait_s"]["value"] == pytest.approx(3.0)
    assert figures["claim_latency_blocks"]["value"] == 2
    assert figures["jobs_per_hour_cpu"]["value"] == 360  # one commit every 10 s
    assert figures["jobs_per_hour_cpu_bound"]["value"] == "compute"
    assert "~8 s" in figures["overhead_ratio"]["how"] and "TESSERA_BENCH_LONG" in figures["overhead_ratio"]["how"]
    for figure in figures.values():
        assert {"value", "unit", "how"} <= set(figure)
