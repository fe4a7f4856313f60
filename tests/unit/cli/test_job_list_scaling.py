"""`job list` costs a bounded number of RPC calls and works through providers that cap eth_getLogs ranges.

Measured with a real counting JSON-RPC proxy in front of anvil (tests/support/rpc_counter.py): the
rehearsal's `job list` did (jobs + 1) full log scans; it must cost the same whatever the chain holds,
`--limit` must cut the scan, and a provider refusing wide ranges must still be answered.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from protocol.errors import ConfigError
from tests.support.rpc_counter import RpcCounter

TOKEN = 10**18


def _post(client: Any, label: str) -> int:
    from protocol.hashing import sha256_hex

    receipt = client.post(2 * TOKEN, TOKEN, sha256_hex(label.encode()), 2, f"https://specs.example/{label}",
                          segment_seconds=5)
    return int(receipt.job_id)


def _listed(tessera: Any, proxy: RpcCounter, *args: str) -> tuple[list[int], Counter[str]]:
    proxy.reset()
    out = tessera("job", "list", "--json", *args, network=proxy.url, json_out=True)
    return [job["job_id"] for job in out["jobs"]], Counter(proxy.counts)


def test_job_list_cost_does_not_grow_with_the_jobs_on_chain(tessera, anvil, fresh_chain, funded, submitter) -> None:
    sub = funded(submitter, tokens=1_000)
    ids = [_post(sub, f"scaling {i}") for i in range(2)]
    with RpcCounter(anvil.rpc_url) as proxy:
        listed, few = _listed(tessera, proxy, "--limit", "2")
        assert listed == ids
        ids += [_post(sub, f"scaling {i}") for i in range(2, 8)]
        listed, many = _listed(tessera, proxy, "--limit", "2")
        assert listed == ids[-2:], "the newest two, oldest first"
        # No scan per job: four times the jobs, the very same calls (one log scan, one record read per row).
        assert many == few
        assert many["eth_getLogs"] == 1 and many["eth_call"] == 2, many

        theirs, _ = _listed(tessera, proxy, "--submitter", submitter.address.lower(), "--limit", "3")
        assert theirs == ids[-3:]
        assert _listed(tessera, proxy, "--submitter", "0x" + "ee" * 20)[0] == []
        opened, _ = _listed(tessera, proxy, "--state", "open", "--state", "claimed", "--limit", "3")
        assert opened == ids[-3:]

        everything, calls = _listed(tessera, proxy)
        assert everything[-8:] == ids
        assert calls["eth_getLogs"] == 1 and calls["eth_call"] == len(everything), calls

        # A small range makes the scan visible: --limit stops it at the newest job's block, and without
        # a limit it costs one call per range of blocks, not one scan per job.
        latest = int(sub.w3.eth.block_number)
        blocks = latest - sub.deployment.start_block + 1
        _, newest_only = _listed(tessera, proxy, "--limit", "1", "--log-range", "4")
        assert newest_only["eth_getLogs"] == 1, newest_only
        _, whole = _listed(tessera, proxy, "--log-range", "4")
        assert whole["eth_getLogs"] == math.ceil(blocks / 4), (whole, blocks)


@pytest.mark.parametrize("wording", [
    "eth_getLogs is limited to a {limit} block range",  # QuickNode-style
    "query exceeds max block range {limit}",  # geth / Erigon-style
    "Log response size exceeded. You can make eth_getLogs requests with up to a {limit} block range",  # Alchemy
])
def test_a_provider_that_caps_log_ranges_still_answers(tessera, anvil, fresh_chain, funded, submitter,
                                                      wording: str) -> None:
    sub = funded(submitter, tokens=1_000)
    ids = [_post(sub, f"capped {i}") for i in range(3)]
    direct = [job["job_id"] for job in tessera("job", "list", "--json", json_out=True)["jobs"]]
    with RpcCounter(anvil.rpc_url, max_log_range=16, log_range_error=wording) as proxy:
        listed, calls = _listed(tessera, proxy)
        assert listed == direct and listed[-3:] == ids
        # Halving from at most 5000 blocks down to <= 16 takes at most 9 refusals, then none.
        assert 1 <= proxy.refused <= 9 and calls["eth_getLogs"] > proxy.refused, (proxy.refused, calls)
        shown = tessera("job", "show", str(ids[-1]), "--json", network=proxy.url, json_out=True)
        assert shown["state"] == "Open" and shown["spec_uri"] == "https://specs.example/capped 2"


def test_other_log_errors_are_not_retried(tessera, anvil, fresh_chain) -> None:
    with RpcCounter(anvil.rpc_url, max_log_range=1, log_range_error="internal error: database is locked") as proxy:
        failed = tessera("job", "list", network=proxy.url, ok=False)
        lines = failed.stderr.splitlines()
        assert failed.exit_code == 1 and len(lines) == 1, failed.stderr
        assert lines[0].startswith("error: the RPC refused eth_getLogs over blocks ")
        assert lines[0].endswith(": internal error: database is locked")
        assert proxy.refused == 1, "an unrelated error is reported, not halved into many calls"


def test_log_range_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from protocol.logrange import LOG_RANGE, log_range_setting

    monkeypatch.delenv("TESSERA_LOG_RANGE", raising=False)
    assert log_range_setting() == LOG_RANGE and log_range_setting(7) == 7
    monkeypatch.setenv("TESSERA_LOG_RANGE", "2000")
    assert log_range_setting() == 2000 and log_range_setting(30) == 30
    for bad in ("0", "lots", "-5"):
        monkeypatch.setenv("TESSERA_LOG_RANGE", bad)
        with pytest.raises(ConfigError, match="TESSERA_LOG_RANGE must be"):
            log_range_setting()


def test_any_cap_gives_the_same_events_in_few_refusals(anvil, fresh_chain, funded, submitter, deployment) -> None:
    """Property: whatever range a provider allows, the adaptive reader returns exactly the direct read's
    events, after at most log2(first range / cap) + 1 refusals, and keeps a range the provider accepts."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from protocol.chain import connect
    from protocol.client import TesseraClient

    sub = funded(submitter, tokens=1_000)
    for i in range(3):
        _post(sub, f"property {i}")
    addresses = [deployment.escrow, deployment.disputes]
    latest = int(sub.w3.eth.block_number)
    since = max(deployment.start_block, latest - 40)  # the posts above, and few enough blocks to stay fast
    expected = [(e.name, e.position) for e in sub.get_logs(addresses, [], from_block=since, to_block=latest)]
    assert len(expected) >= 3

    with RpcCounter(anvil.rpc_url) as proxy:
        w3 = connect(proxy.url)

        @settings(max_examples=15, deadline=None)
        @given(cap=st.integers(min_value=1, max_value=50), first=st.integers(min_value=1, max_value=5_000))
        def check(cap: int, first: int) -> None:
            proxy.max_log_range = cap
            proxy.reset()
            client = TesseraClient(w3, deployment, log_range=first)
            got = [(e.name, e.position) for e in client.get_logs(addresses, [], from_block=since, to_block=latest)]
            assert got == expected
            if proxy.refused:
                assert client.log_range <= cap
            span = min(first, latest - since + 1)
            assert proxy.refused <= max(0, math.ceil(math.log2(span / cap))) + 1, (cap, first, proxy.refused)

        check()
