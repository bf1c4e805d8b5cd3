"""The upload budget: request body bytes held by every request in progress, together.

Bytes are counted as they arrive (the web layer's middleware) and again when a body is
inflated (a gzip or deflate body counts at its inflated size), and held until the request
is answered. Past the budget a request is refused 503 overloaded. Thread-safe: inflating
runs on a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.errors import Overloaded


class UploadBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held = 0
        self._lock = threading.Lock()

    def check_room(self, size: int) -> None:
        """Refuse at once a body that cannot fit in what the budget has left now."""
        if self.held + size > self.limit_bytes:
            raise Overloaded("too many uploads in progress; retry shortly")

    def take(self, size: int) -> None:
        """Hold `size` more bytes, or refuse them."""
        with self._lock:
            self.check_room(size)
            self.held += size

    def release(self, size: int) -> None:
        with self._lock:
            self.held -= size

    @contextmanager
    def holding(self) -> Iterator[Callable[[int], None]]:
        """A `take` whose bytes are all released when the block ends."""
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            self.take(size)
            taken += size

        try:
            yield take
        finally:
            self.release(taken)
