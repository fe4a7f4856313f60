"""tessera-portable/1: the arithmetic whose bits every machine reproduces (docs/arithmetic.md).

`reference` follows the document op by op in NumPy (slow and obviously right; it defines the bits of
the test vectors), `cpu` is the compiled CPU implementation (numba), `cuda` the Triton one; `ops`
wires whichever backend matches a tensor's device into torch autograd, and `layers` builds a model
of the spec's IR from those ops. Every change to any op's bits is a new version string.
"""

ARITHMETIC_VERSION = "tessera-portable/1"
