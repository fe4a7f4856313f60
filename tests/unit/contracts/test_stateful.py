"""Hypothesis stateful test over the whole protocol on ape's in-process chain.

Random sequences of stake / request_unstake / withdraw / post / cancel / claim / commit / expire /
challenge / verdict / arbiter timeout / finalize, with time travel. A Python model predicts every
outcome (success or the exact revert) and after every step the chain must equal the model:
- no token is created or lost: every holder's balance equals the model's, and the sum over all
  holders is the token's total supply; each contract holds exactly the obligations it tracks
  (escrow: live payments + accrued fees; staking: all stake; disputes: open bonds);
- staked = available + locked + unbonding for every staker, each part as the model says;
- every job's stored record equals keccak(job) with the model's state, so a settled job never
  changes again and its payment left exactly once;
- a slash takes exactly the job's collateral share, never more.

Default 200 examples of up to 8 steps; TESSERA_HYPOTHESIS_PROFILE=thorough runs 3,000 of up to 25.
TESSERA_STATEFUL_EXAMPLES and TESSERA_STATEFUL_STEPS override either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ape
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from protocol.merkle import merkle_proof
from tests.unit.contracts.helpers import E18, PARAMS, STATES, Job, JobDriver, one_event, state_hashes

THOROUGH = os.environ.get("TESSERA_HYPOTHESIS_PROFILE") == "thorough"
EXAMPLES = int(os.environ.get("TESSERA_STATEFUL_EXAMPLES", "3000" if THOROUGH else "200"))
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
    dispute_deadline: int = 0
    challenger: str = ""


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
                    s.escrow.commit(job_id, m.job.as_tuple(), wrong, b"\x22" * 32, b"\x33" * 32, "u", sender=a)
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
            self.move(contracts["staking"], m.job.submitter, comp)
            self.move(contracts["escrow"], m.job.submitter, m.job.payment)

        @rule(data=st.data())
        def finalize(self, data):
            job_id = self.pick(data, {"Committed"})
            if job_id is None:
                return
            m = self.jobs[job_id]
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

        @rule(data=st.data())
        def challenge(self, data):
            job_id = self.pick(data, {"Committed"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            segment = data.draw(st.integers(0, m.job.num_segments - 1))
            if s.staking.staked_of(verifier) == 0:
                with ape.reverts("disputes: challenger not staked"):
                    drv.challenge(job_id, m.job, verifier, m.hashes, segment)
                return
            if self.now() >= m.job.challenge_end:
                with ape.reverts("escrow: challenge window closed"):
                    drv.challenge(job_id, m.job, verifier, m.hashes, segment)
                return
            receipt = drv.challenge(job_id, m.job, verifier, m.hashes, segment)
            m.dispute_deadline = one_event(receipt, s.disputes.Challenged).arbiter_deadline
            m.challenger = verifier.address
            m.state = "Challenged"
            self.move(verifier.address, contracts["disputes"], PARAMS["challenge_bond"])

        @rule(data=st.data())
        def bad_proof_challenge(self, data):
            job_id = self.pick(data, {"Committed"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            segment = data.draw(st.integers(0, m.job.num_segments - 1))
            fake = b"\xee" * 32
            with ape.reverts():
                s.disputes.challenge(
                    job_id, m.job.as_tuple(), segment, fake, merkle_proof(m.hashes, segment),
                    m.hashes[segment + 1], merkle_proof(m.hashes, segment + 1), sender=verifier,
                )  # fmt: skip

        @rule(data=st.data(), worker_wrong=st.booleans())
        def verdict(self, data, worker_wrong):
            job_id = self.pick(data, {"Challenged"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            args = (job_id, m.job.as_tuple(), worker_wrong, b"\x01" * 32, "e")
            if self.now() > m.dispute_deadline:
                with ape.reverts("disputes: arbiter window closed"):
                    s.disputes.verdict(*args, sender=arbiter)
                return
            receipt = s.disputes.verdict(*args, sender=arbiter)
            bond = PARAMS["challenge_bond"]
            if worker_wrong:
                slashed = one_event(receipt, s.disputes.Verdict).slashed
                assert slashed == m.job.collateral  # never more than the job's backing
                reward = slashed * PARAMS["challenger_reward_bps"] // BPS
                comp = slashed * PARAMS["submitter_compensation_bps"] // BPS
                self.stakes[m.job.worker].locked -= slashed
                self.move(contracts["staking"], m.challenger, reward)
                self.move(contracts["staking"], m.job.submitter, comp)
                self.move(contracts["staking"], treasury.address, slashed - reward - comp)
                self.move(contracts["disputes"], m.challenger, bond)
                self.move(contracts["escrow"], m.job.submitter, m.job.payment)
                m.state = "Rejected"
            else:
                self.move(contracts["disputes"], m.job.worker, bond)
                m.state = "Committed"

        @rule(data=st.data())
        def arbiter_timeout(self, data):
            job_id = self.pick(data, {"Challenged"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            if self.now() <= m.dispute_deadline:
                with ape.reverts("disputes: arbiter window open"):
                    s.disputes.timeout(job_id, m.job.as_tuple(), sender=submitter)
                return
            s.disputes.timeout(job_id, m.job.as_tuple(), sender=submitter)
            self.move(contracts["disputes"], m.challenger, PARAMS["challenge_bond"])
            m.state = "Committed"

        @rule(data=st.data())
        def settled_job_is_frozen(self, data):
            job_id = self.pick(data, {"Finalized", "Cancelled", "Expired", "Rejected"})
            if job_id is None:
                return
            m = self.jobs[job_id]
            with ape.reverts():
                s.escrow.finalize(job_id, m.job.as_tuple(), sender=verifier)
            with ape.reverts():
                s.escrow.cancel(job_id, m.job.as_tuple(), sender=holders[m.job.submitter])
            with ape.reverts():
                s.escrow.expire(job_id, m.job.as_tuple(), sender=verifier)

        @rule(seconds=st.sampled_from([1, 600, 3_599, 3_601, 7_200, 15_000]))
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
            assert self.balances[contracts["escrow"]] == live_payments + self.fees
            open_bonds = sum(PARAMS["challenge_bond"] for j in self.jobs.values() if j.state == "Challenged")
            assert self.balances[contracts["disputes"]] == open_bonds
            total_stake = 0
            for k, addr in enumerate(staker_addrs):
                m = self.stakes[addr]
                available, locked, unbonding, staked = parts[4 * k : 4 * k + 4]
                assert (available, locked, unbonding) == (m.available, m.locked, m.unbonding), addr
                assert staked == available + locked + unbonding
                backing = sum(
                    j.job.collateral for j in self.jobs.values()
                    if j.job.worker == addr and j.state in {"Claimed", "Committed", "Challenged"}
                )  # fmt: skip
                assert m.locked == backing
                total_stake += staked
            assert self.balances[contracts["staking"]] == total_stake
            for offset, record in enumerate(records):
                m = self.jobs[first + offset]
                assert record == m.job.record(STATES[m.state]), first + offset

    Protocol.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=int(os.environ.get("TESSERA_STATEFUL_STEPS", "25" if THOROUGH else "8")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    run_state_machine_as_test(Protocol, settings=Protocol.TestCase.settings)
