"""DenseNet image classification service: FastAPI + ONNX Runtime with dynamic batching."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of truth: the package's metadata (pyproject.toml's version)
    __version__ = version("densenet-serve")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
