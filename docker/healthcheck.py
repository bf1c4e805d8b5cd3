"""Container health probe: exit 0 when the service's readiness endpoint answers 200.

The images carry no curl, so this uses the standard library only. It reads the port
from DENSENET_PORT, the same variable the server listens on, so the two cannot disagree.
Run by the Dockerfile's HEALTHCHECK and the compose healthcheck.
"""

from __future__ import annotations

import os
import sys
import urllib.request

READY_PATH = "/health/ready"
DEFAULT_PORT = "8000"
TIMEOUT_S = 2.0


def main() -> int:
    """Probe readiness once; a 503 (loading, draining) or no answer is unhealthy."""
    url = f"http://127.0.0.1:{os.environ.get('DENSENET_PORT', DEFAULT_PORT)}{READY_PATH}"
    try:
        # S310: the URL is a fixed http:// loopback address, not user input.
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            healthy = response.status == 200
    except OSError as exc:  # connection refused, timeout, and HTTPError for 503
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
