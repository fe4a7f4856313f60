"""Property tests for the CLI's parsers: token amounts and hashes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from protocol.cli.common import MAX_UINT256, format_amount, jsonable, one_line, parse_amount, parse_hash
from protocol.errors import ConfigError

EXAMPLES = 1_000 if os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough" else 100


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_UINT256))
def test_format_then_parse_is_identity(base_units: int) -> None:
    assert parse_amount(format_amount(base_units)) == base_units
    assert parse_amount(f"{base_units}wei") == base_units


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(min_value=0, max_value=10**40), st.integers(min_value=0, max_value=10**18 - 1))
def test_decimal_tokens(whole: int, frac: int) -> None:
    text = f"{whole}.{str(frac).rjust(18, '0')}"
    assert parse_amount(text) == whole * 10**18 + frac
    assert parse_amount(f"{whole} TSR") == whole * 10**18


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=30))
def test_parse_amount_never_crashes(text: str) -> None:
    try:
        value = parse_amount(text)
    except ConfigError as exc:
        assert "invalid amount" in str(exc)
    else:
        assert 0 <= value <= MAX_UINT256


@pytest.mark.parametrize("bad", ["", "-1", "1e18", "1.5wei", "0x10", "1.0000000000000000001", str(2**256) + "wei", "ten"])
def test_parse_amount_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid amount"):
        parse_amount(bad)


def test_amount_examples() -> None:
    assert parse_amount("10") == 10 * 10**18
    assert parse_amount("0.5") == 5 * 10**17
    assert parse_amount("1_000wei") == 1_000
    assert format_amount(1_500_000_000_000_000_000) == "1.5"
    assert format_amount(1) == "0.000000000000000001"


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.booleans())
def test_parse_hash_normalises(raw: bytes, upper: bool) -> None:
    text = "0x" + (raw.hex().upper() if upper else raw.hex())
    assert parse_hash(text) == "0x" + raw.hex()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=70))
def test_parse_hash_rejects_everything_else(text: str) -> None:
    try:
        parsed = parse_hash(text)
    except ConfigError as exc:
        assert "expected 0x followed by 64 hex digits" in str(exc)
    else:
        assert len(parsed) == 66 and bytes.fromhex(parsed[2:])


def test_jsonable_keeps_big_integers_exact() -> None:
    data = jsonable({"small": 5, "big": 2**60, "raw": b"\x01\x02", "items": (1, True, None)})
    assert data == {"small": 5, "big": str(2**60), "raw": "0x0102", "items": [1, True, None]}


def test_one_line_collapses_whitespace() -> None:
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(ValueError("")) == "ValueError"
