"""Dishonest and careless participants, for tests and the demo only: never imported by production code.

`personas.worker.DishonestWorker` is the real worker daemon with one hook changed (what it commits);
`personas.verifier.BuggyVerifier` challenges a job it found correct; `python -m personas worker run
--behaviour NAME …` and `python -m personas verifier run --buggy …` run them as processes with every
option of `tessera worker run` / `tessera verifier run`.
"""
