"""``python -m bench.perf_analyzer``: see bench/perf_analyzer/study.py."""

from bench.perf_analyzer.study import main

main()
