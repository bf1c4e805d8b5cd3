"""The data plane's answers -> gRPC messages.

Inference outputs go as `raw_output_contents` (Triton's client reads outputs only from
there), BYTES elements in their binary form. Metadata, configuration, statistics and the
repository index are the same documents the REST front sends, parsed into their messages
by protobuf's JSON mapping (their field names are Triton's JSON names), so the two fronts
cannot disagree.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from app.dataplane.oip import InferenceResponse, join_bytes, raw_bytes
from app.web.grpc.stubs import grpc_service_pb2 as pb
from app.web.grpc.stubs import model_config_pb2


def infer_response(response: InferenceResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    for output in response.outputs:
        message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if output.elements is not None:
            message.raw_output_contents.append(join_bytes(output.elements))
        else:
            assert output.array is not None
            message.raw_output_contents.append(raw_bytes(output.array))
    return message


def model_metadata(document: dict[str, Any]) -> pb.ModelMetadataResponse:
    return json_format.ParseDict(document, pb.ModelMetadataResponse())


def model_config(document: dict[str, Any]) -> pb.ModelConfigResponse:
    config = json_format.ParseDict(document, model_config_pb2.ModelConfig())
    return pb.ModelConfigResponse(config=config)


def model_statistics(document: dict[str, Any]) -> pb.ModelStatisticsResponse:
    return json_format.ParseDict(document, pb.ModelStatisticsResponse())


def repository_index(entries: list[dict[str, str]]) -> pb.RepositoryIndexResponse:
    return json_format.ParseDict({"models": entries}, pb.RepositoryIndexResponse())
