"""Tessera SDK: specs, commitments, artifacts and a chain client. Never imports torch."""

__version__ = "0.1.0"
