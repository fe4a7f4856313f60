"""Gas of the referee's element rules (contracts/lib/element_rules.vy) for the largest element each rule
accepts: a 256-term fold piece, 256-wide normalisation rows, a 256-gradient clipping piece, and the
elementwise rules on ML-sized operands. Each case is a `protocol.referee_model` element, encoded by
`protocol.referee_calls` and checked against `check_element` before its gas is read. Part of
`bench/gas.py` (docs/gas.md, "Referee element rules"); `python -m bench.element_gas` prints the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

WIDTH = 256  # the longest fold piece and the widest row one check reads (element_rules MAX_FOLD, MAX_ROW)
EXP_ROW = 48  # a softmax or cross-entropy row this wide stays within the target (one exp per element)
TARGET = 1_000_000  # issue 15: the referee's final step


def cases() -> Iterator[tuple[str, str, Any, Any, int, dict, int | None]]:
    """(name, what, call, output, element, proven, piece) for the largest element of each rule."""
    from protocol import referee_model as rm

    rng = np.random.default_rng(2026)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def values(k: int, array: np.ndarray) -> dict:
        return {(k, i): v for i, v in enumerate(array.reshape(-1))}

    def call(kernel: str, args: tuple, ins: tuple, outs: tuple) -> Any:
        return rm.Call(kernel, args, ins, outs)

    inputs3 = (("input", 0), ("input", 1), ("input", 2))
    x, w, b = normal(1, 2 * WIDTH), normal(1, 2 * WIDTH), normal(1)
    linear = call("linear", inputs3, ((1, 2 * WIDTH), (1, 2 * WIDTH), (1,)), ((1, 1),))
    every = {**values(0, x), **values(1, w), **values(2, b)}
    partials = rm.partial_sums(linear, 0, 0, every)
    piece = {k: (partials[k[1]] if k[0] == "partial" else every[k]) for k in rm.dependencies(linear, 0, 0, 1)}
    yield "fold_piece", f"a {WIDTH}-term fold piece from a running value (linear, K = {2 * WIDTH}, piece 1)", \
        linear, 0, 0, piece, 1  # fmt: skip
    whole = call("linear", inputs3, ((1, WIDTH), (1, WIDTH), (1,)), ((1, 1),))
    yield "linear", f"linear with K = {WIDTH}: {WIDTH} products, then + bias", whole, 0, 0, \
        {**values(0, x[:, :WIDTH]), **values(1, w[:, :WIDTH]), **values(2, b)}, None  # fmt: skip
    mse = call("mse", (("input", 0), ("input", 1)), ((1, WIDTH), (1, WIDTH)), ((),))
    yield "mse", f"mse over {WIDTH} elements: (a − b)² folded, / {WIDTH}", mse, 0, 0, \
        {**values(0, x[:, :WIDTH]), **values(1, w[:, :WIDTH])}, None  # fmt: skip
    z, t = normal(1, WIDTH), np.int64(7)
    row = (1, WIDTH)
    for width in (EXP_ROW, WIDTH):  # one exp per element of the row: the widest row within the target, and 256
        for kernel, name in (("softmax", "softmax"), ("cross_entropy", "cross_entropy_nll")):
            shape = (1, width)
            c = call(kernel, (("input", 0),) if kernel == "softmax" else (("input", 0), ("input", 1)),
                     (shape,) if kernel == "softmax" else (shape, (1,)), (shape,) if kernel == "softmax" else ((),))  # fmt: skip
            output = 0 if kernel == "softmax" else "nll"
            yield f"{name}_{width}", f"{kernel} over a row of {width} ({width} exps)", c, output, \
                3 if kernel == "softmax" else 0, {**values(0, z[:, :width]), (1, 0): t}, None  # fmt: skip
    ce_b = call("cross_entropy_backward", (("input", 0), ("input", 1), np.float32(1.0)), (row, (1,)), (row,))
    yield "cross_entropy_backward", f"cross-entropy's backward over a row of {WIDTH}", ce_b, 0, 3, \
        {**values(0, z), (1, 0): t}, None  # fmt: skip
    soft_b = call("softmax_backward", (("input", 0), ("input", 1)), (row, row), (row,))
    yield "softmax_backward", f"softmax's backward over rows of {WIDTH}", soft_b, 0, 3, \
        {**values(0, np.abs(z) / np.float32(WIDTH)), **values(1, w[:, :WIDTH])}, None  # fmt: skip
    ln = call("layer_norm", (*inputs3, 1e-5), (row, (WIDTH,), (WIDTH,)), (row, row, (1,)))
    yield "layer_norm", f"layer norm's y over a row of {WIDTH}", ln, 0, 3, \
        {**values(0, z), **values(1, normal(WIDTH)), **values(2, normal(WIDTH))}, None  # fmt: skip
    rms = call("rms_norm", (("input", 0), ("input", 1), 1e-5), (row, (WIDTH,)), (row, row, (1,)))
    yield "rms_norm", f"RMSNorm's y over a row of {WIDTH}", rms, 0, 3, {**values(0, z), **values(1, normal(WIDTH))}, None
    for kernel in ("layer_norm_backward", "rms_norm_backward"):
        c = call(kernel, tuple(("input", k) for k in range(4)), (row, (1,), (WIDTH,), row), (row, (WIDTH,), (WIDTH,)))
        yield kernel, f"{kernel}'s dx over a row of {WIDTH}", c, 0, 3, \
            {**values(0, z), (1, 0): np.float32(0.9), **values(2, normal(WIDTH)), **values(3, normal(WIDTH))}, None  # fmt: skip
    grads = call("clip_scale", (("input", 0), ("input", 1), 1.0), ((1, 2 * WIDTH), (1,)), ((1,),))
    g_values = {**values(0, x), **values(1, b)}
    clip_partials = rm.clip_partial_sums(grads, g_values)
    clip_piece = {k: (clip_partials[k[1]] if k[0] == "partial" else g_values[k]) for k in rm.dependencies(grads, 0, 0, 1)}
    terms = sum(1 for k in clip_piece if k[0] != "partial")
    yield "clip_piece", f"a {terms}-gradient piece of clipping's binary64 Σ g² (from a running value)", grads, 0, 0, \
        clip_piece, 1  # fmt: skip
    yield "clip_scale", "clipping's factor from the last running Σ g² (binary64)", grads, 0, 0, \
        {k: clip_partials[k[1]] for k in rm.dependencies(grads, 0, 0)}, None  # fmt: skip
    e2 = ((1, 4), (1, 4))
    xs, dys = normal(1, 4), normal(1, 4)
    for kernel in ("relu", "gelu", "silu", "gelu_tanh", "relu_backward", "gelu_backward", "silu_backward",
                   "gelu_tanh_backward", "add", "mul"):  # fmt: skip
        two = kernel.endswith("_backward") or kernel in ("add", "mul")
        c = call(kernel, (("input", 0), ("input", 1)) if two else (("input", 0),), e2 if two else ((1, 4),), ((1, 4),))
        yield kernel, f"{kernel}, one element (ML-sized operands)", c, 0, 1, {**values(0, xs), **values(1, dys)}, None
    adamw = call("adamw", tuple(("input", k) for k in range(5)), ((1, 4),) * 4 + ((8,),), ((1, 4),) * 3)
    scalars = np.array([0.999, 0.9, 0.1, 0.999, 0.001, 0.5, 1e-8, 1e-3], dtype=np.float32)
    yield "adamw", "AdamW's parameter update, one element", adamw, 0, 1, \
        {**values(0, xs), **values(1, dys), **values(2, xs / 10), **values(3, np.abs(dys) / 10), **values(4, scalars)}, None  # fmt: skip
    sgd = call("sgd", (*(("input", k) for k in range(4)), True), ((1, 4),) * 3 + ((3,),), ((1, 4),) * 2)
    yield "sgd", "SGD with Nesterov momentum and weight decay, one element", sgd, 0, 1, \
        {**values(0, xs), **values(1, dys), **values(2, xs / 10), **values(3, np.array([1e-4, 0.9, 0.01], np.float32))}, None  # fmt: skip
    keep = call("dropout_keep", (("input", 0), 0.1, 7), ((),), ((2**20,),))
    yield "dropout_keep", "dropout's mask bit: sha256 of the labels, splitmix64, the threshold", keep, 0, 2**20 - 1, \
        {("seed", 0): 2**64 - 1, ("step", 0): 123_456}, None  # fmt: skip
    positions = 512
    ids = rng.integers(0, 4, positions)
    emb = call("embedding_backward", (("input", 0), ("input", 1), 4), ((positions,), (positions, 1)), ((4, 1),))
    yield "embedding_backward", f"embedding's backward over {positions} positions", emb, 0, 2, \
        {**{(0, p): np.int64(v) for p, v in enumerate(ids)}, **values(1, normal(positions, 1))}, None  # fmt: skip


def measure(w3: Any, harness: Any | None = None) -> dict[str, dict]:
    """{"gas_element_<name>": {"value", "unit", "how"}}: the gas inside the contract of each case, after
    checking its result against the Python model."""
    from protocol import referee_calls as rc
    from protocol import referee_model as rm
    from tests.unit.contracts.vyper_harness import deploy_element_referee

    harness = harness or deploy_element_referee(w3)
    out: dict[str, dict] = {}
    for name, how, call, output, e, proven, piece in cases():
        encoded = rc.encode(call, output, e, proven, piece)
        args = (encoded.rule, list(encoded.params), list(encoded.values))
        got = int(harness.functions.element(*args).call({"gas": 30_000_000}))
        expected = rm.check_element(call, output, e, proven, piece)
        if got != expected:
            raise AssertionError(f"element rule {name}: chain {got:#x}, model {expected:#x}")
        gas = harness.functions.element(*args).estimate_gas({"from": w3.eth.accounts[0]})
        out[f"gas_element_{name}"] = {"value": int(gas), "unit": "gas", "how": how, "target": TARGET}
    return out


def render(figures: dict[str, dict]) -> str:
    """The "Referee element rules" section of docs/gas.md ("" when the figures lack it)."""
    rows = {k[len("gas_element_"):]: f for k, f in figures.items() if k.startswith("gas_element_")}
    if not rows:
        return ""
    table = "\n".join(f"| `{name}` | {f['value']:,} | {'yes' if f['value'] <= TARGET else '**no**'} | {f['how']} |"
                      for name, f in rows.items())  # fmt: skip
    return (
        "\n## Referee element rules\n\n"
        "The referee's final step (docs/referee.md, section 4, \"On chain\"): one output element recomputed "
        "by `contracts/lib/element_rules.vy` from its proven values, for the largest element each rule accepts. "
        "Gas of the `element` call of contracts/ElementReferee.vy (the clipping rules through its call to "
        "contracts/ClipReferee.vy) as a whole transaction "
        "(eth_estimateGas: 21,000 intrinsic gas, the values' calldata, one ABI word each, and their copy into "
        "memory; about 35,000 gas of that is fixed per call, see relu), not counting the Merkle proofs of the "
        "values or the bisection; each case's result is checked against `protocol/referee_model.py` first. "
        f"Target: {TARGET:,} gas per check. Softmax and cross-entropy take one exp per element of the row: rows "
        f"up to {EXP_ROW} wide fit. With the Merkle proofs, a row's whole `prove_element` fits only up to "
        "each row kernel's cap, narrower than these rows (docs/referee.md, \"Row caps\"); wider rows are "
        "decided in pieces from the rows' committed running statistics (docs/referee.md, \"Rows in pieces\").\n\n"
        "| rule | gas | within target | element |\n| --- | ---: | --- | --- |\n" + table + "\n"
    )


if __name__ == "__main__":
    from protocol.chain import connect
    from protocol.devnet import start_anvil

    with start_anvil() as node:
        for key, figure in measure(connect(node.rpc_url, timeout=60.0)).items():
            print(f"{key[len('gas_element_'):]:<24} {figure['value']:>11,}  {figure['how']}")
