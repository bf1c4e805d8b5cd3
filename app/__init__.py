"""DenseNet image classification service: FastAPI + ONNX Runtime with dynamic batching."""
