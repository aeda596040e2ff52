"""Faults the suite injects on real software: a slow action server (runner control lives in harness.runners)."""
