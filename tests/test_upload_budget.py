"""The upload budget against a real `python -m app` (h11 parses the framing): it holds
whatever the headers say, and clients that announce bodies and send nothing hold nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.server import metric, read_response, running, wait_until

pytestmark = pytest.mark.slow
BUDGET = 300_000
HEAD = b"POST /classify HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"


@contextmanager
def server(tiny_model: Path) -> Iterator[tuple[str, int]]:
    settings = {"max_inflight_upload_bytes": BUDGET, "max_upload_bytes": 1_000_000}
    with running(tiny_model, **settings) as (_, url):
        yield url, int(url.rsplit(":", 1)[1])


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def test_content_length_beside_chunked_is_refused_and_the_connection_closed(
    tiny_model: Path,
) -> None:
    """RFC 9112 section 6.1: refuse the request. The HTTP parser (httptools) refuses it
    before the app sees it, in plain text; with h11, which lets chunked win over
    Content-Length, the middleware refuses it with the service's error shape. Either way a
    small declared length must not let a large chunked body past the budget."""
    with server(tiny_model) as (url, port):
        body = b"\xff" * 200_000
        request = HEAD + b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(body)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request + b"0\r\n\r\n")
            reply, closed = read_response(sock)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        parser = b"Invalid HTTP request received." in reply  # httptools, before the app
        assert parser or b'"malformed_request"' in reply
        assert closed
        assert metric(url, "classifier_upload_bytes") == 0


def test_chunked_bodies_count_as_they_arrive(tiny_model: Path) -> None:
    """Bytes received are what the budget holds: a second chunked body that would pass it
    is refused while the first is still streaming in."""
    with server(tiny_model) as (url, port), ExitStack() as stack:
        first = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        first.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"\xff" * 250_000))
        wait_until(
            lambda: metric(url, "classifier_upload_bytes") == 250_000,
            what="the first body's bytes held",
        )
        second = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        second.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"\xff" * 100_000))
        reply, closed = read_response(second)
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b'"overloaded"' in reply
        assert closed
        first.close()
        wait_until(lambda: metric(url, "classifier_upload_bytes") == 0, what="budget released")


def test_bodies_announced_and_never_sent_hold_nothing(tiny_model: Path) -> None:
    """Three connections announcing a third of the budget each and sending no body must not
    shed an ordinary request (they cost ~330 bytes of headers in all)."""
    with server(tiny_model) as (url, port), ExitStack() as stack:
        for _ in range(3):
            idle = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            idle.sendall(HEAD + b"Content-Length: 99000\r\n\r\n")
        wait_until(
            lambda: metric(url, "classifier_requests_in_progress") == 3,
            what="three silent uploads accepted",
        )
        answer = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, timeout=30)
        assert answer.status_code == 200, answer.text
        # A declared body that cannot fit in the budget is still refused before it is sent.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(HEAD + f"Content-Length: {BUDGET + 1}\r\n\r\n".encode())
            reply, closed = read_response(sock)
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert closed
