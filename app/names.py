"""What a model may be called and how a version is written: one rule for the repository
on disk and for every request that names a model or a version.

ASCII only and matched whole: `str.isdigit()` accepts '²' and '٢', and a pattern ending
in `$` accepts a trailing newline, which would split a log line or a metric label.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 64
# Versions are positive integers of at most 18 digits: any int64 a client may send, and
# nothing that costs more than a few operations to convert.
MAX_VERSION_DIGITS = 18

_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}", re.ASCII)
_COUNT = re.compile(r"[0-9]{1,18}", re.ASCII)


NAME_RULE = "letters, digits and '_.-', at most 64, starting with a letter or digit"


def is_model_name(text: str) -> bool:
    """A name a model directory may have: a letter or digit, then letters, digits, '_.-'."""
    return _NAME.fullmatch(text) is not None


def parse_count(text: str) -> int | None:
    """A non-negative integer written in 1..18 ASCII digits, or None."""
    return int(text) if _COUNT.fullmatch(text) else None


def parse_version(text: str) -> int | None:
    """A version as a directory or a request writes it (ASCII digits, >= 1), or None."""
    value = parse_count(text)
    return value if value is not None and value >= 1 else None
