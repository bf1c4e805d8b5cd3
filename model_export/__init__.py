"""PyTorch -> ONNX export of torchvision DenseNets, with serving metadata and a parity check."""
