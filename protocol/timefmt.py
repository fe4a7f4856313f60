"""Chain times in human terms: a UTC time plus how far it is from now.

Every deadline, window end and release time the CLI prints goes through `format_chain_time`, with
`now` taken from the chain (the latest block's timestamp), never from the local clock: on a chain
whose time was moved (anvil) or that lags, "in 5 min" must mean five minutes of chain time, which
is what the contracts compare against. Pure functions, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timezone

# (seconds, unit) from the largest down; a duration prints its two largest non-zero units.
_UNITS: tuple[tuple[int, str], ...] = ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))
# datetime cannot show years past 9999; uint256 chain values can be far larger.
MAX_DATETIME_TS = 253_402_300_799  # 9999-12-31 23:59:59 UTC


def format_duration(seconds: int) -> str:
    """`7260` -> `2 h 1 min`: the two largest non-zero units, truncated (never rounds up)."""
    remaining = abs(int(seconds))
    if remaining == 0:
        return "0 s"
    parts: list[str] = []
    for size, unit in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}")
        elif parts:
            break  # `1 h 0 min 5 s` reads as noise: stop at the first zero after the leading unit
        if len(parts) == 2:
            break
    return " ".join(parts)


def utc_text(ts: int) -> str:
    """`2026-12-05 17:02:11 UTC`; a timestamp past year 9999 prints as `chain time N`."""
    if not 0 <= int(ts) <= MAX_DATETIME_TS:
        return f"chain time {int(ts)}"
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_utc(ts: int) -> str | None:
    """`2026-12-05T17:02:11Z` for `--json` readers; None when the value does not fit a calendar date."""
    if not 0 <= int(ts) <= MAX_DATETIME_TS:
        return None
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(ts: int, now: int) -> str:
    """`in 1 h 58 min`, `3 min ago` or `now`, measured in chain seconds."""
    delta = int(ts) - int(now)
    if delta == 0:
        return "now"
    return f"in {format_duration(delta)}" if delta > 0 else f"{format_duration(delta)} ago"


def format_chain_time(ts: int, now: int) -> str:
    """`2026-12-05 17:02:11 UTC (in 1 h 58 min)`; `-` for 0, which the contracts use for "not set"."""
    if int(ts) == 0:
        return "-"
    return f"{utc_text(ts)} ({relative(ts, now)})"
