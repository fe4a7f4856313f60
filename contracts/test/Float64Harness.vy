# pragma version ~=0.4.3
"""
@title Float64Harness
@notice Test-only contract exposing the `float64` module in batches (one eth_call checks hundreds of
        operand pairs against NumPy's binary64).
@dev Never deployed outside tests and the gas bench.
"""

from ..lib import float64

BATCH: constant(uint256) = 1_024

# operation codes of `binary` and `gas_of_binary`
OP_ADD: constant(uint256) = 0
OP_SUB: constant(uint256) = 1
OP_MUL: constant(uint256) = 2
OP_DIV: constant(uint256) = 3
OP_SQRT: constant(uint256) = 4  # unary: the second operand is ignored


@internal
@pure
def _binary(op: uint256, a: uint256, b: uint256) -> uint256:
    """
    @notice One operation by code.
    @param op An OP_* code.
    @param a Left operand (the operand of OP_SQRT).
    @param b Right operand.
    @return The binary64 result.
    """
    if op == OP_ADD:
        return float64._add(a, b)
    if op == OP_SUB:
        return float64._sub(a, b)
    if op == OP_MUL:
        return float64._mul(a, b)
    if op == OP_DIV:
        return float64._div(a, b)
    assert op == OP_SQRT, "Float64Harness: unknown op"
    return float64._sqrt(a)


@external
@pure
def binary(op: uint256, a: DynArray[uint64, BATCH], b: DynArray[uint64, BATCH]) -> DynArray[uint64, BATCH]:
    """
    @notice `op` applied to the pairs (a[i], b[i]).
    @param op An OP_* code.
    @param a Left operands.
    @param b Right operands (same length).
    @return The binary64 results.
    """
    assert len(a) == len(b), "Float64Harness: lengths differ"
    out: DynArray[uint64, BATCH] = []
    for i: uint256 in range(len(a), bound=BATCH):
        out.append(convert(self._binary(op, convert(a[i], uint256), convert(b[i], uint256)), uint64))
    return out


@external
@pure
def compare(a: DynArray[uint64, BATCH], b: DynArray[uint64, BATCH]) -> DynArray[uint64, BATCH]:
    """
    @notice The comparisons of every pair, as bits: 1 lt, 2 le, 4 eq, 8 a is NaN.
    @param a Left operands.
    @param b Right operands (same length).
    @return One flag word per pair.
    """
    assert len(a) == len(b), "Float64Harness: lengths differ"
    out: DynArray[uint64, BATCH] = []
    for i: uint256 in range(len(a), bound=BATCH):
        x: uint256 = convert(a[i], uint256)
        y: uint256 = convert(b[i], uint256)
        flags: uint64 = 0
        if float64._lt(x, y):
            flags |= 1
        if float64._le(x, y):
            flags |= 2
        if float64._eq(x, y):
            flags |= 4
        if float64._is_nan(x):
            flags |= 8
        out.append(flags)
    return out


@external
@pure
def from_int(v: DynArray[int256, BATCH]) -> DynArray[uint64, BATCH]:
    """
    @notice int -> binary64 for every v[i].
    @param v Integers.
    @return The nearest binary64 values.
    """
    out: DynArray[uint64, BATCH] = []
    for x: int256 in v:
        out.append(convert(float64._from_int(x), uint64))
    return out


@external
@pure
def clip_scale(squared_norm: DynArray[uint64, BATCH], max_norm: DynArray[uint64, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice The gradient-clipping factor for every pair.
    @param squared_norm binary64 squared norms.
    @param max_norm binary64 max_norm values (same length).
    @return binary32 factors.
    """
    assert len(squared_norm) == len(max_norm), "Float64Harness: lengths differ"
    out: DynArray[uint32, BATCH] = []
    for i: uint256 in range(len(max_norm), bound=BATCH):
        out.append(convert(float64._clip_scale(convert(squared_norm[i], uint256), convert(max_norm[i], uint256)), uint32))
    return out


@external
@view
def gas_of_binary(op: uint256, a: uint64, b: uint64) -> uint256:
    """
    @notice Gas of one operation (msg.gas before and after).
    @param op An OP_* code.
    @param a Left operand.
    @param b Right operand.
    @return Gas used.
    """
    x: uint256 = convert(a, uint256)
    y: uint256 = convert(b, uint256)
    start: uint256 = msg.gas
    r: uint256 = self._binary(op, x, y)
    return start - msg.gas
