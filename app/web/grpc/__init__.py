"""The gRPC front: the Open Inference Protocol over gRPC (Triton's `GRPCInferenceService`,
which KServe's `grpc_predict_v2.proto` is a subset of) and `grpc.health.v1.Health`.

Like the REST fronts it translates and calls the data plane; every rule lives there. It
runs as a `grpc.aio` server in the HTTP server's process and event loop, on its own port
(DENSENET_GRPC_PORT), started and drained with it (app/web/server.py).
"""
