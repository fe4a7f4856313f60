"""Gas of whole level-2/3 games (contracts/RefereeGame.vy), for `python -m bench.gas`.

The game is played by `personas.referee_game` over the record of step 0 of a portable MLP on
digits (64 -> 16 -> ReLU -> 10, batch 16, two steps a segment), and over a whole 20-step segment of the
tiny-GPT preset: the host's opening, the step bisection,
the header, the operation bisection, the reveal, the descent of the disputed output, the element and
its proofs; or, pinned at the link (index L), the next state's leaves, the disputed leaf and its link
proof (a wrong next state: the defender cannot prove and loses on its clock).
Every move is a transaction whose receipt's gasUsed is summed per party; the contracts (Bisection,
TensorDescent, ElementReferee, StateLink, the rules contracts, RefereeGame) are compiled from source with the pinned Vyper.
`python -m bench.game_gas` prints the figures alone.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARITY = 16  # both bisections
LEVELS = 5  # descent levels per move
MOVE_SECONDS = 3_600
TARGETS = {4: "relu", 5: "linear", 14: "adamw"}  # entries of the MLP step the games are pinned at (output 0; after the
# batch entries batch_index and the gathers of x and y)
# the tiny-GPT games: the first entry of each kernel (matmul and linear_backward: FoldRules' column proofs;
# layer_norm_backward … dropout_keep and the loss kernels: RowRules, cross-entropy its nll rows (OUTPUTS);
# batch_index and gather (the dataset's tokens): DataRules)
GPT_TARGETS = ("linear", "gelu", "adamw", "add", "fill_above_diagonal", "move", "softmax", "layer_norm", "matmul",
               "linear_backward", "layer_norm_backward", "scaled_keep", "where", "dropout_keep", "cross_entropy",
               "cross_entropy_backward", "batch_index", "gather", "adamw_scalars", "clip_scale")  # fmt: skip
# the output a game disputes where not output 0: cross-entropy's nll (its mean over the preset's 512 rows is a
# fold longer than one piece, which escalates)
OUTPUTS = {"cross_entropy": 1}
GPT_SEGMENT_STEPS = 20
PIECED = ("linear_backward_dw", "linear_backward_running")  # a dW in pieces: its element, a running value
LINK = "link"  # a game pinned at index L: P_{L-1} agreed, r_{t+1} disputed
WRONG_TENSOR = 5  # the tensor root the wrong next state gets wrong
CASES = {False: "honest", True: "wrong"}  # the defender's record: honest (a lying challenger) or one bit wrong
PARTIES = ("host", "defender", "challenger", "anyone")


def _mlp_spec() -> Any:
    from engine.presets import digits_spec

    return digits_spec(steps=4, segment_steps=2, batch_size=16, device="cpu", arithmetic="portable/1",
                       schedule={"name": "cosine", "warmup_steps": 1},
                       model={"input_shape": [64], "layers": [{"type": "linear", "in_features": 64, "out_features": 16},
                                                              {"type": "relu"},
                                                              {"type": "linear", "in_features": 16, "out_features": 10}]})  # fmt: skip


def _deploy(w3: Any, relative_path: str, *args: Any) -> Any:
    result = subprocess.run([sys.executable, "-m", "vyper", "-f", "abi,bytecode", relative_path], cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    abi_line, bytecode = result.stdout.strip().splitlines()
    abi = json.loads(abi_line)
    tx = w3.eth.contract(abi=abi, bytecode=bytecode.strip()).constructor(*args).transact({"from": w3.eth.accounts[-1]})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    return w3.eth.contract(address=receipt.contractAddress, abi=abi)


def measure(rpc_url: str) -> dict[str, dict]:
    """`{"gas_game_<entry>_<case>_<party>": {...}}` for the four games, and each game's total."""
    from web3 import Web3

    from engine.api import record_first_steps
    from personas.referee_game import deploy_referee_stack
    from protocol import tensor_commit as tc
    from protocol.deploy import RULES_CONTRACTS

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    contracts = deploy_referee_stack(w3, _deploy, RULES_CONTRACTS, ARITY, LEVELS, MOVE_SECONDS)
    host = contracts["host"]

    spec = _mlp_spec()
    states, records, bindings = record_first_steps(spec, None, 2)
    roots = [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    figures = _games(w3, contracts, "", states, bindings, records[0], roots, TARGETS)
    figures["game_record_length"] = {"value": len(records[0].entries), "unit": "entries",
                                     "how": "L, the kernel calls of the MLP step"}  # fmt: skip
    figures.update(_gpt_games(w3, contracts))
    figures.update(_largest_fold_elements(w3, host))
    figures.update(_largest_clip_element(w3, host))
    return figures


def _largest_clip_element(w3: Any, host: Any) -> dict[str, dict]:
    """The dearest prove_element ScalarRules lets an honest defender make (personas.clip_worst_case)."""
    from personas.clip_worst_case import largest_clip_proof

    gas, gradients = largest_clip_proof(w3, host, game_id=10_100)
    return {"gas_clip_largest_piece": {
        "value": gas, "unit": "gas", "target": 1_000_000,
        "how": f"prove_element of the dearest clip_scale piece ScalarRules accepts (64 terms, {gradients} gradients)"}}


def _largest_fold_elements(w3: Any, host: Any) -> dict[str, dict]:
    """The dearest prove_element FoldRules lets an honest defender make (personas.fold_worst_case), per kernel."""
    from personas.fold_worst_case import ADVERSE_FOLD_SCALES, KERNELS, largest_fold_proof, largest_piece_proof

    figures = {}
    for number, kernel in enumerate(KERNELS):
        # keccak words, ordinary values and adversarial ones: the dearest of them
        (gas, words), scales = max(((largest_fold_proof(w3, host, kernel, game_id=10_000 + 10 * number + n, scales=scales), scales)
                                    for n, scales in enumerate((None, *ADVERSE_FOLD_SCALES))), key=lambda found: found[0][0])  # fmt: skip
        values = "keccak words" if scales is None else f"the reads' normal draws times {scales[0]:g} and {scales[1]:g}"
        figures[f"gas_fold_largest_{kernel}"] = {
            "value": gas, "unit": "gas", "target": 1_000_000,
            "how": f"prove_element of the dearest {kernel} element FoldRules accepts ({words} column words; {values})"}
    gas, words = largest_piece_proof(w3, host, game_id=10_100)
    figures["gas_fold_largest_piece"] = {
        "value": gas, "unit": "gas", "target": 1_000_000,
        "how": f"prove_element of the persona's dearest fold piece (personas.fold_worst_case.piece_entry, with keccak words; {words} column words)"}
    figures.update(_largest_decoder_elements(w3, host))
    figures.update(_built_value_elements(w3, host))
    return figures


def _built_value_elements(w3: Any, host: Any) -> dict[str, dict]:
    """The dearest elements measured with values built for them (attacker reviews, 2026-12-07) at the caps cut for
    the margin (docs/referee.md "Margins"), with the widest skeletons (tests/unit/contracts/test_widest_skeletons.py
    plays the same)."""
    import numpy as np

    from personas import decoder_worst_case as dw
    from personas import row_worst_case as rw
    from personas.widest_skeleton import widest

    entry, element, design, unread = rw.cancelling_embedding(130, 5, 3)
    embedding = rw.loss_proof(w3, host, widest(entry, 0), 0, element, 10_200, np.random.default_rng(0), design=design,
                              unread=unread)  # fmt: skip
    linear = widest(dw.linear_entry(2, 110, 1), 0)
    gas, _ = dw.fold_proof(w3, host, linear, 0, 1, 10_201, design=dw.cancelling_linear(linear, 1))
    return {
        "gas_built_embedding_backward": {
            "value": embedding, "unit": "gas", "target": 1_000_000,
            "how": "prove_element of embedding_backward's one-piece dW over 130 positions of dy rows of 5 "
                   "(row_worst_case.cancelling_embedding: ids of non-zero bytes, dy's adds cancelling; widest skeleton)"},
        "gas_built_linear": {
            "value": gas, "unit": "gas", "target": 1_000_000,
            "how": "prove_element of a whole linear over x [2, 110], W [1, 110] and its bias "
                   "(decoder_worst_case.cancelling_linear: W subnormal, every add cancelling; widest skeleton)"},
    }  # fmt: skip


def _largest_decoder_elements(w3: Any, host: Any) -> dict[str, dict]:
    """The dearest prove_element of the decoder folds (personas.decoder_worst_case.sweep, every case; the
    test plays a sample), per kernel."""
    from personas.decoder_worst_case import sweep

    found = sweep(w3, host, first_game_id=20_000)
    figures = {}
    for kernel in ("linear", "fold_head_groups"):
        gas, _, case, output, element = max(f for f in found if f[1] == kernel)
        figures[f"gas_decoder_largest_{kernel}"] = {
            "value": gas, "unit": "gas", "target": 1_000_000,
            "how": f"prove_element of the dearest {kernel} element of personas.decoder_worst_case.sweep "
                   f"({len(found)} elements played; case {case}, output {output}, element {element})"}  # fmt: skip
    return figures


def _gpt_games(w3: Any, contracts: dict[str, Any]) -> dict[str, dict]:
    """The same games over a whole segment of the tiny-GPT preset (20 steps, so the step bisection runs
    two rounds), pinned at step 0 and at the first entry of each kernel in GPT_TARGETS."""
    import tempfile

    from engine.api import checkpoint_naming, record_first_steps, step_state_roots
    from engine.presets import tiny_gpt_spec
    from protocol import tensor_commit as tc
    from protocol.artifacts import LocalStore

    spec = tiny_gpt_spec(arithmetic="portable/1", device="cpu", steps=2 * GPT_SEGMENT_STEPS, segment_steps=GPT_SEGMENT_STEPS)
    with tempfile.TemporaryDirectory(prefix="tessera-game-gas-") as tmp:
        store = LocalStore(tmp)
        states, records, bindings = record_first_steps(spec, store, 1)
        rec = records[0]
        skeleton = (rec.skeleton_root(), len(rec.entries), bindings[0].per_epoch)
        # a portable training checkpoint is stored under its state root (docs/referee.md, section 2)
        h_0 = store.put(states[0], naming=checkpoint_naming(spec, store, 0, skeleton))
        roots = [bytes.fromhex(h[2:]) for h in step_state_roots(spec, store, 0, h_0, skeleton=skeleton)]
    assert roots[:2] == [tc.state_root(s, b) for s, b in zip(states, bindings, strict=True)]
    targets = {next(e.index for e in rec.entries if e.kernel == kernel): kernel for kernel in GPT_TARGETS}
    figures = _games(w3, contracts, "gpt_", states, bindings, rec, roots, targets)
    figures.update(_piece_games(w3, contracts, states, bindings, rec, roots))
    figures["game_gpt_record_length"] = {"value": len(rec.entries), "unit": "entries",
                                         "how": "L, the kernel calls of a tiny-GPT step"}  # fmt: skip
    return figures


def _piece_games(w3: Any, contracts: dict[str, Any], states: list[bytes], bindings: list[Any], rec: Any,
                 roots: list[bytes]) -> dict[str, dict]:  # fmt: skip
    """Games pinned at the tiny-GPT segment's first linear_backward whose dW FoldRules checks in pieces (a
    fold over the preset's 512 rows): at a dW element (its last piece, from a running value) and at its
    running values (a middle piece's, from the one before)."""
    from protocol import fold_rules
    from protocol.referee_kit import parse_skeleton

    target = next(e.index for e in rec.entries if e.kernel == "linear_backward"
                  and any(p.output == 1 for p in fold_rules.piecings(parse_skeleton(e.skeleton_bytes()))))  # fmt: skip
    figures = _games(w3, contracts, "gpt_", states, bindings, rec, roots, {target: "linear_backward"}, output=1, suffix="_dw",
                     include_link=False)
    figures.update(_games(w3, contracts, "gpt_", states, bindings, rec, roots, {target: "linear_backward"}, output=3,
                          suffix="_running", include_link=False))  # fmt: skip
    return figures


def _games(w3: Any, contracts: dict[str, Any], label: str, states: list[bytes], bindings: list[Any], rec: Any,
           roots: list[bytes], targets: dict[int, str], output: int = 0, suffix: str = "",
           include_link: bool = True) -> dict[str, dict]:  # fmt: skip
    """Play both cases of a game pinned at each target entry (at element size − 3 of `output`) and at the
    link, over step 0 of a segment whose honest state roots are `roots` (the agreed state first)."""
    from personas.referee_game import LINK as LINK_STAGE, Match, Side, corrupt, wrong_next_state
    from protocol import tensor_commit as tc

    what = "tiny-GPT segment" if label else "MLP step"
    next_leaves = tc.bound_state_leaves(states[1], bindings[1])
    figures: dict[str, dict] = {}
    for target, kernel in [*targets.items(), *([(len(rec.entries), LINK)] if include_link else [])]:
        assert kernel == LINK or rec.entries[target].kernel == kernel
        for wrong, case in CASES.items():
            truth = Side(roots, rec, next_leaves)
            if kernel == LINK:  # the lying challenger disputes a right tensor leaf; the wrong defender's is wrong
                element = 1 + WRONG_TENSOR
                defender = wrong_next_state(truth, WRONG_TENSOR) if wrong else truth
            else:
                chosen = output if output else OUTPUTS.get(kernel, 0)
                element = max(0, rec.entries[target].outputs[chosen].size - 3)  # (clip_scale's factor: its one element)
                later = [bytes([i]) * 32 for i in range(1, len(roots))]  # a wrong step 0 changes every later root
                defender = Side([roots[0], *later], corrupt(rec, target, element, chosen), next_leaves) if wrong else truth
            match = Match(w3, contracts, ARITY, LEVELS, states[0], bindings[0], defender, truth, honest_challenger=wrong,
                          target=target, target_element=element, output=chosen)  # fmt: skip
            if kernel == LINK and wrong:  # the defender cannot prove the wrong leaf: it loses on its clock
                match.play(LINK_STAGE, "defender")
                w3.provider.make_request("evm_increaseTime", [MOVE_SECONDS + 1])
                match.send("anyone", "host", "timeout", match.game_id)
            else:
                match.play()
            if match.ruling() != (True, wrong, False):
                raise RuntimeError(f"the {kernel} game ({case}) over the {what} ruled wrongly")
            key = f"gas_game_{label}{kernel}{suffix if kernel != LINK else ''}_{case}"
            for party in PARTIES:
                figures[f"{key}_{party}"] = {"value": match.gas[party], "unit": "gas",
                                             "how": f"{party}'s moves of a whole {kernel} game over the {what}"}
            figures[f"{key}_total"] = {"value": sum(match.gas.values()), "unit": "gas", "target": 5_000_000,
                                       "how": f"every move of a whole {kernel} game over the {what}"}
            figures[f"{key}_moves"] = {"value": len(match.move_seconds), "unit": "transactions",
                                       "how": f"every move of a whole {kernel} game over the {what}, the host's opening included"}
            figures[f"{key}_seconds_per_move"] = {
                "value": round(statistics.median(match.move_seconds), 4), "unit": "s",
                "how": "median wall time from sending a move to its receipt (anvil automining, web3 over HTTP)"}
    return figures


def render(figures: dict[str, dict]) -> str:
    """The docs/gas.md section: whole games, by pinned kernel and case, per party."""
    if not any(k.startswith("gas_game_") for k in figures):
        return ""

    def rows(label: str, kernels: list[str]) -> str:
        out = []
        for kernel in kernels:
            for case in CASES.values():
                key = f"gas_game_{label}{kernel}_{case}"
                cells = [f"{figures[f'{key}_{p}']['value']:,}" for p in (*PARTIES, "total", "moves")]
                out.append(f"| {kernel} | {case} | " + " | ".join(cells) + f" | {figures[f'{key}_seconds_per_move']['value']} |")
        return "\n".join(out)

    head = ("| pinned kernel | defender | host's open_game | defender's gas | challenger's gas | advance | total | moves "
            "| s a move |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    return (
        "\n## Level 2-3: a whole game (RefereeGame)\n\n"
        "Every move of a `RefereeGame` dispute over one step of a portable MLP on digits (64 → 16 → ReLU → 10, "
        f"batch 16; L = {figures['game_record_length']['value']} kernel calls), each a transaction, summed per "
        f"party: `open_game` (by the host, with the agreed state's header), the step bisection over a two-step segment, `post_record`, the operation bisection (k = {ARITY}), "
        f"`reveal_entry`, `dispute_output`, the descent ({LEVELS} levels a move), `dispute_element` and "
        "`prove_element` (the proofs and the element rule; `anyone` is the `advance` calls). 'honest': an honest "
        "defender against a challenger that disputes a correct entry; 'wrong': a defender whose record has one "
        "bit of one output element of that entry flipped, against the honest challenger. The 'link' rows are "
        "pinned at index L of the operation bisection (P_{L-1} agreed, the next state root disputed): "
        "`reveal_state` (every leaf of the next state), `dispute_leaf` and `prove_link`; 'honest': a challenger "
        "that disputes a right tensor leaf; 'wrong': an honest record with one tensor root of the next state "
        "wrong, against the honest challenger (the defender cannot prove its leaf and loses by `timeout`, "
        "counted under `advance`). 'moves' counts the transactions (the opening included) and 's a move' is "
        "the median from sending one to its receipt on anvil (automining). The issue's target for a whole "
        "segment dispute is 5,000,000.\n\n" + head + rows("", [*TARGETS.values(), LINK]) + "\n\n"
        "The same games over a whole segment of the tiny-GPT preset (`tiny_gpt_spec`: two blocks, d = 32, "
        f"dropout 0.1, batch 16, {GPT_SEGMENT_STEPS} steps a segment, so the step bisection takes two rounds; "
        f"L = {figures['game_gpt_record_length']['value']} kernel calls), pinned at step 0 and at the first "
        "`linear` (x of shape [16, 32, 32]: its rows are the leading axes), `gelu`, `adamw`, `add` (the positional "
        "embedding broadcast over the batch), `fill_above_diagonal`, `move` (a strided view of the q, k, v projection), "
        "`softmax` (rows of 32), `layer_norm` (rows of 32), `matmul` (the attention scores q·kᵀ: a row of q "
        "zipped with a column of kᵀ, 32 elements apart, proven by a column proof: FoldRules), `linear_backward` "
        "(its dx: a row of dy zipped with a column of W [32, 32]; FoldRules), and (RowRules) `layer_norm_backward` "
        "(dx: the rows of x̂ and dy, rstd, w), `scaled_keep` (a bool keep mask), `where` (dropout's select: a bool "
        "mask and a constant), `dropout_keep` (a bool output from r_t's header), `cross_entropy` (a row's loss "
        "nll[r], its output 1: z's row of 32 and the int64 target, an output of the batch's gather) and "
        "`cross_entropy_backward` entry, and (DataRules) `batch_index` "
        "(an int64 example id: the orders constant at r_t's header's cursor, hinted) and `gather` (the dataset's "
        "int64 tokens by those ids, the id hinted), and (ScalarRules) `adamw_scalars` (the schedule's scalars "
        "recomputed in binary64 for the step r_t's header proves) and `clip_scale` (the factor, from the last "
        "running Σ g², an own-output read) entry, or at the link:"
        "\n\n" + head + rows("gpt_", [*GPT_TARGETS, LINK, *PIECED]) + "\n" + _render_largest_folds(figures)
    )


# The loss pieces' worst cases are measured by tests/unit/contracts/test_loss_pieces.py (personas.row_worst_case),
# not by this bench: their paragraph is kept here so that a re-render of docs/gas.md keeps it.
LOSS_PIECES_PARAGRAPH = (
    'The loss folds in pieces (RowRules, docs/referee.md "Loss folds in pieces"; '
    '`personas.row_worst_case.largest_loss_piece_proof`, a test in '
    "tests/unit/contracts/test_loss_pieces.py): cross-entropy's mean over 2^30 rows, its last piece (256 "
    "nll rows read from the entry's own output after the running sum before them, then / R) 748,990 gas "
    'and a running sum 747,275; `embedding_backward` over dy of 2^31 binary32 (every id 0, so every '
    'position adds) at the three widths whose pieces load the most under MAX_PIECE_LOAD = 280 '
    '(`embedding_piece_sweep`: 128, 8, 64), a running value and a final element each, at most 746,068. '
    "The one-piece dW at a load of 392 (136 positions of dy rows of 4; MAX_EMBEDDING_LOAD, 404 until "
    '"Margins") costs 922,701 with these draws (the piece\'s '
    'rule is a loop of its own, so the whole fold pays no offset a position).'
)

# The rows in pieces' worst cases are measured by tests/unit/contracts/test_row_piece_games.py
# (personas.row_worst_case.largest_row_piece_proof), kept here like the loss pieces' paragraph.
ROW_PIECES_PARAGRAPH = (
    'The rows in pieces (RowPieceRules, docs/referee.md "Rows in pieces"; '
    "`personas.row_worst_case.largest_row_piece_proof`, a test in tests/unit/contracts/test_row_piece_games.py): "
    "rows over a source of 2^31 binary32, the piece placed where each of its row segments is two runs, every "
    "input under the deepest record path, the statistics runs of the entry's own output; the dearest statistic "
    "706,175 gas (`softmax`, a piece of 16 exps reading the row's final maximum), 755,640 (`softmax_backward`, "
    "64), 658,022 (`layer_norm`, 64), 716,920 (`rms_norm`, 128), 787,989 (`layer_norm_backward`, 32), 781,583 "
    "(`rms_norm_backward`, 32), 723,390 and 714,418 (`cross_entropy` and its backward over rows of 100 logits, "
    "16); the dearest output element 616,540 (`layer_norm_backward`'s dx, six reads), nll 477,252, dz 475,081. "
    "Before prove_element stopped copying its reads (2026-12-06) every figure was about 35,000 gas higher: "
    "pieces of 32 exps then cost 1,031,614 and norm-backward pieces of 64 up to 979,185, so those lengths were halved."
)

# The causal-LM loss's worst cases and games are measured by tests/unit/contracts/test_causal_lm_gas.py and
# test_causal_lm_games.py (personas.row_worst_case), kept here like the paragraphs above.
CAUSAL_LM_PARAGRAPH = (
    'The causal-LM loss (RowRules and RowPieceRules, docs/referee.md "The causal-LM loss"; tests/unit/contracts/'
    "test_causal_lm_gas.py, the same personas): over 2^30 rows, the mean's last piece (256 nll read from the entry's "
    "own output after the running sum, then / the count read from its own output) 787,763 gas, the count's last "
    "piece (256 int64 targets, 64 chunks, each 1 unless -1) 882,770, a running sum 770,358 and a running count "
    "883,428; the rows (always in pieces of 16, 100 logits) the dearest statistic 729,109, nll 483,604, the "
    "backward's statistic 721,736 and dz (which also reads the count) 545,358; over rows a model is sure of (nll "
    "near 1.2e-7 after a running sum of 2^20) the mean's piece 720,557 since float32's add returns a far larger "
    "operand at once (1,030,317 before; cross-entropy's mean 1,002,298). Games over a tiny Llama LM step "
    "(32 rows, test_causal_lm_games.py): prove_element 324,000 to 394,000 and the whole game 2.20M to 2.83M."
)

# SGD's and max pooling's games and worst cases are measured by tests/unit/contracts/test_sgd_games.py and
# test_pool_games.py, kept here like the paragraphs above.
CNN_PARAGRAPH = (
    "SGD's update (ScalarRules) and max pooling (DataRules) on the digits CNN (tests/unit/contracts/test_sgd_games.py, "
    "test_pool_games.py): an sgd element (p' or the momentum buffer at step 1) prove_element 352,000 to 376,000 gas, "
    "the whole game about 2.55M; max_pool's y and winners and max_pool_backward's dx 301,000 to 323,000, the game "
    "2.51M to 2.70M. The dearest max_pool element (a 3×3 window whose three rows each cross a 256-element boundary: "
    "six runs under the deepest record path) costs 650,080, a backward element 388,212. Its convolution, recorded as "
    "im2col, linear's folds and col2im (tests/unit/contracts/test_conv_games.py): an im2col element 235,000 (padding) "
    "to 281,000 gas, the conv's linear 394,000 to 414,000, dW's last piece over the 1,024 rows 613,000 to 633,000, "
    "col2im 389,000 to 409,000; each game 2.56M to 2.87M. A col2im element of 5 covering rows of 5 "
    "windows in one fold (five column reads, every value in a chunk of its own under the deepest record "
    "path) costs up to 1,003,745 (values near the smallest normal, columns spread over a 124² image), so one fold takes at "
    "most 4 rows (MAX_COL2IM_ROWS) and more rows are checked in pieces of whole rows, at most 20 values, from the running "
    "values the record adds, up to 20 rows, where the columns load at most 370 "
    "(tests/unit/contracts/test_col2im_piece_attacks.py, at the largest image each shape's cap takes, every source "
    "of MAX_NDIM axes): one fold of 4 rows of 4 904,024, the dearest piece 932,499 (4 rows of 5), then 892,504 and "
    "865,857 (6 × 6), 844,920 (10 × 10), 839,842 (8 × 8), 793,089 (20 × 20). Max pooling's backward "
    "over overlapping windows (3×3 by 2, in pieces of one window from the running values the record adds): "
    "prove_element 331,000 to 351,000 for dx or a running value (the game 2.60M to 2.74M), a copied slot 277,000 "
    "to 297,000; the dearest piece 444,056. Max pooling over windows of more than 3 rows (in pieces of 2 rows from the "
    "running best and place the record adds, k at most 112): the dearest piece at k = 112 (each row split at a "
    "256-element boundary into runs under the deepest record path, every value a new maximum and negative) 986,036 "
    "(967,764 with a source of one axis); at k = 127, the element rule's 256 values, it would cost 1,007,856 (one "
    "axis), which is why the cap is 112."
)


CLIP_GROUPS_PARAGRAPH = (
    "Clipping over more than 32 gradients, recorded as clip_sum groups and clip_factor (ScalarRules; a GPT of six "
    "blocks, 78 gradients: tests/unit/contracts/test_clip_groups.py): a later group's first piece, from the group "
    "before's last partial, prove_element 420,000 to 440,000 gas and the whole game 3.08M to 3.10M; a piece after "
    "it 644,000 to 664,000 (3.34M to 3.37M); the factor 247,000 to 267,000 (2.15M to 2.18M). The dearest piece "
    "(`personas.clip_worst_case.largest_clip_sum_proof`: a later group of 32 gradients of eight dims each, its "
    "start and its gradient under the deepest record path) costs 919,499 (961,239 while RefereeGame asked "
    "ElementReferee, which forwarded the clipping rules to ClipReferee; RefereeGame now calls ClipReferee itself)."
)


ADVERSE_VALUES_PARAGRAPH = (
    "Adversarial values (docs/referee.md \"Adversarial values\"): an audit of 2026-12-07 found the dearest accepted "
    "whole-row and fold elements at up to 1,292,925 gas with subnormal and near-smallest-normal values, where the "
    "binary32 soft-float took its general path on every operation. Since: `float32.vy`'s slower paths take no "
    "`_round_pack` (add and sub at most about 1,390 gas an operation, mul about 1,370, the fast paths unchanged), "
    "softmax_backward's, rms_norm's and rms_norm_backward's row caps are 128, 210 (now 200) and 64, and a fold in one piece keeps "
    "its load plus its values within MAX_WHOLE_WEIGHT = 538 (since: three times its load plus its values within "
    "1,122). With the adversarial scalings searched "
    "(`ADVERSE_SCALES`, `ADVERSE_FOLD_SCALES`, also played by the tests) the dearest elements measured are 967,461 gas "
    "(rms_norm at 210), 952,171 (embedding_backward), 912,195 (a whole fold), 960,429 (a fold piece), 945,483 (a "
    "decoder linear); with the skeletons at rank 8 (MAX_NDIM: about 19,000 gas more) and hand-built cancelling "
    "values (an attacker review) 986,208 (rms_norm), 954,775 (a whole fold), 985,542 (a fold piece). A second review "
    "proved under sources of MAX_NDIM axes (each proof carries and hashes its source's dims: about 4,600 gas a proof) "
    "and measured rms_norm's y at 210 at 1,005,582, so rms_norm's cap is now 200 and layer_norm's 108 (112: 993,200; since 104). "
    "Every persona now proves under such sources, and the tests play every skeleton at the longest the rules take "
    "(`personas.widest_skeleton`, tests/unit/contracts/test_widest_skeletons.py): the dearest measured are 994,711 "
    "(a fold piece), 986,036 (a max_pool piece), 983,411 (layer_norm's y), 975,446 (rms_norm's y), 970,663 (a "
    "decoder linear), 963,968 (a whole fold), 962,161 (a loss row), 961,251 (a clip_sum piece; 919,499 since RefereeGame calls ClipReferee itself), 932,499 (a col2im "
    "piece), 916,338 (a loss piece), 842,542 (a row piece). A search, not a proof over every value: a third review "
    "found whole folds down strided columns at up to 1,060,379 (now `3 · load + values <= 1,122`, the largest "
    "strided whole fold 976,640: docs/referee.md \"Fold weight\") and fold pieces straddling the tensor tree's "
    "subtrees at up to 1,080,263 (now weighed as in a kit-sized source within MAX_PIECE_WEIGHT = 620, the dearest "
    "967,638, since 944,034: \"Fold pieces\"; tests/unit/contracts/test_fold_strided_attack.py). A fifth review built rows, not "
    "scalings (every product a subnormal-operand multiply, every add onto a running sum an exact cancellation): "
    "softmax_backward's rows that do not divide 256 at up to 1,044,602 (127) and the norm backwards' over small x̂ at up "
    "to 1,035,523 (63); such rows are now whole only up to 104 and 52 (at most 965,733 so; the norm backwards' aligned rows of 64 988,224, so their caps are 52 too since \"Margins\"), and layer_norm's y at 108 994,636, so its cap is now 104 (976,910 at most: "
    "docs/referee.md \"Split caps\"; tests/unit/contracts/test_row_split_attack.py). A sixth review built values for "
    "the families not attacked so (row and loss pieces, loss rows, clipping, the decoder, max pooling's pieces) and "
    "found none over the target; the dearest measured were 993,481 (embedding_backward's one-piece dW with ids of "
    "non-zero bytes and dy's adds cancelling) and 992,711 (a whole linear over x [2, 114], W [1, 114] with W "
    "subnormal and every add cancelling; docs/referee.md \"Built values on the other families\"), so their caps "
    "were cut to keep such elements 2 % under the target (MAX_EMBEDDING_LOAD 392, MAX_LINEAR_WHOLE_LOAD 270: at "
    "most 974,594 and 977,109, both tests in tests/unit/contracts/test_widest_skeletons.py; docs/referee.md "
    "\"Margins\")."
)


def _render_largest_folds(figures: dict[str, dict]) -> str:
    """The paragraph on the dearest fold element FoldRules accepts."""
    if "gas_fold_largest_matmul" not in figures:
        return ""
    cells = ", ".join(f"{figures[f'gas_fold_largest_{k}']['value']:,} gas for `{k}` ({figures[f'gas_fold_largest_{k}']['how'].split('; ')[-1].rstrip(')')})"
                      for k in ("matmul", "layer_norm_backward"))  # fmt: skip
    return (
        "\nThe dearest `prove_element` FoldRules lets an honest defender make (`personas.fold_worst_case`, "
        "also a test): a fold of 123 terms whose two reads are contiguous columns of 123 binary32, 246 values and "
        "46 column words (a load of 292 and the largest weight accepted, MAX_WHOLE_WEIGHT = 1,122: three times the "
        "load plus the values, since a proof word costs about 1,220 gas and an adversarial value about 1,640; "
        "MAX_COLUMN_LOAD = 404 still bounds the load), both inputs "
        "earlier outputs of entries of five outputs (MAX_OUTPUTS) under the deepest record path (2^24 slots), each "
        "read a prefix of a source as large as a kit holds (2^31 binary32: 23 sibling words more a read), the "
        "values keccak words, ordinary draws or adversarial ones (`ADVERSE_FOLD_SCALES`), the dearest of them: "
        f"{cells} (the target is 1,000,000). A source of 2^40 chunks, which no kit holds, would "
        "add 24 words more.\n" + _render_largest_piece(figures) + "\n" + LOSS_PIECES_PARAGRAPH + "\n\n"
        + ROW_PIECES_PARAGRAPH + "\n\n" + CAUSAL_LM_PARAGRAPH + "\n\n" + CNN_PARAGRAPH + "\n\n" + CLIP_GROUPS_PARAGRAPH + "\n\n"
        + ADVERSE_VALUES_PARAGRAPH + "\n"
        + _render_largest_clip_piece(figures)
        + _render_largest_decoder(figures)
        + _render_built_values(figures)
    )


def _render_built_values(figures: dict[str, dict]) -> str:
    """The paragraph on the dearest elements measured, with the values built for them."""
    if "gas_built_linear" not in figures:
        return ""
    return (
        "\nThe dearest elements measured (attacker reviews; docs/referee.md \"Built values on the other families\"), "
        "played by the bench with the values built for them at the caps cut to keep them 2 % under the target "
        "(docs/referee.md \"Margins\"): "
        f"{figures['gas_built_embedding_backward']['value']:,} gas ({figures['gas_built_embedding_backward']['how']}) "
        f"and {figures['gas_built_linear']['value']:,} gas ({figures['gas_built_linear']['how']}); the target is "
        "1,000,000. These are a search's findings, not a bound over every value.\n"
    )


def _render_largest_clip_piece(figures: dict[str, dict]) -> str:
    """The paragraph on the dearest clip piece ScalarRules accepts."""
    if "gas_clip_largest_piece" not in figures:
        return ""
    return (
        "\nThe dearest `prove_element` ScalarRules lets an honest defender make (`personas.clip_worst_case`, "
        "also a test): the last 64-term piece of clipping's binary64 Σ g² in a clip_scale whose skeleton is "
        "as long as the rules read (4,096 bytes), its gradient an earlier output under the deepest record path "
        "read from a source of 2^31 binary32, the running value before it an own-output read: "
        f"{figures['gas_clip_largest_piece']['value']:,} gas.\n"
    )


def _render_largest_decoder(figures: dict[str, dict]) -> str:
    """The paragraph on the dearest decoder fold element (FoldRules' linear and fold_head_groups)."""
    if "gas_decoder_largest_linear" not in figures:
        return ""
    cells = "; ".join(f"`{k}` {figures[f'gas_decoder_largest_{k}']['value']:,} gas ({figures[f'gas_decoder_largest_{k}']['how']})"
                      for k in ("linear", "fold_head_groups"))  # fmt: skip
    return (
        "\nThe dearest decoder fold element (`personas.decoder_worst_case.sweep`, every case: linears of K = 12 "
        "to 1,000 over 9 rows with and without the bias, one piece and in pieces, x [2, 110] with W [1, 110] and "
        "its bias, and head groups of 128 to 256 heads 1 to 7 "
        "elements apart; the test `test_the_dearest_decoder_fold_element_costs_under_a_million_gas` plays a "
        f"sample): {cells}.\n"
    )


def _render_largest_piece(figures: dict[str, dict]) -> str:
    """The paragraph on the dearest fold piece (a fold checked in pieces from its running values)."""
    if "gas_fold_largest_piece" not in figures:
        return ""
    return (
        "\nFolds checked in pieces (`personas.fold_worst_case`): a calibration sweep over 1,787 pieced geometries of "
        "`linear_backward`, `layer_norm_backward` and `matmul` at rank 8, each at the start whose column proofs are "
        "longest (`calibration_geometries` and `dearest_start`), measured the dearest piece at 948,502 gas with "
        "ADVERSE_FOLD_SCALES[1] (a dW over x [129, 127] and dy [129, 255]). The persona the tests and the bench play "
        "(`largest_piece_proof`) is a `linear_backward` dx piece of 8 terms, dy's row and W's column 4,095 apart (x and dy [64, 4,095]: every "
        "W value its own chunk; MAX_PIECE_WEIGHT = 620, a piece's words counted as in a source of 2^28 chunks), "
        "inputs as above, the running value before it a REF_SELF run of the entry's own running values: "
        f"{figures['gas_fold_largest_piece']['value']:,} gas with keccak words (944,034 with ADVERSE_FOLD_SCALES[1], "
        "943,246 with cancelling values). The plan of a pieced entry finds every folded output's piece length (a "
        "piece's gas less its words and values is up to about 770,000, a whole fold's about 506,000), which is why "
        "a piece's weight is capped lower than one piece's.\n"
    )


if __name__ == "__main__":
    from protocol.devnet import start_anvil

    with start_anvil() as anvil:
        result = measure(anvil.rpc_url)
    print(json.dumps(result, indent=1))
    print(render(result))
