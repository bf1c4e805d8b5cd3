"""Benchmark harness for the DenseNet service (issue 5). See bench/README.md."""
