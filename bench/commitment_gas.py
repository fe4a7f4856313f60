"""Gas of the level-2/3 commitment checks and of the element descent, for `python -m bench.gas`.

The checks of contracts/lib/commitments.vy are measured through the test-only CommitmentsHarness
(`eth_estimateGas` of one call: 21,000 intrinsic gas and the calldata included); every move of a
TensorDescent game is a transaction whose receipt's `gasUsed` is read. Both contracts are compiled
from source with the pinned Vyper (ape does not rebuild a contract when only a module it imports
changed). Tensors are binary32 of COMMITMENT_SIZES elements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMITMENT_SIZES = (2**10, 2**16)  # binary32 elements of the tensors whose proofs and descents are measured
DESCENT_LEVELS = 5  # levels opened per descent move (32 descendants)
HOW = {
    "verify_element": "one binary32 element: its chunk and the path to the data root, against the tensor root",
    "verify_row256": "a 256-element row: 32 chunks and the path above them, against the tensor root",
    "descent_open": "TensorDescent.open_game (a host opens the game; 6 non-zero words stored)",
    "descent_post": "the defender posts 32 descendants that must fold to the node (the dearest post: the first)",
    "descent_choose": "the challenger names one descendant (the dearest choose)",
    "descent_reveal": "the defender reveals the chunk; the game is pinned",
    "descent_rounds": "post/choose rounds before the reveal",
    "descent_total": "the whole descent: open, every post and choose, reveal",
    "verify_state_tensor": "a named tensor root against a state root of 16 leaves",
    "open_header": "the 156-byte header against a state root of 16 leaves, decoded",
    "verify_entry": "entry 40 (skeleton leaf, 3 output roots) against a prefix root of width 64",
    "verify_prefix_step": "P_39 -> P_40 of a record of width 64 (slot 40 empty before, filled after)",
}


class _Chain:
    """web3 on anvil's unlocked accounts; contracts compiled from source."""

    def __init__(self, rpc_url: str):
        from web3 import Web3

        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        self.deployer, self.worker, self.verifier = self.w3.eth.accounts[-1], self.w3.eth.accounts[2], self.w3.eth.accounts[3]

    def deploy(self, relative_path: str) -> Any:
        result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", relative_path], cwd=ROOT,
                                capture_output=True, text=True, check=True)  # fmt: skip
        abi_line, bytecode = result.stdout.strip().splitlines()
        abi = json.loads(abi_line)
        tx = self.w3.eth.contract(abi=abi, bytecode=bytecode.strip()).constructor().transact({"from": self.deployer})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt.contractAddress, abi=abi)

    def send(self, call: Any, sender: str) -> int:
        """Send a transaction; its gasUsed (a revert raises)."""
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
        if receipt.status != 1:
            raise RuntimeError("a benchmarked move reverted")
        return int(receipt.gasUsed)


def _gas(rpc_url: str) -> dict[str, int]:
    import numpy as np
    from eth_hash.auto import keccak

    from protocol import tensor_commit as tc
    from protocol import tensor_descent as td

    c = _Chain(rpc_url)
    harness = c.deploy("contracts/test/CommitmentsHarness.vy")
    descent = c.deploy("contracts/TensorDescent.vy")
    c.send(descent.functions.wire([c.deployer]), c.deployer)
    rng = np.random.default_rng(0)
    gas: dict[str, int] = {}

    def estimate(call) -> int:
        assert call.call(), "a benchmarked proof does not verify"
        return int(call.estimate_gas({"from": c.deployer}))

    for size in COMMITMENT_SIZES:
        array = rng.standard_normal(size).astype(np.float32)
        root, shape = tc.tensor_root(array), list(array.shape)
        for name, count in (("element", 1), ("row256", 256)):
            proof = tc.prove_run(array, size - count, count)
            gas[f"verify_{name}_{size}"] = estimate(harness.functions.verify_run(
                root, 1, shape, proof.first, list(proof.chunks), list(proof.path)))  # fmt: skip
        # a descent over the whole tensor: the defender's claim differs from the truth in its last element
        claimed = array.copy()
        claimed[-1] = np.float32(claimed[-1] + 1)
        true_levels = td.tree_levels([tc.chunk_leaf(x) for x in tc.chunks_of(array)])
        levels = td.tree_levels([tc.chunk_leaf(x) for x in tc.chunks_of(claimed)])
        open_call = descent.functions.open_game(c.worker, c.verifier, tc.tensor_root(claimed), 1, shape,
                                                DESCENT_LEVELS, 3_600)  # fmt: skip
        game_id = descent.functions.game_count().call() + 1
        gas[f"descent_open_{size}"] = c.send(open_call, c.deployer)
        height, position, posts, chooses = len(levels) - 1, 0, [], []
        while height:
            posted = td.descendants(levels, height, position, DESCENT_LEVELS)
            posts.append(c.send(descent.functions.post(game_id, posted), c.worker))
            child = td.honest_choice(true_levels, height, position, DESCENT_LEVELS, posted)
            chooses.append(c.send(descent.functions.choose(game_id, child, posted), c.verifier))
            steps = td.steps_at(height, DESCENT_LEVELS)
            height, position = height - steps, (position << steps) | child
        reveal = c.send(descent.functions.reveal(game_id, tc.chunks_of(claimed)[position]), c.worker)
        assert descent.functions.outcome_of(game_id).call()[0] == 3, "the benchmarked descent did not pin a chunk"
        gas[f"descent_post_{size}"], gas[f"descent_choose_{size}"] = max(posts), max(chooses)
        gas[f"descent_reveal_{size}"] = reveal
        gas[f"descent_rounds_{size}"] = len(posts)
        gas[f"descent_total_{size}"] = gas[f"descent_open_{size}"] + sum(posts) + sum(chooses) + reveal
    # state and record proofs do not depend on the tensor size: a state of 1 + 15 leaves, a record of 64 entries
    header = tc.StateHeader(rng.bytes(32), 7, None, 0, 112, 0, 3, 1234, rng.bytes(32), 40, 2, 16)
    leaves = [tc.header_leaf(header)] + [tc.state_tensor_leaf(f"t{i:02d}", rng.bytes(32)) for i in range(15)]
    name_hash, tensor_root = keccak(b"t03"), rng.bytes(32)
    leaves[4] = tc.state_tensor_leaf("t03", tensor_root)
    state_root = tc.tree_root(leaves, tc.STATE_NODE)
    gas["verify_state_tensor"] = estimate(harness.functions.verify_state_tensor(
        state_root, 16, 4, name_hash, tensor_root, tc.tree_proof(leaves, 4, tc.STATE_NODE)))  # fmt: skip
    header_call = harness.functions.open_header(state_root, 16, header.encode(), tc.tree_proof(leaves, 0, tc.STATE_NODE))
    header_call.call()
    gas["open_header"] = int(header_call.estimate_gas({"from": c.deployer}))
    width, j = 64, 40
    skeleton_leaf, out_roots = rng.bytes(32), [rng.bytes(32) for _ in range(3)]
    entry = keccak(b"\x17" + j.to_bytes(4, "big") + skeleton_leaf + b"".join(out_roots))
    record = [rng.bytes(32) for _ in range(j)] + [entry] + [tc.ZERO] * (width - j - 1)
    previous = tc.tree_root(record[:j] + [tc.ZERO] * (width - j), b"\x18")
    prefix, path = tc.tree_root(record, b"\x18"), tc.tree_proof(record, j, b"\x18")
    gas["verify_entry"] = estimate(harness.functions.verify_entry(prefix, width, j, skeleton_leaf, out_roots, path))
    gas["verify_prefix_step"] = estimate(harness.functions.verify_prefix_step(previous, prefix, width, j, entry, path))
    return gas


def measure(rpc_url: str) -> dict[str, dict]:
    """`{"gas_l3_<check>[_<size>]": {"value", "unit", "how"}}` measured on the anvil at `rpc_url`."""
    figures = {}
    for key, value in _gas(rpc_url).items():
        base, _, size = key.rpartition("_")
        how = f"{HOW[base]}; a binary32 tensor of {int(size):,} elements" if size.isdigit() else HOW[key]
        unit = "rounds" if key.startswith("descent_rounds") else "gas"
        figures[f"gas_l3_{key}"] = {"value": int(value), "unit": unit, "how": how}
    return figures


def render(figures: dict[str, dict]) -> str:
    """The docs/gas.md section: proof checks and the element descent, by tensor size."""
    if not any(k.startswith("gas_l3_") for k in figures):
        return ""

    def value(key: str) -> str:
        return f"{figures['gas_l3_' + key]['value']:,}"

    sized = [k for k in HOW if f"gas_l3_{k}_{COMMITMENT_SIZES[0]}" in figures]
    rows = "\n".join(f"| `{k}` | " + " | ".join(value(f"{k}_{n}") for n in COMMITMENT_SIZES) + f" | {HOW[k]} |"
                     for k in sized)  # fmt: skip
    flat = "\n".join(f"| `{k}` | {value(k)} | {HOW[k]} |" for k in HOW if f"gas_l3_{k}" in figures)
    return (
        "\n## Level 2-3: commitment proofs and the element descent\n\n"
        "The checks of `contracts/lib/commitments.vy` (docs/referee.md), each as one call of the test-only "
        "`CommitmentsHarness` (`eth_estimateGas`: 21,000 intrinsic gas and the calldata included), and every "
        f"move of a `TensorDescent` game that opens {DESCENT_LEVELS} levels per move (32 descendants) over a "
        "binary32 tensor whose claimed last element is wrong (an honest challenger; each move a transaction). "
        "The fields every move touches share one packed storage word, as in `Bisection`; the first post pays "
        "the zero to non-zero write of the descendants' hash slot.\n\n"
        "| check or move | " + " | ".join(f"{n:,} elements" for n in COMMITMENT_SIZES) + " | what |\n"
        "| --- | " + " | ".join("---:" for _ in COMMITMENT_SIZES) + " | --- |\n" + rows + "\n\n"
        "| check | gas | what |\n| --- | ---: | --- |\n" + flat + "\n"
    )
