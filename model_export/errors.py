from __future__ import annotations


class ExportError(Exception):
    """A problem the user can fix (bad arguments, unreachable weights, failed parity).

    The CLI prints the message without a traceback and exits non-zero.
    """
