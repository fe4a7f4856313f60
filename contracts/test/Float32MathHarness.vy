# pragma version ~=0.4.3
"""
@title Float32MathHarness
@notice Test-only contract exposing the `float32_math` module in batches (one eth_call checks hundreds
        of arguments against engine/portable/reference.py) and measuring its gas per function.
@dev Never deployed outside tests and the gas bench.
"""

from ..lib import float32_math

BATCH: constant(uint256) = 256

# function codes of `unary` and `gas_of_unary`
FN_EXP: constant(uint256) = 0
FN_LOG: constant(uint256) = 1
FN_TANH: constant(uint256) = 2
FN_PHI: constant(uint256) = 3
FN_GELU: constant(uint256) = 4
FN_RELU: constant(uint256) = 5
FN_SIGMOID: constant(uint256) = 6
FN_SILU: constant(uint256) = 7
FN_GELU_TANH: constant(uint256) = 8

# function codes of `backward` and `gas_of_backward`
BW_RELU: constant(uint256) = 0
BW_TANH: constant(uint256) = 1
BW_GELU: constant(uint256) = 2
BW_SILU: constant(uint256) = 3
BW_GELU_TANH: constant(uint256) = 4


@internal
@pure
def _unary(fn: uint256, x: uint256) -> uint256:
    """
    @notice One function by code.
    @param fn An FN_* code.
    @param x The argument.
    @return The binary32 result.
    """
    if fn == FN_EXP:
        return float32_math._exp(x)
    if fn == FN_LOG:
        return float32_math._log(x)
    if fn == FN_TANH:
        return float32_math._tanh(x)
    if fn == FN_PHI:
        return float32_math._phi(x)
    if fn == FN_GELU:
        return float32_math._gelu(x)
    if fn == FN_RELU:
        return float32_math._relu(x)
    if fn == FN_SIGMOID:
        return float32_math._sigmoid(x)
    if fn == FN_SILU:
        return float32_math._silu(x)
    assert fn == FN_GELU_TANH, "Float32MathHarness: unknown function"
    return float32_math._gelu_tanh(x)


@internal
@pure
def _backward(fn: uint256, x: uint256, dy: uint256) -> uint256:
    """
    @notice One backward by code.
    @param fn A BW_* code.
    @param x The forward input (tanh: the forward output).
    @param dy The upstream gradient.
    @return The binary32 gradient.
    """
    if fn == BW_RELU:
        return float32_math._relu_backward(x, dy)
    if fn == BW_TANH:
        return float32_math._tanh_backward(x, dy)
    if fn == BW_GELU:
        return float32_math._gelu_backward(x, dy)
    if fn == BW_SILU:
        return float32_math._silu_backward(x, dy)
    assert fn == BW_GELU_TANH, "Float32MathHarness: unknown function"
    return float32_math._gelu_tanh_backward(x, dy)


@external
@pure
def unary(fn: uint256, x: DynArray[uint32, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice `fn` applied to every x[i].
    @param fn An FN_* code.
    @param x Arguments.
    @return The binary32 results.
    """
    out: DynArray[uint32, BATCH] = []
    for v: uint32 in x:
        out.append(convert(self._unary(fn, convert(v, uint256)), uint32))
    return out


@external
@pure
def backward(fn: uint256, x: DynArray[uint32, BATCH], dy: DynArray[uint32, BATCH]) -> DynArray[uint32, BATCH]:
    """
    @notice The backward `fn` of every pair (x[i], dy[i]).
    @param fn A BW_* code.
    @param x Forward inputs (tanh: forward outputs).
    @param dy Upstream gradients (same length).
    @return The binary32 gradients.
    """
    assert len(x) == len(dy), "Float32MathHarness: lengths differ"
    out: DynArray[uint32, BATCH] = []
    for i: uint256 in range(len(x), bound=BATCH):
        out.append(convert(self._backward(fn, convert(x[i], uint256), convert(dy[i], uint256)), uint32))
    return out


@external
@view
def gas_of_unary(fn: uint256, x: uint32) -> uint256:
    """
    @notice Gas of one function evaluation (msg.gas before and after).
    @param fn An FN_* code.
    @param x The argument.
    @return Gas used.
    """
    v: uint256 = convert(x, uint256)
    start: uint256 = msg.gas
    r: uint256 = self._unary(fn, v)
    return start - msg.gas


@external
@view
def gas_of_backward(fn: uint256, x: uint32, dy: uint32) -> uint256:
    """
    @notice Gas of one backward evaluation (msg.gas before and after).
    @param fn A BW_* code.
    @param x The forward input (tanh: the forward output).
    @param dy The upstream gradient.
    @return Gas used.
    """
    a: uint256 = convert(x, uint256)
    b: uint256 = convert(dy, uint256)
    start: uint256 = msg.gas
    r: uint256 = self._backward(fn, a, b)
    return start - msg.gas
