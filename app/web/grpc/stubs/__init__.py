"""Generated gRPC and protobuf code for the Open Inference Protocol; do not edit by hand.

The .proto files beside this are NVIDIA Triton Inference Server's, unchanged, from
https://github.com/triton-inference-server/common (protobuf/, commit 83adf7cf88a2f343005974dff3728be746de2d66),
under the BSD 3-clause licence in LICENSE beside them:
- grpc_service.proto: service `inference.GRPCInferenceService`, a superset of KServe's
  grpc_predict_v2.proto (same package, messages and method paths), so Triton's and KServe's
  gRPC clients both speak to it;
- model_config.proto: Triton's model configuration (ModelConfig answers in it);
- health.proto: `grpc.health.v1.Health` with Check, as Triton serves it.

The *_pb2*.py(i) files are made by scripts/generate-grpc-stubs.sh (grpcio-tools 1.81.1,
protobuf gencode 6.33.5). The file names and packages are the protos' own, so these
descriptors are identical to those Triton's Python client carries and both can be loaded
in one process.
"""
