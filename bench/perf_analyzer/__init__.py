"""Triton's perf_analyzer against the v2 REST front (python -m bench.perf_analyzer)."""
