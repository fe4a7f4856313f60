"""Tessera's deterministic ML engine: safe model builder, segmented training with canonical
checkpoints, replay, environment fingerprint. Public entry points live in `engine.api`; torch is
imported only by the modules that need it, never by `protocol`."""
