"""Refereed disputes end to end on anvil, with NO arbiter process: the daemons play RefereeGame themselves.

The deployment refers the portable class to the referee (`refereed_class`, a short `referee_move_seconds`);
the test publishes that class as the arbiter account would, and starts no arbiter. A tiny portable GPT
(d 16, one block, 4 steps in 2 segments):

1. job A, by a `corrupt-op` worker (in step 3, the last of segment 1, the first `linear` kernel call's
   last positive output element has one mantissa bit flipped; it commits the roots of the run it really computed, and
   its dispute kits replay the same wrong call): the verifier daemon finds the SEGMENT 1 mismatch, reveals
   it with `reveal_refereed` (the game opens), builds its dispute kit in a child and plays as challenger;
   the worker daemon builds its own kit from its stored checkpoints and plays as defender. The step
   bisection pins step 3, the operation bisection that `linear` call, the tensor descent its chunk, and
   the referee recomputes the element on chain (the PROOF stage) and rules against the worker;
   `settle_refereed` slashes it. The verifier is stopped right after its first move and started again:
   it picks the game up from its duty, its kit on disk and its outbox. Then a reorg takes away the blocks
   from its next move on: the daemons send the lost moves again and the game goes on to the same ruling.
2. job B, by an honest worker, is challenged twice: by a lying challenger the test plays (SEGMENT 0,
   revealed through the SDK, then silent), whose clock runs out, and by the buggy verifier persona's
   daemon, which plays its game to the end steered to a value the worker computed right (element 0 of an
   AdamW entry): the referee recomputes that element on chain and rules for the worker. The honest
   worker's daemon defends both; both bonds go to the treasury and the job finalizes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_disputes import DAEMON, WORKER, Processes, cli, deploy_with_windows, wait_for

TOKEN = 10**18
PAYMENT = 40 * TOKEN
COLLATERAL = 100 * TOKEN
MOVE_S = 40  # covers a kit's replay with five daemons, their kit children and another test on two cores (20 did not in CI)
STAGE_STEPS, STAGE_PROOF = 1, 8  # RefereeGame.vy's stages (protocol.events.REFEREE_STAGES)
DEADLINE_S = 300
SALT = b"\x17" * 32
BUGGY = 8  # the buggy verifier persona's test account


def refereed_windows() -> dict[str, Any]:
    from engine.determinism import portable_env_class

    return {"execution_timeout": 150, "challenge_window": 40, "arbiter_window": 45, "reveal_window": 20,
            "max_segment_seconds": 60, "unbonding_delay": 200_000, "referee_move_seconds": MOVE_S,
            "refereed_class": portable_env_class("portable/1")[1]}  # fmt: skip


def gpt_spec(seed: int) -> Any:
    """A tiny portable GPT: d 16, one block, 4 steps in 2 segments."""
    from engine.presets import tiny_gpt_spec

    layers = [{"type": "embedding", "num_embeddings": 32, "embedding_dim": 16},
              {"type": "positional_embedding", "max_len": 32, "embedding_dim": 16},
              {"type": "transformer_block", "d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0},
              {"type": "layernorm", "normalized_shape": 16},
              {"type": "linear", "in_features": 16, "out_features": 32}]  # fmt: skip
    return tiny_gpt_spec(model={"input_shape": [32], "input_dtype": "int64", "layers": layers}, steps=4,
                         segment_steps=2, batch_size=4, seed=seed, schedule={"name": "constant"},
                         arithmetic="portable/1")  # fmt: skip


def run_result(data_dir: Path, job_id: int) -> dict[str, Any]:
    with sqlite3.connect(data_dir / "worker.sqlite", timeout=5) as db:
        row = db.execute("SELECT result FROM worker_jobs WHERE job_id=?", (job_id,)).fetchone()
    return json.loads(row[0])


@pytest.fixture
def own_anvil() -> Any:
    """An anvil of this test's own: the session anvil's history holds other tests' `evm_revert`s, and
    `anvil_reorg` over such a history was seen to land on a state without this test's contracts."""
    from protocol.chain import connect
    from protocol.devnet import start_anvil

    node = start_anvil()
    try:
        yield node, connect(node.rpc_url, timeout=30.0)
    finally:
        node.stop()


@pytest.mark.e2e
def test_the_daemons_play_refereed_disputes_without_an_arbiter(tmp_path, own_anvil, deployer, submitter, worker,
                                                               worker2, verifier, arbiter, treasury, submitter2):
    from eth_account import Account

    from engine.determinism import portable_env_class
    from protocol.artifacts import LocalStore
    from protocol.devnet import test_account_keys
    from protocol.client import TesseraClient
    from protocol.events import ClaimKind, DisputeStatus, JobState
    from protocol.spec import load_spec
    from protocol.state_naming import StateRootNaming
    from worker.referee_duty import agreed_binding

    anvil, w3 = own_anvil
    dep = deploy_with_windows(w3, deployer, refereed_windows(), tmp_path / "deployment")
    client = lambda account: TesseraClient(w3, dep, account, journal=None)  # noqa: E731
    sub = client(submitter)
    descriptor, portable = portable_env_class("portable/1")
    client(arbiter).send(client(arbiter).build_publish_env_class(portable, "file:///portable-class.json"))
    sub.faucet(1_000 * TOKEN)
    bond = sub.param("Disputes", "challenge_bond")
    liar = submitter2
    buggy = Account.from_key(test_account_keys(BUGGY + 1)[BUGGY])
    for account, stake in ((worker, COLLATERAL), (worker2, COLLATERAL), (verifier, 2 * bond), (liar, 2 * bond),
                           (buggy, 2 * bond)):  # fmt: skip
        c = client(account)
        c.faucet(500 * TOKEN)
        c.stake(stake)

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = Processes(tmp_path)
    rpc, path = anvil.rpc_url, dep.path
    spec_store = LocalStore(tmp_path / "specs")

    def post(spec: Any, payment: int, collateral: int) -> int:
        spec_store.put(spec.canonical_bytes())
        return sub.post_job(spec, payment, collateral, spec_store.uri).job_id

    def start_worker(name: str, account_index: int, behaviour: str, *extra: str) -> None:
        procs.start(name, cli("personas", rpc, path, f"TEST::{account_index}") + [
            "worker", "run", "--behaviour", behaviour, "--store", str(tmp_path / f"store-{name}"),
            "--data-dir", str(tmp_path / f"worker-{name}"), *WORKER, *extra], env)

    def reached(expected: dict[int, Any]) -> bool:
        w3.provider.make_request("evm_mine", [])  # keep chain time moving with wall time
        return {j: sub.job_state(j) for j in expected} == expected

    started = time.monotonic()
    deadline = started + DEADLINE_S
    def start_verifier(name: str) -> None:
        procs.start(name, cli("protocol.cli.main", rpc, path, "TEST::3") + [
            "verifier", "run", "--data-dir", str(tmp_path / "verifier"), "--verify-fraction", "0",
            "--watch-worker", worker2.address, "--segments-per-check", "2", *DAEMON], env)

    def verifier_moves() -> list[str]:
        w3.provider.make_request("evm_mine", [])  # chain time moves only with blocks: the clocks read it
        path = tmp_path / "verifier" / "verifier.sqlite"
        if not path.exists():
            return []
        try:
            with sqlite3.connect(path, timeout=5) as db:
                return [r[0] for r in db.execute("SELECT key FROM outbox_intents WHERE kind='referee' AND "
                                                 "state='confirmed'")]  # fmt: skip
        except sqlite3.OperationalError:
            return []

    def own_moves(older: set[str]) -> set[str]:
        """The restarted verifier's confirmed moves that only the challenger makes (`advance` and `timeout`
        anyone may send: the other daemon may send one again after the reorg, and ours is then not needed)."""
        return {m for m in set(verifier_moves()) - older if not m.endswith((":advance", ":timeout"))}

    def reorg_from_move(db_path: Path, older: set[str]) -> str:
        with sqlite3.connect(db_path, timeout=5) as db:
            rows = db.execute("SELECT key, block FROM outbox_intents WHERE kind='referee' AND state='confirmed' "
                              "ORDER BY block").fetchall()  # fmt: skip
        own = own_moves(older)
        key, block = next((k, b) for k, b in rows if k in own)
        reply = w3.provider.make_request("anvil_reorg", [w3.eth.block_number - block + 1, []])
        assert "error" not in reply, reply
        return key

    try:
        # each worker takes one job: the honest one pays its minimum, the other locks more than the corrupter takes
        honest = post(gpt_spec(401), PAYMENT, COLLATERAL)
        tampered = post(gpt_spec(402), PAYMENT // 2, COLLATERAL // 2)
        start_worker("honest", 2, "honest", "--min-payment", str(PAYMENT))
        start_worker("tamper", 6, "corrupt-op", "--max-collateral", str(COLLATERAL // 2))
        start_verifier("verifier")
        procs.start("buggy", cli("personas", rpc, path, f"TEST::{BUGGY}") + [
            "verifier", "run", "--data-dir", str(tmp_path / "buggy"), "--verify-fraction", "0",
            "--watch-worker", worker.address, "--segments-per-check", "2", *DAEMON], env)

        # B: the lying challenger files and reveals SEGMENT 0 on the honest job, then never moves again
        wait_for(lambda: reached({honest: JobState.COMMITTED}), "the honest commit", deadline, procs, ("honest",))
        liar_client = client(liar)
        view = sub.job(honest)
        spec = load_spec(spec_store.get(view.job.spec_hash))
        record = run_result(tmp_path / "worker-honest", honest)["metrics"]["step_record"]
        skeleton = (bytes.fromhex(record["skeleton_root"].removeprefix("0x")), int(record["length"]), int(record["per_epoch"]))
        binding = agreed_binding(spec, 0, skeleton)
        h_0 = LocalStore(tmp_path / "store-honest").get(view.state_hashes[0], naming=StateRootNaming(binding))
        lie, _, _ = liar_client.file_challenge(honest, "segment", 0, salt=SALT)
        liar_client.reveal_refereed(lie, 0, SALT, h_0, binding)

        # A: the verifier moves once, is stopped and started again, and plays the game to its end with the
        # tampering worker; B: the honest worker wins
        wait_for(verifier_moves, "the verifier's first referee move", deadline, procs, ("verifier", "tamper"))
        assert procs.stop("verifier") == 0
        before_restart = set(verifier_moves())
        start_verifier("verifier-restarted")
        # a reorg takes away the block of the restarted verifier's first challenger's move, and every block
        # after it: both daemons see their confirmed moves vanish and send them again
        wait_for(lambda: own_moves(before_restart), "the restarted verifier's first challenger's move", deadline,
                 procs, ("verifier-restarted", "tamper"))
        reorged = reorg_from_move(tmp_path / "verifier" / "verifier.sqlite", before_restart)
        expected = {tampered: JobState.REJECTED}
        wait_for(lambda: reached(expected), f"the refereed ruling {expected}", deadline, procs,
                 ("verifier-restarted", "tamper"))
        def honest_wins() -> bool:
            # the liar never moves: the honest worker wins its game on the clock, which only chain time runs
            # down (the daemons may have finished every other move, so no block comes unless one is mined)
            w3.provider.make_request("evm_mine", [])
            return [d.status for d in sub.disputes_of_job(honest)] == [DisputeStatus.WORKER_RIGHT] * 2

        wait_for(honest_wins, "the honest worker's two wins", deadline, procs, ("honest", "buggy"))
        gap = sub.job(honest).job.challenge_end - sub.chain_time() + 1
        w3.provider.make_request("evm_increaseTime", [max(gap, 0)])
        expected = {tampered: JobState.REJECTED, honest: JobState.FINALIZED}
        wait_for(lambda: reached(expected), f"the final states {expected}", deadline, procs, ("honest",))
    finally:
        codes = procs.stop_all()
    elapsed = time.monotonic() - started
    assert all(code == 0 for code in codes.values()), codes

    [dispute] = sub.disputes_of_job(tampered)
    assert (dispute.challenger, dispute.claim, dispute.segment, dispute.status) == (
        verifier.address, ClaimKind.SEGMENT, 1, DisputeStatus.WORKER_WRONG)
    events = sub.job(tampered).events
    [opened] = [e for e in events if e.name == "RefereeGameOpened"]
    [verdict] = [e for e in events if e.name == "Verdict"]
    assert opened.dispute_id == dispute.dispute_id and verdict.worker_wrong and verdict.slashed == COLLATERAL // 2
    assert verdict.evidence_uri == "" and verdict.rewarded == verifier.address  # ruled by the game, no arbiter
    game = sub.referee_game_view(dispute.dispute_id)
    assert game is not None and game.decided and game.defender_wrong
    # both daemons moved in the game (the worker's outbox and the verifier's hold referee moves), and the
    # restarted verifier sent no move twice (one intent per key: its outbox journal is the same)
    for db_path in (tmp_path / "worker-tamper" / "worker.sqlite", tmp_path / "verifier" / "verifier.sqlite"):
        with sqlite3.connect(db_path) as db:
            kinds = [r[0] for r in db.execute("SELECT kind FROM outbox_intents WHERE state='confirmed'")]
        assert "referee" in kinds, (db_path, kinds)
    moves = verifier_moves()
    # the verifier's moves ran through every stage down to naming the wrong element (no clock ran out)
    assert len(moves) == len(set(moves)) and not any(":timeout" in m for m in moves)
    assert {m.split(":")[3] for m in moves} >= {"steps", "ops", "descent", "element"}, moves
    assert "building the kit (step None)" not in procs.log("verifier-restarted")  # phase 1 read back from disk
    # the reorged move was found gone and sent again under its key (confirmed once more, by a later block)
    lost = [json.loads(line) for line in procs.log("verifier-restarted").splitlines() if '"receipt_lost"' in line]
    assert reorged in {entry.get("key") for entry in lost}, procs.log("verifier-restarted")[-3000:]
    assert reorged in moves

    assert {(d.challenger, d.status) for d in sub.disputes_of_job(honest)} == {
        (liar.address, DisputeStatus.WORKER_RIGHT), (buggy.address, DisputeStatus.WORKER_RIGHT)}
    verdicts = [e for e in sub.job(honest).events if e.name == "Verdict"]
    assert len(verdicts) == 2 and all(not v.worker_wrong and v.bond_forfeited == bond for v in verdicts)
    assert sub.owed(treasury.address)["Disputes"] >= 2 * bond
    # how each game ended: the liar's on its own clock in the step bisection; the buggy verifier's by the
    # referee's element rule (a PROOF-stage ruling for the defender: a timeout there would rule against it)
    ruled = {e.args.game_id: (e.args.defender_wrong, e.args.stage)
             for e in sub.referee_game.events.Ruled().get_logs(from_block=0)}  # fmt: skip
    by_challenger = {d.challenger: sub.game_of(d.dispute_id) for d in sub.disputes_of_job(honest)}
    assert ruled[by_challenger[liar.address]] == (False, STAGE_STEPS)
    assert ruled[by_challenger[buggy.address]] == (False, STAGE_PROOF)
    # the corrupting worker's game: lost at the element rule, on the step it corrupted
    assert ruled[sub.game_of(dispute.dispute_id)] == (True, STAGE_PROOF)
    assert game.step == 1  # the segment's second step: step 3 of the job, the one corrupted
    reward = COLLATERAL // 2 * sub.param("Disputes", "challenger_reward_bps") // 10_000
    assert sub.owed(verifier.address)["Disputes"] == reward
    print(f"refereed e2e: {elapsed:.0f}s, descriptor {descriptor}")
