"""A verifier that challenges a job it found correct (its bond is then lost to the treasury)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.judging import CheckKind, CheckResult, Outcome
from worker.verifier import VerifierDaemon


class BuggyVerifier(VerifierDaemon):
    """Reports a mismatch on the first segment it checked, whatever the replay said."""

    def choose_fault(self, results: Sequence[CheckResult]) -> CheckResult | None:
        fault = super().choose_fault(results)
        if fault is not None:
            return fault
        segments = [r for r in results if r.check.kind is CheckKind.SEGMENT]
        if not segments:
            return None
        return segments[0].model_copy(update={"outcome": Outcome.MISMATCH,
                                              "detail": "buggy verifier persona: a mismatch it did not see"})


def make(config: Any, **kwargs: Any) -> BuggyVerifier:
    return BuggyVerifier(config, **kwargs)
