"""The torch CPU kernel sets (ATEN_CPU_CAPABILITY) a test may ask for on this host.

torch 2.13 does not cap a request to the CPU: an AVX-512 request on an AVX2-only CPU dies of SIGILL. Tests
that compare kernel sets ask for the ones this CPU runs (engine.determinism.host_cpu_capabilities)."""

from __future__ import annotations

from engine.determinism import host_cpu_capabilities


def runnable(capability: str) -> str:
    """`capability` if this CPU runs it, else the highest kernel set it does run."""
    host = host_cpu_capabilities()
    return capability if capability in host else host[-1]


def highest() -> str:
    """The highest kernel set this CPU runs ("default" on a CPU without AVX2)."""
    return host_cpu_capabilities()[-1]
