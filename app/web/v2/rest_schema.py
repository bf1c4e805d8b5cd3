"""The JSON header of an Open Inference Protocol REST request, as pydantic models.

Strict: unknown fields and parameters are refused (400), never ignored, since a parameter
this server does not know may change what the client expects back. The parameters known
are those of Triton's binary tensor data and classification extensions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.dataplane.oip import MAX_DIMS, MAX_NAME_CHARS, MAX_TENSORS, MAX_VERSION_CHARS

# Triton's binary tensor data extension: the size of the JSON part of a body.
HEADER_LENGTH = "inference-header-content-length"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputParameters(_Strict):
    binary_data_size: int | None = Field(None, ge=0)


class OutputParameters(_Strict):
    binary_data: bool | None = None
    classification: int | None = None


class RequestParameters(_Strict):
    binary_data_output: bool = False


class Input(_Strict):
    name: str = Field(max_length=MAX_NAME_CHARS)
    shape: list[int] = Field(max_length=MAX_DIMS)
    datatype: str = Field(max_length=16)
    parameters: InputParameters | None = None
    data: Any = None


class Output(_Strict):
    name: str = Field(max_length=MAX_NAME_CHARS)
    parameters: OutputParameters | None = None


class Header(_Strict):
    id: str | None = Field(None, max_length=MAX_NAME_CHARS)
    model_name: str | None = Field(None, max_length=MAX_NAME_CHARS)
    model_version: str | None = Field(None, max_length=MAX_VERSION_CHARS)
    parameters: RequestParameters | None = None
    inputs: list[Input] = Field(max_length=MAX_TENSORS)
    outputs: list[Output] | None = Field(None, max_length=MAX_TENSORS)


def problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            known = "parameters" in error["loc"][-2:-1]
            message = "not a parameter this server understands" if known else "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
