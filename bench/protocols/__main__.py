"""``python -m bench.protocols``: see bench/protocols/study.py."""

from bench.protocols.study import main

main()
