"""`protocol.timefmt`: chain times as a UTC time plus a relative duration (property-tested)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from protocol.timefmt import MAX_DATETIME_TS, format_chain_time, format_duration, iso_utc, relative, utc_text

UNIT_SECONDS = {"d": 86_400, "h": 3_600, "min": 60, "s": 1}
PART = re.compile(r"(\d+) (d|h|min|s)")
TIMES = st.integers(min_value=1, max_value=MAX_DATETIME_TS)


def _parts(text: str) -> list[tuple[int, str]]:
    found = [(int(n), unit) for n, unit in PART.findall(text)]
    assert " ".join(f"{n} {u}" for n, u in found) == text, f"unparseable duration {text!r}"
    return found


@given(st.integers(min_value=0, max_value=2**64))
def test_duration_truncates_to_its_two_largest_units(seconds: int) -> None:
    parts = _parts(format_duration(seconds))
    assert 1 <= len(parts) <= 2
    units = [UNIT_SECONDS[u] for _, u in parts]
    assert units == sorted(units, reverse=True) and len(set(units)) == len(units)
    shown = sum(n * UNIT_SECONDS[u] for n, u in parts)
    # Never rounds up, and what is cut is less than the smallest unit shown.
    assert 0 <= seconds - shown < units[-1] or seconds == shown == 0
    for n, u in parts[1:]:
        assert n < {"h": 24, "min": 60, "s": 60}[u]


def test_duration_examples() -> None:
    assert [format_duration(s) for s in (0, 59, 60, 65, 3_605, 7_080, 7_200, 90_061)] == [
        "0 s", "59 s", "1 min", "1 min 5 s", "1 h", "1 h 58 min", "2 h", "1 d 1 h"]
    assert format_duration(-125) == "2 min 5 s"


@given(TIMES, st.integers(min_value=-10**9, max_value=10**9))
def test_chain_time_reads_back_and_says_which_way(ts: int, offset: int) -> None:
    now = ts - offset
    text = format_chain_time(ts, now)
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC \((.+)\)", text)
    assert match, text
    parsed = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert int(parsed.timestamp()) == ts
    rel = match.group(2)
    if offset > 0:
        assert rel.startswith("in ") and _parts(rel[3:])
    elif offset < 0:
        assert rel.endswith(" ago") and _parts(rel[:-4])
    else:
        assert rel == "now"
    assert iso_utc(ts) == parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.integers(min_value=MAX_DATETIME_TS + 1, max_value=2**256 - 1))
def test_times_past_the_calendar_still_print(ts: int) -> None:
    assert utc_text(ts) == f"chain time {ts}" and iso_utc(ts) is None
    assert format_chain_time(ts, 0).startswith(f"chain time {ts} (in ")


def test_the_issue_example_and_unset() -> None:
    ts = int(datetime(2026, 12, 5, 17, 2, 11, tzinfo=timezone.utc).timestamp())
    assert format_chain_time(ts, ts - 7_080) == "2026-12-05 17:02:11 UTC (in 1 h 58 min)"
    assert format_chain_time(ts, ts + 180) == "2026-12-05 17:02:11 UTC (3 min ago)"
    assert relative(ts, ts) == "now"
    assert format_chain_time(0, ts) == "-"
