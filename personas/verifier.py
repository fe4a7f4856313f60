"""A verifier that challenges a job it found correct (its bond is then lost to the treasury).

In a refereed game it lies to the end: from the step record on, it steers the game to element 0 of the
first AdamW entry of the pinned step (a value the worker computed right), so the referee recomputes that
element on chain and rules for the worker."""

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


    def on_start(self) -> None:
        super().on_start()
        self.referee.player_factory = self._steered_player

    def _steered_player(self, duty: Any, kit: Any, contracts: dict[str, Any]) -> Any:
        from personas.referee_game import steered_challenger

        targets = [e.index for e in kit.entries if e.parsed.kernel == "adamw"] if kit.recorded else []
        if not targets:  # before the step's record (or a step without AdamW): play the honest choices
            return self.referee.honest_player(duty, kit, contracts)
        player = steered_challenger(self.w3, contracts, kit, targets[0], 0)
        player.from_block = duty.from_block
        return player


def make(config: Any, **kwargs: Any) -> BuggyVerifier:
    return BuggyVerifier(config, **kwargs)
