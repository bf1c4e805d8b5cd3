"""What perf_analyzer puts on the wire, seen rather than assumed: a few requests of each
protocol and input sent through a relay that records them on their way to the server.

HTTP: a TCP relay that reads each request's head and body (Content-Length) and keeps those
of ``POST .../infer``: binary tensor data shows as an ``Inference-Header-Content-Length``
header and bytes after the JSON header. gRPC: a ``grpc.aio`` server that forwards every call
as bytes and keeps the ``ModelInfer`` messages, parsed with the service's own stubs.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import grpc

from app.web.grpc.stubs.grpc_service_pb2 import ModelInferRequest
from bench.servers import free_port

REQUESTS = 2  # per capture: enough to see that every request is alike
MAX_MESSAGE = 64 * 2**20


def _http_request(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    head_length = int(headers.get("inference-header-content-length", len(body)))
    header = json.loads(body[:head_length] or b"{}")
    declared = sum(i.get("parameters", {}).get("binary_data_size", 0) for i in header["inputs"])
    return {
        "request": f"{method} {path}",
        "content_type": headers.get("content-type"),
        "content_length": len(body),
        "inference_header_content_length": headers.get("inference-header-content-length"),
        "json_header": header,
        "binary_bytes": len(body) - head_length,
        "binary": "inference-header-content-length" in headers
        and declared == len(body) - head_length > 0,
    }


async def _relay_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: int, seen: list[Any]
) -> None:
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)

    async def answers() -> None:
        while data := await up_reader.read(2**16):
            writer.write(data)
            await writer.drain()
        writer.close()

    back = asyncio.create_task(answers())
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            up_writer.write(head)  # at once: a client may wait for "100 Continue"
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            fields = (line.partition(":") for line in lines[1:] if line)
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            up_writer.write(body)
            await up_writer.drain()
            if method == "POST" and path.endswith("/infer"):
                seen.append(_http_request(method, path, headers, body))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed its connection
    finally:
        up_writer.close()
        await back


def _grpc_request(message: bytes) -> dict[str, Any]:
    request = ModelInferRequest.FromString(message)
    return {
        "inputs": [
            {
                "name": i.name,
                "datatype": i.datatype,
                "shape": list(i.shape),
                "typed_contents": i.HasField("contents"),
            }
            for i in request.inputs
        ],
        "raw_input_contents_bytes": [len(raw) for raw in request.raw_input_contents],
        "parameters": {
            k: getattr(v, v.WhichOneof("parameter_choice") or "bool_param")
            for k, v in sorted(request.parameters.items())
        },
        "outputs": [o.name for o in request.outputs],
        "message_bytes": len(message),
    }


class _GrpcRelay(grpc.GenericRpcHandler):
    """Forwards every unary call as bytes; keeps the ModelInfer requests."""

    def __init__(self, channel: grpc.aio.Channel, seen: list[Any]) -> None:
        self.channel, self.seen = channel, seen

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = details.method
        forward: Any = self.channel.unary_unary(method)  # no serializers: bytes in and out

        async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if method.endswith("/ModelInfer"):
                self.seen.append(_grpc_request(request))
            try:
                return await forward(request)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")

        return grpc.unary_unary_rpc_method_handler(call)


async def _capture(tool: Path, protocol: str, upstream: int, model: str, data: Path) -> Any:
    seen: list[Any] = []
    port = free_port()
    if protocol == "http":
        relay = await asyncio.start_server(
            lambda r, w: _relay_http(r, w, upstream, seen), "127.0.0.1", port
        )
    else:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{upstream}", options=options)
        grpc_relay = grpc.aio.server(handlers=[_GrpcRelay(channel, seen)], options=options)
        grpc_relay.add_insecure_port(f"127.0.0.1:{port}")
        await grpc_relay.start()
    command = ["-m", model, "-u", f"127.0.0.1:{port}", "-i", protocol, "--input-data", str(data)]
    command += ["--concurrency-range", "1:1", "--request-count", str(REQUESTS)]
    tool_run = await asyncio.create_subprocess_exec(
        str(tool), *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await tool_run.communicate()
    if protocol == "http":
        relay.close()
        await relay.wait_closed()
    else:
        await grpc_relay.stop(None)
        await channel.close()
    return seen, tool_run.returncode, output.decode(errors="replace")


def reasons(output: str) -> str:
    """What perf_analyzer's output says went wrong, each distinct reason once (it repeats
    the same error for every client thread)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    wrong = [
        re.sub(r"^Thread \[\d+\] had error: ", "", line)
        for line in lines
        if re.search("error|fail", line, re.IGNORECASE) and line != "perf_analyzer failed:"
    ]
    return " / ".join(dict.fromkeys(wrong or lines[-2:]))


def capture(
    tool: Path, protocol: str, upstream_port: int, model: str, data: Path
) -> dict[str, Any]:
    """perf_analyzer's first infer request for one input (`protocol`: http or grpc)."""
    seen, code, output = asyncio.run(_capture(tool, protocol, upstream_port, model, data))
    return {
        "requests_seen": len(seen),
        "request": seen[0] if seen else None,
        "exit": code,
        "failure": reasons(output) if code != 0 else None,
    }


def describe(protocol: str, captured: dict[str, Any]) -> str:
    """One line for the report: how a request of this kind is encoded."""
    r, failure = captured["request"], captured["failure"]
    if r is None:
        return f"no request captured (perf_analyzer: {failure})"
    if failure:
        return f"{_encoding(protocol, r)}; perf_analyzer failed: {failure}"
    return _encoding(protocol, r)


def _encoding(protocol: str, r: dict[str, Any]) -> str:
    if protocol == "http":
        if not r["binary"]:
            size = r["content_length"]
            return f"{r['request']}, {r['content_type']}: JSON tensor data, {size} bytes"
        inputs = ", ".join(
            f"{i['name']} {i['datatype']} {i['shape']}" for i in r["json_header"]["inputs"]
        )
        outputs = json.dumps(r["json_header"].get("outputs"))
        return (
            f"{r['request']}, binary tensor data: a {r['inference_header_content_length']}-byte "
            f"JSON header ({inputs}; outputs {outputs}) then {r['binary_bytes']} bytes"
        )
    inputs = ", ".join(f"{i['name']} {i['datatype']} {i['shape']}" for i in r["inputs"])
    where = (
        "typed contents" if any(i["typed_contents"] for i in r["inputs"]) else "raw_input_contents"
    )
    return (
        f"ModelInferRequest of {r['message_bytes']} bytes: {inputs} as {where} "
        f"({r['raw_input_contents_bytes']} bytes); outputs asked {r['outputs'] or 'none (all)'}; "
        f"request parameters {r['parameters'] or 'none'}"
    )
