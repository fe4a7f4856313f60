"""Hypothesis budget: each property test states its modest default example count; with
TESSERA_HYPOTHESIS_PROFILE=thorough the `thorough` profile (thousands of examples) is loaded and the
explicit counts scale up too (see `helpers.examples`). Nothing global changes by default, so other
areas' tests keep their own settings."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("thorough", max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("TESSERA_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["TESSERA_HYPOTHESIS_PROFILE"])
