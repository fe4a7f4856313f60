"""Cheating economics: when does a dishonest worker expect to lose money? (`python -m bench.economics`)

A worker claims a job with payment P and collateral K. Honest work costs C and earns P·(1 − fee).
A cheating strategy leaves `bad` of the job's N segments wrong (fabricated or skipped) and costs only
`cost_fraction`·C. A verifier checks a job with probability r (the *verification rate*) and, when it
does, replays `m` segments drawn uniformly without replacement; the check catches the cheat with

    q = 1 − C(N − bad, m) / C(N, m)

(hypergeometric "at least one bad segment drawn"). A withheld or wrong checkpoint counts as a bad
segment: the verifier cannot replay from it and challenges, and the arbiter rules against the worker.
Caught (probability p = r·q; the arbiter is assumed correct, which level-1 disputes give inside the
job's environment class): the payment goes back to the submitter and K is slashed. A caught worker may
capture part of its own slash (audit F-05): its puppet files first on its own wrong segment and takes
the challenger reward ρ = challenger_reward_bps, so the worker's effective loss is K' = K·(1 − ρ) (the
model takes this worst case). Not caught: the cheat is paid as if honest. So

    EV_cheat  = (1 − p)·P' − p·K' − c_cheat          with P' = P·(1 − fee), K' = K·(1 − ρ)
    EV_honest = P' − C

A rational worker cheats only when EV_cheat beats its best honest alternative: working honestly or, for
a *scammer* who has no GPU at all, staying idle (EV 0). Cheating is deterred when

    EV_cheat < max(EV_honest, 0)   (or < 0 for a scammer)
    ⇔ p > (P' − c_cheat − alternative) / (P' + K')
    ⇔ r > r_min = that bound / q

r_min > 1 means sampling alone cannot deter the strategy at these terms (raise K or m). The Monte
Carlo below draws jobs, checks and segment samples with numpy and must agree with the closed form.

The protocol parameters (fee, reward split, bond, windows) come from `protocol/params/{local,testnet}.json`
when present; the job terms (payment, collateral, compute cost) and the verifier's sampling are the
reference values below, the same ones the verifier daemon uses by default (`worker.verifier`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = ROOT / "protocol/params"
ECONOMICS_DOC = ROOT / "docs/economics.md"
TABLE_BEGIN = "<!-- economics:begin -->"
TABLE_END = "<!-- economics:end -->"
TOKEN = 10**18  # DevToken has 18 decimals

# Protocol parameters used when protocol/params/<name>.json is not there (or lacks a field): the values
# agreed for the SDK's parameter sets. Units: seconds, basis points, wei.
FALLBACK_PARAMS: dict[str, dict] = {
    "local": {
        "fee_bps": 100,
        "execution_timeout": 600,
        "challenge_window": 20,
        "arbiter_window": 30,
        "challenge_bond": 10 * TOKEN,
        "challenger_reward_bps": 3_000,
        "submitter_compensation_bps": 3_000,
    },
    "testnet": {
        "fee_bps": 100,
        "execution_timeout": 6 * 3_600,
        "challenge_window": 24 * 3_600,
        "arbiter_window": 24 * 3_600,
        "challenge_bond": 10 * TOKEN,
        "challenger_reward_bps": 3_000,
        "submitter_compensation_bps": 3_000,
    },
}

# Reference job terms and verifier sampling per parameter set. Collateral is quoted as a multiple of the
# payment because that is how submitters choose it; compute cost as a fraction of the payment (the
# worker's margin is 1 − cost/P'). `verify_rate` is the fraction of committed jobs the default verifier
# configuration checks (`worker.verifier.VerifierConfig.verify_fraction`, tested equal) and `segments_per_check` is m.
REFERENCE_TERMS: dict[str, dict] = {
    "local": {"payment": 100 * TOKEN, "collateral_ratio": 2.0, "cost_ratio": 0.5, "num_segments": 4,
              "verify_rate": 0.5, "segments_per_check": 1},
    "testnet": {"payment": 100 * TOKEN, "collateral_ratio": 2.0, "cost_ratio": 0.5, "num_segments": 16,
                "verify_rate": 0.5, "segments_per_check": 1},
}


@dataclass(frozen=True)
class Strategy:
    """How a worker cheats: how many segments end up wrong and what fraction of honest cost it pays."""

    name: str
    bad_segments: int | None  # None: every check catches it (a made-up trace, a wrong h_0 or output)
    cost_fraction: float | None  # of the honest compute cost C; None: pays for its good segments only
    scammer: bool = False  # has no honest alternative (no GPU): compares with staying idle
    what: str = ""

    def bad_of(self, num_segments: int) -> int:
        """Number of wrong segments for a job of `num_segments` segments."""
        if self.bad_segments is None:
            return num_segments
        return min(self.bad_segments, num_segments)


# The strategies of the dishonest test personas, plus the one that pays best for a real GPU owner.
STRATEGIES: list[Strategy] = [
    Strategy("fake-trace (scammer)", None, 0.0, scammer=True,
             what="no GPU, commits a made-up trace (worker behaviour fake-trace)"),
    Strategy("fake-trace", None, 0.0,
             what="owns a GPU but skips training and commits a made-up trace"),
    Strategy("skip-one-segment", 1, None,
             what="trains all but one segment and fabricates its end state (saves C/N)"),
    Strategy("withhold-checkpoint", 1, 1.0,
             what="correct trace, one checkpoint withheld (saves storage only; counts as one bad segment)"),
    # v2 binds both ends of the trace: every checked job also gets the initial and the output check.
    Strategy("substitute-initial-weights", None, 1.0,
             what="trains honestly from other weights (a backdoor): h_0 is not the spec's, the initial check "
                  "catches it on every checked job (audit F-06)"),
    Strategy("substitute-output", None, 1.0,
             what="honest trace, another model delivered: the output check catches it on every checked job "
                  "(audit F-07)"),
]


@dataclass(frozen=True)
class Terms:
    """Everything the closed form needs, in wei and probabilities."""

    payment: int
    collateral: int
    compute_cost: int
    fee_bps: int
    num_segments: int
    verify_rate: float
    segments_per_check: int = 1
    challenger_reward_bps: int = 5_000
    submitter_compensation_bps: int = 3_000
    challenge_bond: int = 10 * TOKEN

    def __post_init__(self) -> None:
        if self.payment <= 0 or self.collateral < 0 or self.compute_cost < 0:
            raise ValueError("payment must be > 0, collateral and compute cost >= 0")
        if not 0 <= self.fee_bps <= 10_000:
            raise ValueError(f"fee_bps must be within 0..10000, got {self.fee_bps}")
        if self.num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {self.num_segments}")
        if not 0.0 <= self.verify_rate <= 1.0:
            raise ValueError(f"verify_rate must be within [0, 1], got {self.verify_rate}")
        if not 1 <= self.segments_per_check:
            raise ValueError(f"segments_per_check must be >= 1, got {self.segments_per_check}")

    @property
    def net_payment(self) -> float:
        """P' = what the worker receives on Finalized, after the protocol fee."""
        return self.payment * (10_000 - self.fee_bps) / 10_000

    @property
    def effective_collateral(self) -> float:
        """K' = K·(1 − ρ): what a caught worker loses when its own puppet takes the challenger reward."""
        return self.collateral * (10_000 - self.challenger_reward_bps) / 10_000


def catch_probability(num_segments: int, bad_segments: int, segments_per_check: int) -> float:
    """q: one check of `segments_per_check` distinct uniform segments hits at least one bad segment."""
    if not 0 <= bad_segments <= num_segments:
        raise ValueError(f"bad_segments must be within 0..{num_segments}, got {bad_segments}")
    m = min(segments_per_check, num_segments)
    return 1.0 - math.comb(num_segments - bad_segments, m) / math.comb(num_segments, m)


def cheat_cost(terms: Terms, strategy: Strategy) -> float:
    """c_cheat: compute a strategy pays (all of C but its bad segments' share when cost_fraction is None)."""
    if strategy.cost_fraction is None:
        bad = strategy.bad_of(terms.num_segments)
        return terms.compute_cost * (terms.num_segments - bad) / terms.num_segments
    return terms.compute_cost * strategy.cost_fraction


def honest_ev(terms: Terms) -> float:
    """EV_honest = P' − C."""
    return terms.net_payment - terms.compute_cost


def alternative_ev(terms: Terms, strategy: Strategy) -> float:
    """The best honest option for this cheater: idle (0) for a scammer, else max(EV_honest, 0)."""
    return 0.0 if strategy.scammer else max(honest_ev(terms), 0.0)


def detection_probability(terms: Terms, strategy: Strategy) -> float:
    """p = r·q: the job is checked and the check hits a bad segment."""
    q = catch_probability(terms.num_segments, strategy.bad_of(terms.num_segments), terms.segments_per_check)
    return terms.verify_rate * q


def cheat_ev(terms: Terms, strategy: Strategy) -> float:
    """EV_cheat = (1 − p)·P' − p·K' − c_cheat (K' with self-capture, the worst case)."""
    p = detection_probability(terms, strategy)
    return (1.0 - p) * terms.net_payment - p * terms.effective_collateral - cheat_cost(terms, strategy)


def cheating_gain(terms: Terms, strategy: Strategy) -> float:
    """EV_cheat − best honest alternative; cheating is deterred when this is negative."""
    return cheat_ev(terms, strategy) - alternative_ev(terms, strategy)


def min_verify_rate(terms: Terms, strategy: Strategy) -> float:
    """Smallest verification rate r at which `cheating_gain` is <= 0 (may exceed 1: not deterrable).

    0 when the strategy never pays, `math.inf` when a check can never catch it (no bad segment).
    """
    q = catch_probability(terms.num_segments, strategy.bad_of(terms.num_segments), terms.segments_per_check)
    surplus = terms.net_payment - cheat_cost(terms, strategy) - alternative_ev(terms, strategy)
    if surplus <= 0:
        return 0.0
    if q == 0:
        return math.inf
    return surplus / ((terms.net_payment + terms.effective_collateral) * q)


def slash_split(terms: Terms) -> dict[str, int]:
    """Where a slashed collateral goes, in wei, exactly as the Disputes contract splits it (floor division)."""
    reward = terms.collateral * terms.challenger_reward_bps // 10_000
    compensation = terms.collateral * terms.submitter_compensation_bps // 10_000
    return {"challenger": reward, "submitter": compensation, "treasury": terms.collateral - reward - compensation}


def verifier_break_even_cheat_rate(terms: Terms, strategy: Strategy) -> float:
    """Share of cheating jobs at which a verifier's checks pay for themselves.

    A check costs m/N of the job's compute; it earns the challenger reward when it catches a cheat.
    Below this prevalence verifying is a cost the network must fund (e.g. submitters verifying their
    own jobs, or a verifier subsidy); above it verifiers profit.
    """
    q = catch_probability(terms.num_segments, strategy.bad_of(terms.num_segments), terms.segments_per_check)
    reward = slash_split(terms)["challenger"]
    check_cost = terms.compute_cost * min(terms.segments_per_check, terms.num_segments) / terms.num_segments
    if q == 0 or reward == 0:
        return math.inf
    return check_cost / (q * reward)


def monte_carlo_cheat_ev(terms: Terms, strategy: Strategy, jobs: int = 200_000, seed: int = 0) -> float:
    """EV_cheat estimated by simulating `jobs` jobs: check or not, draw m segments, caught or paid."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = terms.num_segments
    m = min(terms.segments_per_check, n)
    bad = strategy.bad_of(n)
    checked = rng.random(jobs) < terms.verify_rate
    # Which segments are bad does not matter by symmetry: take 0..bad-1 and draw m distinct segments.
    keys = rng.random((jobs, n))
    drawn = np.argsort(keys, axis=1)[:, :m]
    hit = (drawn < bad).any(axis=1)
    caught = checked & hit
    profit = np.where(caught, -float(terms.effective_collateral), terms.net_payment) - cheat_cost(terms, strategy)
    return float(profit.mean())


# ---------------------------------------------------------------------------------------------------
# Parameter sets and the report
# ---------------------------------------------------------------------------------------------------

def load_params(name: str) -> dict:
    """Protocol parameters of set `name`: protocol/params/<name>.json over the fallback values."""
    params = dict(FALLBACK_PARAMS[name])
    path = PARAMS_DIR / f"{name}.json"
    if path.exists():
        loaded = json.loads(path.read_text())
        source = loaded.get("params", loaded) if isinstance(loaded, dict) else {}
        for key in params:
            if key in source and isinstance(source[key], (int, float, str)):
                params[key] = int(source[key])
        params["source"] = str(path.relative_to(ROOT))
    else:
        params["source"] = "fallback values (protocol/params not present)"
    return params


def terms_for(name: str) -> Terms:
    """Reference `Terms` for parameter set `name`."""
    params = load_params(name)
    ref = REFERENCE_TERMS[name]
    return Terms(
        payment=ref["payment"],
        collateral=int(ref["payment"] * ref["collateral_ratio"]),
        compute_cost=int(ref["payment"] * ref["cost_ratio"]),
        fee_bps=params["fee_bps"],
        num_segments=ref["num_segments"],
        verify_rate=ref["verify_rate"],
        segments_per_check=ref["segments_per_check"],
        challenger_reward_bps=params["challenger_reward_bps"],
        submitter_compensation_bps=params["submitter_compensation_bps"],
        challenge_bond=params["challenge_bond"],
    )


@dataclass
class Row:
    """One line of the table: a strategy under one parameter set."""

    params: str
    strategy: str
    q: float
    r_min: float
    verify_rate: float
    cheat_ev_tokens: float
    monte_carlo_tokens: float
    alternative_tokens: float
    safe: bool
    verifier_break_even: float


def table(names: tuple[str, ...] = ("local", "testnet"), jobs: int = 200_000) -> list[Row]:
    """Closed form and Monte Carlo for every strategy under every parameter set."""
    rows = []
    for name in names:
        terms = terms_for(name)
        for strategy in STRATEGIES:
            r_min = min_verify_rate(terms, strategy)
            rows.append(Row(
                params=name,
                strategy=strategy.name,
                q=catch_probability(terms.num_segments, strategy.bad_of(terms.num_segments),
                                    terms.segments_per_check),
                r_min=r_min,
                verify_rate=terms.verify_rate,
                cheat_ev_tokens=cheat_ev(terms, strategy) / TOKEN,
                monte_carlo_tokens=monte_carlo_cheat_ev(terms, strategy, jobs=jobs) / TOKEN,
                alternative_tokens=alternative_ev(terms, strategy) / TOKEN,
                safe=terms.verify_rate > r_min,
                verifier_break_even=verifier_break_even_cheat_rate(terms, strategy),
            ))
    return rows


def markdown(rows: list[Row]) -> str:
    """The table that goes into docs/economics.md."""
    lines = []
    for name in dict.fromkeys(r.params for r in rows):
        terms = terms_for(name)
        params = load_params(name)
        split = slash_split(terms)
        lines += [
            f"**{name}** (protocol parameters from {params['source']}): fee {terms.fee_bps} bps, "
            f"challenge window {params['challenge_window']} s and arbiter window {params['arbiter_window']} s "
            f"(each + 3 × the job's declared segment seconds); "
            f"reference job: payment {terms.payment / TOKEN:g} TST, collateral {terms.collateral / TOKEN:g} TST, "
            f"compute cost {terms.compute_cost / TOKEN:g} TST, N = {terms.num_segments} segments; verifier "
            f"checks r = {terms.verify_rate:g} of jobs, m = {terms.segments_per_check} segment(s) per check. "
            f"A slash pays {split['challenger'] / TOKEN:g} TST to the challenger, {split['submitter'] / TOKEN:g} "
            f"to the submitter and {split['treasury'] / TOKEN:g} to the treasury; a caught worker that captures "
            f"the reward with a puppet still loses K' = {terms.effective_collateral / TOKEN:g} TST (the model's case).",
            "",
            "| strategy | q (one check catches) | r_min | EV cheat (TST) | Monte Carlo (TST) | best honest (TST) | default r safe? | verifier break-even |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in (r for r in rows if r.params == name):
            r_min = "∞" if math.isinf(r.r_min) else f"{r.r_min:.3f}"
            lines.append(
                f"| {r.strategy} | {r.q:.3f} | {r_min} | {r.cheat_ev_tokens:.2f} | {r.monte_carlo_tokens:.2f} "
                f"| {r.alternative_tokens:.2f} | {'yes' if r.safe else '**no**'} | {r.verifier_break_even:.2%} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_doc(rows: list[Row], doc: Path = ECONOMICS_DOC) -> None:
    """Replace the generated table between the markers in docs/economics.md (if the doc has them)."""
    if not doc.exists():
        return
    text = doc.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    doc.write_text(f"{head}{TABLE_BEGIN}\n{markdown(rows)}{TABLE_END}{tail}")


def measure() -> dict:
    """Figures for bench/run_all.py: the minimum safe verification rates and the margin of the defaults."""
    started = time.perf_counter()
    rows = table(jobs=100_000)
    figures: dict[str, dict] = {}
    for name in ("local", "testnet"):
        mine = [r for r in rows if r.params == name]
        worst = max(mine, key=lambda r: r.r_min)
        figures[f"econ_min_verify_rate_{name}"] = {
            "value": round(worst.r_min, 4),
            "unit": "fraction of jobs",
            "how": f"closed form, worst strategy '{worst.strategy}' under the {name} parameters and reference job "
                   f"(bench/economics.py)",
        }
        figures[f"econ_default_verify_rate_{name}"] = {
            "value": mine[0].verify_rate,
            "unit": "fraction of jobs",
            "how": f"default verifier sampling for {name}; must exceed econ_min_verify_rate_{name}",
        }
        scam = next(r for r in mine if r.strategy.startswith("fake-trace (scammer)"))
        figures[f"econ_scammer_ev_{name}"] = {
            "value": round(scam.cheat_ev_tokens, 3),
            "unit": "TST per job",
            "how": f"expected profit of a no-GPU worker committing made-up traces at the default rate ({name}); "
                   f"Monte Carlo {scam.monte_carlo_tokens:.3f}",
        }
    figures["econ_model_s"] = {"value": round(time.perf_counter() - started, 3), "unit": "s",
                               "how": "wall time of the closed form + Monte Carlo (100k jobs per row)"}
    return figures


def main() -> None:
    rows = table()
    print(markdown(rows))
    write_doc(rows)
    for row in rows:
        print(json.dumps(asdict(row)))


if __name__ == "__main__":
    main()

