"""Benchmark harness for the DenseNet service. See bench/README.md."""
