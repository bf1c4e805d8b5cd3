# syntax=docker/dockerfile:1
#
# DenseNet classifier images. Targets:
#   cpu (the default: last stage)  docker build -t densenet-serve:cpu .
#   gpu                            docker build --target gpu -t densenet-serve:gpu .
#                                  (onnxruntime-gpu with NVIDIA's CUDA 13 wheels from PyPI on
#                                  the same Python base; the host brings only the driver)
#   gpu-cuda-base                  the same service on NVIDIA's CUDA image (CUDA_IMAGE), for
#                                  those who can pull it and prefer its system CUDA
# The model is exported at build time by `model_export` in a throw-away stage; the
# runtime stages receive only the .onnx file and never contain torch.
# Offline build (no ImageNet weights download): --build-arg MODEL_WEIGHTS=random
# An image that already holds /models/ can stand in for the export stage:
#   --build-context export=container-image://IMAGE (podman; docker buildx: docker-image://)
# docs/operations.md, "Containers", covers the build arguments and how to serve another model.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# onnxruntime-gpu 1.31 wheels on PyPI are built for CUDA 13.x and cuDNN 9.x; the CUDA
# major version of this base and ORT_GPU_VERSION below must move together.
ARG CUDA_IMAGE=nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04
ARG MODEL_ARCH=densenet121


# --- export: PyTorch -> ONNX, build time only ----------------------------------------
FROM ${PYTHON_IMAGE} AS export
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TORCH_HOME=/tmp/torch
WORKDIR /src
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
# Only what the exporter needs, so that editing app/ does not re-export the model.
COPY pyproject.toml README.md LICENSE ./
COPY model_export/ model_export/
# DL3013 (pin versions): this installs the project itself; the export extra's versions
# live in pyproject.toml, and the torch pins above already satisfy it.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[export]"
ARG MODEL_ARCH
# imagenet: torchvision's ImageNet weights, downloaded now; random: seeded, offline.
ARG MODEL_WEIGHTS=imagenet
RUN python -m model_export export --arch "${MODEL_ARCH}" --weights "${MODEL_WEIGHTS}" \
        --output "/models/${MODEL_ARCH}.onnx"


# --- wheel: the service as a wheel, shared by both runtime targets --------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY app/ app/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


# --- gpu: slim Python, onnxruntime-gpu and NVIDIA's CUDA 13 + cuDNN 9 wheels -----------
# onnxruntime-gpu's cuda and cudnn extras name the nvidia-* wheels its CUDA provider loads
# (CUDA runtime, NVRTC, cuFFT, cuRAND, cuDNN, and cuBLAS and nvJitLink through them); the
# host brings only the driver (libcuda.so.1, mounted by the NVIDIA container toolkit).
# Without a GPU the service says so in one start-up line and serves on the CPU
# (DENSENET_PROVIDERS=auto); a setting that demands CUDA is refused at start.
FROM ${PYTHON_IMAGE} AS gpu
ARG MODEL_ARCH
ARG ORT_GPU_VERSION=1.31.1
RUN python -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin densenet
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# pip cannot swap one requirement for another: install the service (which pulls the CPU
# onnxruntime), remove that, then add onnxruntime-gpu. Both wheels own the same
# onnxruntime/ directory, so they must never be installed side by side. The nvidia-*
# wheels' library folders go to the dynamic loader's configuration, so that the CUDA
# provider finds them without LD_LIBRARY_PATH.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl \
 && pip uninstall --yes onnxruntime \
 && pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]==${ORT_GPU_VERSION}" \
 && python -c "import glob, site; print('\n'.join(sorted(glob.glob(site.getsitepackages()[0] \
+ '/nvidia/*/lib'))))" > /etc/ld.so.conf.d/nvidia-wheels.conf \
 && ldconfig \
 && python -c "import ctypes.util as u, onnxruntime as o; p = o.get_available_providers(); \
assert 'CUDAExecutionProvider' in p, p; assert u.find_library('cudnn'), 'no libcudnn'"
COPY docker/healthcheck.py /opt/densenet/healthcheck.py
# Owned by root and not writable by the service user: the baked-in model is read-only.
COPY --from=export /models/ /models/
WORKDIR /opt/densenet
ENV DENSENET_MODEL_PATH=/models/${MODEL_ARCH}.onnx \
    DENSENET_HOST=0.0.0.0 \
    DENSENET_PORT=8000 \
    DENSENET_GRPC_PORT=8001 \
    DENSENET_PROVIDERS=auto \
    DENSENET_LOG_FORMAT=json
USER 10001:10001
# 8000: HTTP (/classify, Open Inference Protocol REST); 8001: gRPC (Open Inference
# Protocol, Triton's GRPCInferenceService, grpc.health.v1). The HEALTHCHECK asks HTTP:
# both fronts share one readiness.
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "/opt/densenet/healthcheck.py"]
# SIGTERM starts the drain (readiness 503, accepted requests finish); give the
# container a stop timeout above DENSENET_SHUTDOWN_GRACE_S (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "app"]


# --- gpu-cuda-base: NVIDIA's CUDA + cuDNN image, onnxruntime-gpu ----------------------
FROM ${CUDA_IMAGE} AS gpu-cuda-base
ARG MODEL_ARCH
ARG ORT_GPU_VERSION=1.31.1
ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu's python3 is patched in place by security updates; pinning its exact Debian
# version would break the build on every such update, so DL3008 is ignored here only.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin densenet
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# pip cannot swap one requirement for another: install the service (which pulls the CPU
# onnxruntime), remove that, then add onnxruntime-gpu. Both wheels own the same
# onnxruntime/ directory, so they must never be installed side by side.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl \
 && pip uninstall --yes onnxruntime \
 && pip install --no-cache-dir "onnxruntime-gpu==${ORT_GPU_VERSION}" \
 && python -c "import onnxruntime as o; p = o.get_available_providers(); \
assert 'CUDAExecutionProvider' in p, p"
COPY docker/healthcheck.py /opt/densenet/healthcheck.py
# Owned by root and not writable by the service user: the baked-in model is read-only.
COPY --from=export /models/ /models/
WORKDIR /opt/densenet
ENV DENSENET_MODEL_PATH=/models/${MODEL_ARCH}.onnx \
    DENSENET_HOST=0.0.0.0 \
    DENSENET_PORT=8000 \
    DENSENET_GRPC_PORT=8001 \
    DENSENET_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    DENSENET_LOG_FORMAT=json
USER 10001:10001
# 8000: HTTP (/classify, Open Inference Protocol REST); 8001: gRPC (Open Inference
# Protocol, Triton's GRPCInferenceService, grpc.health.v1). The HEALTHCHECK asks HTTP:
# both fronts share one readiness.
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "/opt/densenet/healthcheck.py"]
# SIGTERM starts the drain (readiness 503, accepted requests finish); give the
# container a stop timeout above DENSENET_SHUTDOWN_GRACE_S (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "app"]


# --- cpu: slim Python, onnxruntime (the default target) -------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ARG MODEL_ARCH
RUN python -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin densenet
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
COPY docker/healthcheck.py /opt/densenet/healthcheck.py
# Owned by root and not writable by the service user: the baked-in model is read-only.
COPY --from=export /models/ /models/
WORKDIR /opt/densenet
ENV DENSENET_MODEL_PATH=/models/${MODEL_ARCH}.onnx \
    DENSENET_HOST=0.0.0.0 \
    DENSENET_PORT=8000 \
    DENSENET_GRPC_PORT=8001 \
    DENSENET_PROVIDERS=CPUExecutionProvider \
    DENSENET_LOG_FORMAT=json
USER 10001:10001
# 8000: HTTP (/classify, Open Inference Protocol REST); 8001: gRPC (Open Inference
# Protocol, Triton's GRPCInferenceService, grpc.health.v1). The HEALTHCHECK asks HTTP:
# both fronts share one readiness.
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "/opt/densenet/healthcheck.py"]
# SIGTERM starts the drain (readiness 503, accepted requests finish); give the
# container a stop timeout above DENSENET_SHUTDOWN_GRACE_S (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "app"]
