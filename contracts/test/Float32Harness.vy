# pragma version ~=0.4.3
"""
@title Float32Harness
@notice Test-only contract exposing the `float32` module in batches (one eth_call checks hundreds of
        operand pairs against NumPy) and measuring its gas per operation.
@dev Never deployed outside tests and the gas bench.
"""

from ..lib import float32

BATCH: constant(uint256) = 1_024

# operation codes of `binary` and `gas_of_binary`
OP_ADD: constant(uint256) = 0
OP_SUB: constant(uint256) = 1
OP_MUL: constant(uint256) = 2
OP_DIV: constant(uint256) = 3

# operation codes of `unary` and `gas_of_unary`
OP_SQRT: constant(uint256) = 0
OP_RINT: constant(uint256) = 1
OP_NEG: constant(uint256) = 2
OP_ABS: constant(uint256) = 3


@internal
@pure
def _binary(op: uint256, a: uint256, b: uint256) -> uint256:
    """
    @notice One binary operation by code.
    @param op OP_ADD, OP_SUB, OP_MUL or OP_DIV.
    @param a Left operand.
    @param b Right operand.
    @return The binary32 result.
    """
    if op == OP_ADD:
        return float32._add(a, b)
    if op == OP_SUB:
        return float32._sub(a, b)
    if op == OP_MUL:
        return float32._mul(a, b)
    assert op == OP_DIV, "Float32Harness: unknown op"
    return float32._div(a, b)


@internal
@pure
def _unary(op: uint256, x: uint256) -> uint256:
    """
    @notice One unary operation by code.
    @param op OP_SQRT, OP_RINT, OP_NEG or OP_ABS.
    @param x The operand.
    @return The binary32 result.
    """
    if op == OP_SQRT:
        return float32._sqrt(x)
    if op == OP_RINT:
        return float32._rint(x)
    if op == OP_NEG:
        return float32._neg(x)
    assert op == OP_ABS, "Float32Harness: unknown op"
    return float32._abs(x)


@external
@pure
def binary(op: uint256, a: DynArray[uint32, BATCH], b: DynArray[uint32, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice `op` applied to the pairs (a[i], b[i]).
    @param op An OP_* code of the binary operations.
    @param a Left operands.
    @param b Right operands (same length).
    @return The binary32 results.
    """
    assert len(a) == len(b), "Float32Harness: lengths differ"
    out: DynArray[uint32, BATCH] = []
    for i: uint256 in range(len(a), bound=BATCH):
        out.append(convert(self._binary(op, convert(a[i], uint256), convert(b[i], uint256)), uint32))
    return out


@external
@pure
def unary(op: uint256, x: DynArray[uint32, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice `op` applied to every x[i].
    @param op An OP_* code of the unary operations.
    @param x Operands.
    @return The binary32 results.
    """
    out: DynArray[uint32, BATCH] = []
    for v: uint32 in x:
        out.append(convert(self._unary(op, convert(v, uint256)), uint32))
    return out


@external
@pure
def compare(a: DynArray[uint32, BATCH], b: DynArray[uint32, BATCH]) -> DynArray[uint8, BATCH]:
    """
    @notice The comparisons of every pair, as bits: 1 lt, 2 le, 4 eq, 8 same, 16 a is NaN.
    @param a Left operands.
    @param b Right operands (same length).
    @return One flag byte per pair.
    """
    assert len(a) == len(b), "Float32Harness: lengths differ"
    out: DynArray[uint8, BATCH] = []
    for i: uint256 in range(len(a), bound=BATCH):
        x: uint256 = convert(a[i], uint256)
        y: uint256 = convert(b[i], uint256)
        flags: uint8 = 0
        if float32._lt(x, y):
            flags |= 1
        if float32._le(x, y):
            flags |= 2
        if float32._eq(x, y):
            flags |= 4
        if float32._same(x, y):
            flags |= 8
        if float32._is_nan(x):
            flags |= 16
        out.append(flags)
    return out


@external
@pure
def from_int(v: DynArray[int256, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice int -> binary32 for every v[i].
    @param v Integers.
    @return The nearest binary32 values.
    """
    out: DynArray[uint32, BATCH] = []
    for x: int256 in v:
        out.append(convert(float32._from_int(x), uint32))
    return out


@external
@pure
def to_int(x: DynArray[uint32, BATCH]) -> DynArray[int256, BATCH]:
    """
    @notice binary32 -> integer (truncation) for every finite x[i].
    @param x Finite binary32 values.
    @return trunc(x[i]).
    """
    out: DynArray[int256, BATCH] = []
    for v: uint32 in x:
        out.append(float32._to_int(convert(v, uint256)))
    return out


@external
@pure
def scalbn(x: DynArray[uint32, BATCH], n: DynArray[int256, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice x[i] * 2**n[i], rounded once.
    @param x binary32 values.
    @param n Powers of two (same length).
    @return The binary32 results.
    """
    assert len(x) == len(n), "Float32Harness: lengths differ"
    out: DynArray[uint32, BATCH] = []
    for i: uint256 in range(len(x), bound=BATCH):
        out.append(convert(float32._scalbn(convert(x[i], uint256), n[i]), uint32))
    return out


@external
@pure
def to_f64(x: DynArray[uint32, BATCH]) -> DynArray[uint64, BATCH]:
    """
    @notice binary32 -> binary64 for every x[i].
    @param x binary32 values.
    @return binary64 patterns.
    """
    out: DynArray[uint64, BATCH] = []
    for v: uint32 in x:
        out.append(convert(float32._to_f64(convert(v, uint256)), uint64))
    return out


@external
@pure
def from_f64(d: DynArray[uint64, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice binary64 -> binary32 for every d[i].
    @param d binary64 patterns.
    @return The nearest binary32 values.
    """
    out: DynArray[uint32, BATCH] = []
    for v: uint64 in d:
        out.append(convert(float32._from_f64(convert(v, uint256)), uint32))
    return out


@external
@pure
def dot(a: DynArray[uint32, float32.MAX_DOT], b: DynArray[uint32, float32.MAX_DOT]) -> uint32:
    """
    @notice The fold from +0 of a[k] * b[k] in k order.
    @param a Left operands.
    @param b Right operands.
    @return The binary32 fold.
    """
    return convert(float32._dot(a, b), uint32)


@external
@pure
def dot_from(start: uint32, a: DynArray[uint32, float32.MAX_DOT], b: DynArray[uint32, float32.MAX_DOT]) -> uint32:
    """
    @notice The fold continued from `start` over a[k] * b[k] in k order.
    @param start The accumulator to continue from.
    @param a Left operands.
    @param b Right operands.
    @return The binary32 fold.
    """
    return convert(float32._dot_from(convert(start, uint256), a, b), uint32)


@external
@pure
def dot_words(
    a: DynArray[uint256, float32.MAX_DOT_WORDS], b: DynArray[uint256, float32.MAX_DOT_WORDS], n: uint256
) -> uint32:
    """
    @notice The fold from +0 over n values packed eight per word (float32._dot_words_from).
    @param a Left operands, packed.
    @param b Right operands, packed.
    @param n How many values.
    @return The binary32 fold.
    """
    return convert(float32._dot_words_from(0, a, b, n), uint32)


@external
@view
def gas_of_binary(op: uint256, a: uint32, b: uint32) -> uint256:
    """
    @notice Gas of one binary operation (msg.gas before and after; the call's own overhead excluded).
    @param op An OP_* code of the binary operations.
    @param a Left operand.
    @param b Right operand.
    @return Gas used by the operation.
    """
    x: uint256 = convert(a, uint256)
    y: uint256 = convert(b, uint256)
    start: uint256 = msg.gas
    r: uint256 = self._binary(op, x, y)
    return start - msg.gas


@external
@view
def gas_of_unary(op: uint256, x: uint32) -> uint256:
    """
    @notice Gas of one unary operation (msg.gas before and after).
    @param op An OP_* code of the unary operations.
    @param x The operand.
    @return Gas used by the operation.
    """
    v: uint256 = convert(x, uint256)
    start: uint256 = msg.gas
    r: uint256 = self._unary(op, v)
    return start - msg.gas


@external
@view
def gas_of_dot(a: DynArray[uint32, float32.MAX_DOT], b: DynArray[uint32, float32.MAX_DOT]) -> uint256:
    """
    @notice Gas of one `_dot` (operands already in memory).
    @param a Left operands.
    @param b Right operands.
    @return Gas used by the fold.
    """
    start: uint256 = msg.gas
    r: uint256 = float32._dot(a, b)
    return start - msg.gas
