"""Shared daemon runtime: configuration, event cursor, transaction outbox, metrics and the base loop.

The worker, verifier and arbiter daemons all build on these modules instead of copying them:
`config` (settings with documented precedence), `cursor` (reorg-safe log ingestion), `outbox`
(durable, nonce-owning transaction sender), `metrics` (Prometheus + health) and `daemon` (the loop).
"""
