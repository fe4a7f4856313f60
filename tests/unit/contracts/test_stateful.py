"""Hypothesis stateful test over the whole protocol on ape's in-process chain.

Random sequences of stake / request_unstake / withdraw / post / cancel / claim / commit / expire /
file / reveal / verdict / timeout / expire_reveal / close / finalize / withdraw credits, with time
travel, and any number of disputes open on one job at once (protocol v2). A Python model predicts
every outcome (success or the exact revert) and after every step the chain must equal the model:
- no token is created or lost: every holder's balance equals the model's, and the sum over all
  holders is the token's total supply; each contract holds exactly the obligations it tracks
  (escrow: live payments + accrued fees + refunds owed; staking: all stake; disputes: credits owed);
- staked = available + locked + unbonding for every staker, each part as the model says, and locked
  stake is exactly the collateral of its live jobs plus the bonds of its open disputes;
- every job's stored record equals keccak(job) with the model's state, so a settled job never
  changes again and its payment left exactly once; a job with a dispute open never finalizes;
- a slash takes exactly the job's collateral, never more; a losing bond goes to the treasury.

Default 24 examples of up to 8 steps (and 12 dispute-only runs of up to 16 steps from two committed jobs, where
several disputes are open on one job in most runs); TESSERA_HYPOTHESIS_PROFILE=thorough runs 3,000 of up to 25.
TESSERA_STATEFUL_EXAMPLES and TESSERA_STATEFUL_STEPS override either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ape
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.unit.contracts.helpers import (
    E18,
    KIND,
    PARAMS,
    REPLAY_FACTOR,
    STATES,
    Job,
    JobDriver,
    claim_key,
    one_event,
    state_hashes,
)

THOROUGH = os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough"
EXAMPLES = int(os.environ.get("TESSERA_STATEFUL_EXAMPLES", "3000" if THOROUGH else "16"))
BPS = 10_000
LIVE = {"Open", "Claimed", "Committed", "Challenged"}


@dataclass
class StakeModel:
    available: int = 0
    locked: int = 0
    unbonding: int = 0
    release_at: int = 0


@dataclass
class JobModel:
    job: Job
    state: str
    hashes: list = field(default_factory=list)
    timed_out: bool = False  # a dispute of it passed the arbiter's window: void, never resume
    settled_at: int = 0  # when it was Rejected or Voided by Disputes


@dataclass
class DisputeModel:
    job_id: int
    challenger: str
    kind: str
    segment: int
    salt: bytes
    filed_at: int
    status: str = "filed"  # filed, revealed, then worker_wrong / worker_right / voided / closed / unrevealed
    deadline: int = 0


OPEN_DISPUTE = {"filed", "revealed"}

def test_protocol_state_machine(project, deployer, funded, chain, submitter, submitter2, worker, worker2, verifier, arbiter, treasury):
    s = funded
    drv = JobDriver(s, chain)
    inspector = deployer.deploy(project.Inspector)
    submitters = [submitter, submitter2]
    stakers = [worker, worker2, verifier]
    holders = {a.address: a for a in [submitter, submitter2, worker, worker2, verifier, arbiter, treasury]}
    contracts = {"escrow": s.escrow.address, "staking": s.staking.address, "disputes": s.disputes.address}

    class Protocol(RuleBasedStateMachine):
        @initialize()
        def start(self):
            self.snapshot = chain.snapshot()
            self.balances = {addr: s.token.balanceOf(addr) for addr in [*holders, *contracts.values()]}
            self.stakes = {
                a.address: StakeModel(available=s.staking.available_of(a)) for a in stakers
            }
            self.jobs: dict[int, JobModel] = {}
            self.fees = s.escrow.fees_accrued()
            self.base_job_count = s.escrow.job_count()
            self.base_dispute_count = s.disputes.dispute_count()
            self.disputes: dict[int, DisputeModel] = {}
            self.escrow_owed: dict[str, int] = {a: s.escrow.owed(a) for a in holders}
            self.disputes_owed: dict[str, int] = {a: s.disputes.owed(a) for a in holders}
            self.leaders: dict[bytes, int] = {}

        def teardown(self):
            if hasattr(self, "snapshot"):
                chain.restore(self.snapshot)

        # ------------------------------------------------------------ helpers

        def move(self, frm: str, to: str, amount: int):
            self.balances[frm] -= amount
            self.balances[to] += amount

        def pick(self, data, states: set[str]):
            ids = sorted(i for i, j in self.jobs.items() if j.state in states)
            if not ids:
                return None
            return data.draw(st.sampled_from(ids))

        def now(self) -> int:
            return chain.pending_timestamp

        # ------------------------------------------------------------ staking

        @rule(who=st.sampled_from(range(3)), amount=st.integers(1, 300))
        def stake(self, who, amount):
            a = stakers[who]
            s.staking.stake(amount * E18, sender=a)
            self.stakes[a.address].available += amount * E18
            self.move(a.address, contracts["staking"], amount * E18)

        @rule(who=st.sampled_from(range(3)), amount=st.integers(1, 300))
        def request_unstake(self, who, amount):
            a = stakers[who]
            m = self.stakes[a.address]
            if amount * E18 > m.available:
                with ape.reverts("staking: insufficient available stake"):
                    s.staking.request_unstake(amount * E18, sender=a)
                return
            receipt = s.staking.request_unstake(amount * E18, sender=a)
            m.available -= amount * E18
            m.unbonding += amount * E18
            m.release_at = one_event(receipt, s.staking.UnstakeRequested).release_at
            assert m.release_at == receipt.timestamp + PARAMS["unbonding_delay"]

        @rule(who=st.sampled_from(range(3)))
        def withdraw(self, who):
            a = stakers[who]
            m = self.stakes[a.address]
            if m.unbonding == 0:
                with ape.reverts("staking: nothing unbonding"):
                    s.staking.withdraw(sender=a)
            elif self.now() < m.release_at:
                with ape.reverts("staking: still unbonding"):
                    s.staking.withdraw(sender=a)
            else:
                s.staking.withdraw(sender=a)
                self.move(contracts["staking"], a.address, m.unbonding)
                m.unbonding = 0
                m.release_at = 0

        # ------------------------------------------------------------ jobs

        @rule(who=st.sampled_from(range(2)), payment=st.integers(1, 100), collateral=st.integers(1, 250), n=st.integers(1, 8))
        def post(self, who, payment, collateral, n):
            a = submitters[who]
            job_id, job, _ = drv.post(a, payment=payment * E18, collateral=collateral * E18, n=n)
            assert job_id == self.base_job_count + len(self.jobs) + 1
            self.jobs[job_id] = JobModel(job=job, state="Open", hashes=state_hashes(n, salt=job_id))
            self.move(a.address, contracts["escrow"], job.payment)

        @rule(who=st.sampled_from(range(2)), n=st.integers(1, 8))
        def committed_job(self, who, n):
            """post + claim + commit in one step, so dispute rounds are reached in short runs."""
            self.add_committed_job(who, n)

        def add_committed_job(self, who, n):
            a, w = submitters[who], stakers[who]
            stake = self.stakes[w.address]
            if stake.available < 20 * E18:
                return
            job_id, job, _ = drv.post(a, payment=10 * E18, collateral=20 * E18, n=n)
            self.move(a.address, contracts["escrow"], job.payment)
            job, _ = drv.claim(job_id, job, w)
            self.lock(w.address, job.collateral)
            hashes = state_hashes(n, salt=job_id)
            job, _ = drv.commit(job_id, job, w, hashes=hashes)
            self.jobs[job_id] = JobModel(job=job, state="Committed", hashes=hashes)

        @rule(data=st.data())
        def cancel(self, data):
            job_id = self.pick(data, {"Open"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            s.escrow.cancel(job_id, m.job.as_tuple(), sender=holders[m.job.submitter])
            m.state = "Cancelled"
            self.move(contracts["escrow"], m.job.submitter, m.job.payment)

        @rule(data=st.data(), who=st.sampled_from(range(2)))
        def claim(self, data, who):
            job_id = self.pick(data, {"Open"})
            if job_id is None:
                return
            m, a = self.jobs[job_id], stakers[who]
            stake = self.stakes[a.address]
            if stake.available < m.job.collateral:
                with ape.reverts("staking: insufficient available stake"):
                    s.escrow.claim(job_id, m.job.as_tuple(), sender=a)
                return
            m.job, _ = drv.claim(job_id, m.job, a)
            m.state = "Claimed"
            stake.available -= m.job.collateral
            stake.locked += m.job.collateral

        @rule(data=st.data())
        def commit(self, data):
            job_id = self.pick(data, {"Claimed"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            a = holders[m.job.worker]
            if self.now() > m.job.deadline:
                with ape.reverts("escrow: deadline passed"):
                    drv.commit(job_id, m.job, a, hashes=m.hashes)
                return
            if data.draw(st.booleans(), label="wrong trace length first"):
                # The escrow computes the root from the trace itself: only N + 1 hashes are a trace.
                wrong = m.hashes + [m.hashes[0]] if data.draw(st.booleans()) else m.hashes[:-1]
                with ape.reverts("escrow: trace length is not N + 1"):
                    s.escrow.commit(job_id, m.job.as_tuple(), wrong, b"\x22" * 32, m.job.env_class, "u", sender=a)
            # drv.commit keeps the model's result_root = protocol.merkle's root of m.hashes; the
            # per-step record invariant then proves the escrow computed that same root.
            m.job, _ = drv.commit(job_id, m.job, a, hashes=m.hashes)
            m.state = "Committed"

        @rule(data=st.data())
        def expire(self, data):
            job_id = self.pick(data, {"Claimed"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            if self.now() <= m.job.deadline:
                with ape.reverts("escrow: deadline not passed"):
                    s.escrow.expire(job_id, m.job.as_tuple(), sender=verifier)
                return
            receipt = s.escrow.expire(job_id, m.job.as_tuple(), sender=verifier)
            comp = m.job.collateral * PARAMS["expiry_compensation_bps"] // BPS
            assert one_event(receipt, s.escrow.JobExpired).compensation == comp
            m.state = "Expired"
            stake = self.stakes[m.job.worker]
            stake.locked -= m.job.collateral
            stake.available += m.job.collateral - comp
            self.move(contracts["staking"], contracts["escrow"], comp)
            self.escrow_owed[m.job.submitter] += m.job.payment + comp

        @rule(data=st.data())
        def finalize(self, data):
            job_id = self.pick(data, {"Committed", "Challenged"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            if m.state == "Challenged":  # any open dispute blocks finalization, window or not
                with ape.reverts("escrow: job not committed"):
                    s.escrow.finalize(job_id, m.job.as_tuple(), sender=verifier)
                return
            if self.now() < m.job.challenge_end:
                with ape.reverts("escrow: challenge window open"):
                    s.escrow.finalize(job_id, m.job.as_tuple(), sender=verifier)
                return
            s.escrow.finalize(job_id, m.job.as_tuple(), sender=verifier)
            fee = m.job.payment * PARAMS["fee_bps"] // BPS
            m.state = "Finalized"
            self.fees += fee
            stake = self.stakes[m.job.worker]
            stake.locked -= m.job.collateral
            stake.available += m.job.collateral
            self.move(contracts["escrow"], m.job.worker, m.job.payment - fee)

        # ------------------------------------------------------------ disputes (parallel)

        def open_count(self, job_id: int) -> int:
            return sum(1 for x in self.disputes.values() if x.job_id == job_id and x.status in OPEN_DISPUTE)

        def pick_dispute(self, data, statuses: set[str]):
            ids = sorted(i for i, x in self.disputes.items() if x.status in statuses)
            return data.draw(st.sampled_from(ids)) if ids else None

        def lock(self, who: str, amount: int):
            self.stakes[who].available -= amount
            self.stakes[who].locked += amount

        def unlock(self, who: str, amount: int):
            self.stakes[who].locked -= amount
            self.stakes[who].available += amount

        def forfeit(self, who: str, amount: int):
            self.stakes[who].locked -= amount  # slash takes locked first, and the bond is locked
            self.move(contracts["staking"], contracts["disputes"], amount)
            self.disputes_owed[treasury.address] += amount

        def settled_in_time(self, x: "DisputeModel") -> bool:
            settled = self.jobs[x.job_id].settled_at
            return settled != 0 and settled <= x.filed_at + PARAMS["reveal_window"]

        def settle_if_idle(self, job_id: int, timestamp: int):
            m = self.jobs[job_id]
            if self.open_count(job_id) != 0 or m.state != "Challenged":
                return
            if not m.timed_out:
                m.state = "Committed"
                return
            m.state = "Voided"  # the neutral outcome: refund, collateral back, nobody paid
            m.settled_at = timestamp
            self.escrow_owed[m.job.submitter] += m.job.payment
            self.unlock(m.job.worker, m.job.collateral)

        @rule(data=st.data(), who=st.sampled_from(range(3)))
        def file(self, data, who):
            job_id = self.pick(data, {"Committed", "Challenged"})
            if job_id is None:
                return
            m, a = self.jobs[job_id], stakers[who]
            kind = data.draw(st.sampled_from(sorted(KIND)))
            top = m.job.num_segments if kind == "unavailable" else m.job.num_segments - 1
            segment = {"initial": 0, "output": m.job.num_segments}.get(kind, data.draw(st.integers(0, top)))
            salt = data.draw(st.binary(min_size=32, max_size=32))
            if self.now() >= m.job.challenge_end:
                with ape.reverts("disputes: challenge window closed"):
                    drv.file(job_id, m.job, a, kind, segment, salt)
                return
            if a.address == m.job.worker:
                with ape.reverts("disputes: worker cannot challenge"):
                    drv.file(job_id, m.job, a, kind, segment, salt)
                return
            if self.stakes[a.address].available < PARAMS["challenge_bond"]:
                with ape.reverts("disputes: available stake below the bond"):
                    drv.file(job_id, m.job, a, kind, segment, salt)
                return
            dispute_id, receipt = drv.file(job_id, m.job, a, kind, segment, salt)
            assert dispute_id == self.base_dispute_count + len(self.disputes) + 1
            self.disputes[dispute_id] = DisputeModel(job_id, a.address, kind, segment, salt, receipt.timestamp)
            self.lock(a.address, PARAMS["challenge_bond"])
            m.state = "Challenged"

        @rule(data=st.data())
        def reveal(self, data):
            dispute_id = self.pick_dispute(data, {"filed"})
            if dispute_id is None:
                return
            x = self.disputes[dispute_id]
            m = self.jobs[x.job_id]
            chain.mine()  # a reveal comes in a later block than its filing
            if self.now() > x.filed_at + PARAMS["reveal_window"]:
                with ape.reverts("disputes: reveal window closed"):
                    drv.reveal(dispute_id, m.job, holders[x.challenger], m.hashes, x.kind, x.segment, x.salt)
                return
            if m.state != "Challenged":
                with ape.reverts("disputes: job already settled"):
                    drv.reveal(dispute_id, m.job, holders[x.challenger], m.hashes, x.kind, x.segment, x.salt)
                return
            receipt = drv.reveal(dispute_id, m.job, holders[x.challenger], m.hashes, x.kind, x.segment, x.salt)
            x.deadline = one_event(receipt, s.disputes.ChallengeRevealed).arbiter_deadline
            assert x.deadline == receipt.timestamp + PARAMS["arbiter_window"] + REPLAY_FACTOR * m.job.segment_seconds
            x.status = "revealed"
            key = claim_key(x.job_id, x.kind, x.segment, m.job.num_segments)
            self.leaders[key] = min(self.leaders.get(key, dispute_id), dispute_id)

        @rule(data=st.data(), worker_wrong=st.booleans())
        def verdict(self, data, worker_wrong):
            dispute_id = self.pick_dispute(data, {"revealed"})
            if dispute_id is None:
                return
            x = self.disputes[dispute_id]
            m = self.jobs[x.job_id]
            args = (dispute_id, m.job.as_tuple(), worker_wrong, b"\x01" * 32, "e")
            if self.now() > x.deadline:
                with ape.reverts("disputes: arbiter window closed"):
                    s.disputes.verdict(*args, sender=arbiter)
                return
            if m.state != "Challenged":
                with ape.reverts("disputes: job already settled"):
                    s.disputes.verdict(*args, sender=arbiter)
                return
            receipt = s.disputes.verdict(*args, sender=arbiter)
            bond = PARAMS["challenge_bond"]
            if worker_wrong:
                ev = one_event(receipt, s.disputes.Verdict)
                slashed = ev.slashed
                assert slashed == m.job.collateral  # never more than the job's backing
                rewarded = self.disputes[self.leaders[claim_key(x.job_id, x.kind, x.segment, m.job.num_segments)]].challenger
                assert ev.rewarded == rewarded  # the earliest filer of the claim, never a later copy
                reward = slashed * PARAMS["challenger_reward_bps"] // BPS
                comp = slashed * PARAMS["submitter_compensation_bps"] // BPS
                self.stakes[m.job.worker].locked -= slashed
                self.move(contracts["staking"], contracts["disputes"], slashed)
                self.disputes_owed[rewarded] += reward
                self.disputes_owed[m.job.submitter] += comp
                self.disputes_owed[treasury.address] += slashed - reward - comp
                self.escrow_owed[m.job.submitter] += m.job.payment
                self.unlock(x.challenger, bond)
                x.status = "worker_wrong"
                m.state = "Rejected"
                m.settled_at = receipt.timestamp
            else:
                if x.kind == "unavailable":
                    part = bond * s.disputes.UNAVAILABLE_FORFEIT_BPS() // BPS
                    self.forfeit(x.challenger, part)
                    self.unlock(x.challenger, bond - part)
                else:
                    self.forfeit(x.challenger, bond)
                x.status = "worker_right"
                self.settle_if_idle(x.job_id, receipt.timestamp)

        @rule(data=st.data())
        def timeout(self, data):
            dispute_id = self.pick_dispute(data, {"revealed"})
            if dispute_id is None:
                return
            x = self.disputes[dispute_id]
            m = self.jobs[x.job_id]
            if self.now() <= x.deadline:
                with ape.reverts("disputes: arbiter window open"):
                    s.disputes.timeout(dispute_id, m.job.as_tuple(), sender=submitter)
                return
            receipt = s.disputes.timeout(dispute_id, m.job.as_tuple(), sender=submitter)
            x.status = "voided"
            self.unlock(x.challenger, PARAMS["challenge_bond"])
            m.timed_out = True
            self.settle_if_idle(x.job_id, receipt.timestamp)  # the last to close voids

        @rule(data=st.data())
        def expire_reveal(self, data):
            dispute_id = self.pick_dispute(data, {"filed"})
            if dispute_id is None:
                return
            x = self.disputes[dispute_id]
            m = self.jobs[x.job_id]
            if self.now() <= x.filed_at + PARAMS["reveal_window"]:
                with ape.reverts("disputes: reveal window open"):
                    s.disputes.expire_reveal(dispute_id, m.job.as_tuple(), sender=submitter)
                return
            receipt = s.disputes.expire_reveal(dispute_id, m.job.as_tuple(), sender=submitter)
            if self.settled_in_time(x):  # nothing was left to reveal against
                x.status = "closed"
                self.unlock(x.challenger, PARAMS["challenge_bond"])
                return
            x.status = "unrevealed"
            self.forfeit(x.challenger, PARAMS["challenge_bond"])
            self.settle_if_idle(x.job_id, receipt.timestamp)

        @rule(data=st.data())
        def close(self, data):
            dispute_id = self.pick_dispute(data, OPEN_DISPUTE)
            if dispute_id is None:
                return
            x = self.disputes[dispute_id]
            if self.jobs[x.job_id].state not in ("Rejected", "Voided"):
                with ape.reverts("disputes: job not settled"):
                    s.disputes.close(dispute_id, sender=submitter)
                return
            s.disputes.close(dispute_id, sender=submitter)
            if x.status == "filed" and not self.settled_in_time(x):  # its window had ended unrevealed
                x.status = "unrevealed"
                self.forfeit(x.challenger, PARAMS["challenge_bond"])
                return
            x.status = "closed"
            self.unlock(x.challenger, PARAMS["challenge_bond"])

        @rule(who=st.sampled_from(sorted(holders)), escrow_side=st.booleans())
        def withdraw_credit(self, who, escrow_side):
            ledger, contract = (self.escrow_owed, s.escrow) if escrow_side else (self.disputes_owed, s.disputes)
            name = "escrow" if escrow_side else "disputes"
            if ledger[who] == 0:
                with ape.reverts(f"{name}: nothing owed"):
                    contract.withdraw(sender=holders[who])
                return
            contract.withdraw(sender=holders[who])
            self.move(contracts[name], who, ledger[who])
            ledger[who] = 0

        @rule(data=st.data())
        def settled_job_is_frozen(self, data):
            job_id = self.pick(data, {"Finalized", "Cancelled", "Expired", "Rejected", "Voided"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            with ape.reverts():
                s.escrow.finalize(job_id, m.job.as_tuple(), sender=verifier)
            with ape.reverts():
                s.escrow.cancel(job_id, m.job.as_tuple(), sender=holders[m.job.submitter])
            with ape.reverts():
                s.escrow.expire(job_id, m.job.as_tuple(), sender=verifier)

        @rule(seconds=st.sampled_from([1, 601, 3_599, 3_631, 7_200, 15_000]))
        def warp(self, seconds):
            chain.pending_timestamp += seconds

        # ------------------------------------------------------------ invariants

        @invariant()
        def chain_equals_model(self):
            if not hasattr(self, "snapshot"):
                return
            addrs = list(self.balances)
            staker_addrs = list(self.stakes)
            first = self.base_job_count + 1
            last = self.base_job_count + len(self.jobs)
            balances, parts, records, fees, supply = inspector.read(
                s.token, s.staking, s.escrow, addrs, staker_addrs, first, last
            )
            for addr, actual in zip(addrs, balances):
                assert actual == self.balances[addr], addr
            assert sum(self.balances.values()) == supply  # no token created or lost
            live_payments = sum(j.job.payment for j in self.jobs.values() if j.state in LIVE)
            assert fees == self.fees
            assert self.balances[contracts["escrow"]] == live_payments + self.fees + sum(self.escrow_owed.values())
            assert self.balances[contracts["disputes"]] == sum(self.disputes_owed.values())
            total_stake = 0
            for k, addr in enumerate(staker_addrs):
                m = self.stakes[addr]
                available, locked, unbonding, staked = parts[4 * k : 4 * k + 4]
                assert (available, locked, unbonding) == (m.available, m.locked, m.unbonding), addr
                assert staked == available + locked + unbonding
                backing = sum(
                    j.job.collateral for j in self.jobs.values()
                    if j.job.worker == addr and j.state in {"Claimed", "Committed", "Challenged"}
                ) + sum(
                    PARAMS["challenge_bond"] for x in self.disputes.values()
                    if x.challenger == addr and x.status in OPEN_DISPUTE
                )  # fmt: skip
                assert m.locked == backing
                total_stake += staked
            assert self.balances[contracts["staking"]] == total_stake
            for offset, record in enumerate(records):
                m = self.jobs[first + offset]
                assert record == m.job.record(STATES[m.state]), first + offset
                # a job is Challenged exactly while it has an open dispute, except that disputes left open
                # when another one rejected or voided it stay open until closed
                open_disputes = self.open_count(first + offset)
                assert (m.state == "Challenged") <= (open_disputes > 0)
                assert (open_disputes > 0) <= (m.state in ("Challenged", "Rejected", "Voided"))

    class ParallelDisputes(Protocol):
        """The same model and invariants, started from two committed jobs and driven only by dispute
        moves, time and settlement, so that several disputes are open on one job in most runs."""

        @initialize()
        def start(self):
            super().start()
            self.add_committed_job(0, 4)
            self.add_committed_job(1, 2)

    for name in ("stake", "request_unstake", "withdraw", "post", "committed_job", "cancel", "claim", "commit",
                 "expire", "settled_job_is_frozen"):
        setattr(ParallelDisputes, name, lambda self, *args, **kwargs: None)

    steps = int(os.environ.get("TESSERA_STATEFUL_STEPS", "25" if THOROUGH else "8"))
    for machine, examples, count in ((Protocol, EXAMPLES, steps), (ParallelDisputes, max(1, EXAMPLES // 2), 2 * steps)):
        machine_settings = settings(max_examples=examples, stateful_step_count=count, deadline=None,
                                    suppress_health_check=list(HealthCheck))
        run_state_machine_as_test(machine, settings=machine_settings)
