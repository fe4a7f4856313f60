# pragma version ~=0.4.3
"""
@title scalar_math
@notice The optimizer's per-step binary32 scalars of docs/arithmetic.md, section 8, recomputed in
        binary64 with `float64.vy` from the agreed state's step and the skeleton's arguments: the
        learning-rate schedule (warm-up, then constant, cosine or linear decay to a final ratio, with
        the portable cos: 14 Taylor terms by Horner in x², −cos(π − x) above π/2), powers β^t by
        binary exponentiation (low bit first), and AdamW's eight and SGD's three scalars, each rounded
        once to binary32 (`protocol/scalar_rules.py` is the Python model; engine/portable/scalars.py
        the engine's).
@dev A binary64 value is its bit pattern in the low 64 bits of a uint256. All @internal @pure.
"""

from . import float32
from . import float64

SCHEDULE_CONSTANT: constant(uint256) = 0
SCHEDULE_COSINE: constant(uint256) = 1
SCHEDULE_LINEAR: constant(uint256) = 2
KIND_ADAMW: constant(uint256) = 0
KIND_SGD: constant(uint256) = 1

ONE: constant(uint256) = 4_607_182_418_800_017_408  # 1.0
HALF: constant(uint256) = 4_602_678_819_172_646_912  # 0.5
PI: constant(uint256) = 4_614_256_656_552_045_848  # the binary64 nearest π
HALF_PI: constant(uint256) = 4_609_753_056_924_675_352  # PI / 2
# (−1)^k / (2k)!, k = 0 … 13, as binary64 (Python's float((−1)**k) / factorial(2k))
COS_TERMS: constant(uint256[14]) = [
    4_607_182_418_800_017_408,
    13_826_050_856_027_422_720,
    4_586_165_620_538_955_093,
    13_787_419_979_223_755_799,
    4_537_941_361_671_905_306,
    13_732_177_094_651_715_420,
    4_477_122_120_089_393_304,
    13_666_517_717_442_657_437,
    4_407_590_220_077_447_199,
    13_593_695_978_845_207_959,
    4_331_992_437_988_917_797,
    13_515_529_227_788_089_427,
    4_251_165_982_991_775_096,
    13_432_142_594_749_124_185,
]


@internal
@pure
def _cos(x: uint256) -> uint256:
    """
    @notice The portable cos of x in [0, π]: −cos(π − x) above π/2, then Σ_k COS_TERMS[k]·y^(2k) by
            Horner in y².
    @param x A binary64 in [0, π].
    @return cos(x), binary64.
    """
    y: uint256 = x
    negate: bool = float64._lt(HALF_PI, x)
    if negate:
        y = float64._sub(PI, x)
    y2: uint256 = float64._mul(y, y)
    total: uint256 = COS_TERMS[13]
    for i: uint256 in range(13):
        total = float64._add(float64._mul(total, y2), COS_TERMS[12 - i])
    if negate:
        return float64._neg(total)
    return total


@internal
@pure
def _power(base: uint256, exponent: uint256) -> uint256:
    """
    @notice base^exponent by binary exponentiation, least significant bit first: r = 1; while e:
            (e odd: r = r·b); b = b·b; e = e >> 1.
    @param base A binary64.
    @param exponent An integer below 2**64.
    @return The power, binary64.
    """
    result: uint256 = ONE
    factor: uint256 = base
    e: uint256 = exponent
    for i: uint256 in range(64):
        if e == 0:
            break
        if e & 1 == 1:
            result = float64._mul(result, factor)
        factor = float64._mul(factor, factor)
        e = e >> 1
    return result


@internal
@pure
def _lr_factor(schedule: uint256, warmup: uint256, final_ratio: uint256, step: uint256, total: uint256) -> uint256:
    """
    @notice The schedule's factor at 0-based `step` (protocol.spec.Schedule.lr_factor): (step + 1) /
            warmup during the warm-up; then 1 (constant), or final + (1 − final)·shape with progress
            p = min(1, (step − warmup) / max(1, total − warmup)) and shape 0.5·(1 + cos(π·p)) (cosine)
            or 1 − p (linear).
    @param schedule A SCHEDULE_* code.
    @param warmup Warm-up steps.
    @param final_ratio The final ratio, binary64.
    @param step The 0-based step.
    @param total The job's total steps.
    @return The factor, binary64.
    """
    if warmup != 0 and step < warmup:
        return float64._div(float64._from_int(convert(step + 1, int256)), float64._from_int(convert(warmup, int256)))
    if schedule == SCHEDULE_CONSTANT:
        return ONE
    span: uint256 = 1
    if total > warmup + 1:
        span = total - warmup
    progress: uint256 = float64._div(float64._from_int(convert(step - warmup, int256)), float64._from_int(convert(span, int256)))
    if not float64._lt(progress, ONE):
        progress = ONE
    shape: uint256 = float64._sub(ONE, progress)
    if schedule == SCHEDULE_COSINE:
        shape = float64._mul(HALF, float64._add(ONE, self._cos(float64._mul(PI, progress))))
    return float64._add(final_ratio, float64._mul(float64._sub(ONE, final_ratio), shape))


@internal
@pure
def _optimizer_scalar(params: DynArray[uint256, 16], step: uint256) -> uint256:
    """
    @notice One binary32 scalar of a step: AdamW's decay 1 − lr·wd, β1, 1 − β1, β2, 1 − β2, 1 − β2^t,
            eps, lr / (1 − β1^t) (t = step + 1), or SGD's weight decay, momentum, lr; lr the base lr
            times the schedule's factor, each computed in binary64 and rounded once.
    @param params [kind, element, schedule, warmup, final ratio, total steps, lr, then AdamW's β1, β2,
           eps, weight decay or SGD's momentum, weight decay] (binary64 numbers).
    @param step The agreed state's step (0-based).
    @return The scalar's binary32 pattern.
    """
    assert len(params) == 11 or (len(params) == 9 and params[0] == KIND_SGD), "scalar_math: scalars layout"
    element: uint256 = params[1]
    value: uint256 = 0
    if params[0] == KIND_SGD:
        assert element < 3, "scalar_math: no such scalar"
        if element < 2:
            return float32._from_f64(params[8 - element])  # weight decay, then momentum
        return float32._from_f64(float64._mul(params[6], self._lr_factor(params[2], params[3], params[4], step, params[5])))
    assert element < 8, "scalar_math: no such scalar"
    if element == 1 or element == 3:
        value = params[7 + element // 2]  # β1, β2
    elif element == 6:
        value = params[9]  # eps
    elif element == 2 or element == 4:
        value = float64._sub(ONE, params[6 + element // 2])  # 1 − β1, 1 − β2
    elif element == 5:
        value = float64._sub(ONE, self._power(params[8], step + 1))
    else:
        lr: uint256 = float64._mul(params[6], self._lr_factor(params[2], params[3], params[4], step, params[5]))
        if element == 0:
            value = float64._sub(ONE, float64._mul(lr, params[10]))
        else:
            value = float64._div(lr, float64._sub(ONE, self._power(params[7], step + 1)))
    return float32._from_f64(value)
