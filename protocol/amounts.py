"""Token amounts for people: exact decimals of whole tokens, never floats (`1e+06` or a rounded `0.1`)."""

from __future__ import annotations

TOKEN_DECIMALS = 18


def format_tokens(base_units: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Base units as whole tokens without losing precision: `1500000000000000000` -> `1.5`."""
    value = int(base_units)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"
