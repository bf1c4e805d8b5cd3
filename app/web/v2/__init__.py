"""The Open Inference Protocol (KServe's "v2" protocol, spoken by Triton, KServe, Seldon
MLServer and OpenVINO Model Server), HTTP/REST binding, on top of the model pipelines.

Specifications followed:

- KServe, "Open Inference Protocol (V2 Inference Protocol)", HTTP/REST section:
  https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
  (health, server and model metadata, inference request and response objects, errors).
- Triton, "Binary Tensor Data Extension":
  https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_binary_data.html
  (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
  `binary_data_output`, 4-byte little-endian length prefixes for BYTES elements).
- Triton, "Classification Extension":
  https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_classification.html
  (`classification: K` on a requested output: BYTES [N, K] of "value:index:label").
- Triton, "Model Configuration" (the JSON shape of `GET /v2/models/NAME/config`):
  https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/model_configuration.html

Layout: `app.dataplane.oip` holds the protocol's request and response as plain data (no
HTTP), `app.dataplane.inference` turns a request into pipeline calls and the rows into
outputs (and describes models); here, `rest_schema`, `rest_decode` and `rest_encode` are
the HTTP body codec (JSON and binary tensor data) and `routes` the FastAPI router.
"""
