"""Test support shared across suites: real servers that stand between the code under test and anvil."""
