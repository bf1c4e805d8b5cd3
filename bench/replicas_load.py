"""Closed-loop load through the balancer, in a background thread, every answer recorded.

Each client sends its next request as soon as the last one is answered; one in four is a
`/classify/batch` of several images, the others a single `/classify`. Every request is
recorded with when it started and ended and what came back (an HTTP status, or the
exception's class name when no answer came), so a run can be cut into time windows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx

BATCH_EVERY = 4  # every 4th request of a client is a /classify/batch
BATCH_IMAGES = 4


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    route: str
    images: int
    status: str  # "200", "503", ... or an exception class name

    @property
    def ok(self) -> bool:
        return self.status == "200"


@dataclass
class Load:
    """`clients` closed-loop clients against `url` until stop() is called."""

    url: str
    images: list[bytes]
    clients: int = 16
    timeout_s: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 90) -> list[Outcome]:
        """Stop sending; wait until every request already sent is answered."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the load did not finish its last requests"
        return self.outcomes

    def completed_since(self, since: float) -> int:
        return sum(1 for o in list(self.outcomes) if o.ended >= since)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        timeout = httpx.Timeout(self.timeout_s)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=timeout) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, number: int) -> None:
        sent = number  # staggers the batch calls across clients
        while not self._stop.is_set():
            image = self.images[sent % len(self.images)]
            if sent % BATCH_EVERY == BATCH_EVERY - 1:
                route, count = "/classify/batch", BATCH_IMAGES
                picks = [self.images[(sent + k) % len(self.images)] for k in range(BATCH_IMAGES)]
                files = [
                    ("files", (f"{k}.jpg", body, "image/jpeg")) for k, body in enumerate(picks)
                ]
                request = client.build_request("POST", route, files=files)
            else:
                route, count = "/classify", 1
                headers = {"content-type": "image/jpeg"}
                request = client.build_request("POST", route, content=image, headers=headers)
            started = time.monotonic()
            try:
                response = await client.send(request)
                status = _status(response, route)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.outcomes.append(Outcome(started, time.monotonic(), route, count, status))
            sent += 1


def _status(response: httpx.Response, route: str) -> str:
    """ "200", or the status with the service's error code ("503 shutting_down"); a batch
    is a 200 only if every image in it was classified."""
    if response.status_code != 200:
        try:
            return f"{response.status_code} {response.json()['error']['code']}"
        except (ValueError, KeyError, TypeError):
            return str(response.status_code)  # not the service's error shape (HAProxy's)
    if route == "/classify/batch":
        items = response.json()["results"]
        failed = sorted({item["error"]["code"] for item in items if item.get("error")})
        if failed:
            return f"200 with item errors {failed}"
    return "200"


def throughput(outcomes: list[Outcome], start: float, end: float) -> float:
    """Images per second classified by requests that succeeded and ended in [start, end)."""
    done = sum(o.images for o in outcomes if o.ok and start <= o.ended < end)
    return done / (end - start) if end > start else 0.0


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]
