"""The committed gRPC stubs are what scripts/generate-grpc-stubs.sh makes of the protos
beside them, and their descriptors are the ones Triton's own client carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2 as triton_service

from app.web.grpc.stubs import grpc_service_pb2, model_config_pb2
from tests.conftest import ROOT

STUBS = ROOT / "app" / "web" / "grpc" / "stubs"


def test_the_stubs_are_generated_from_the_protos(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "generate-grpc-stubs.sh"
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(script), str(tmp_path)], cwd=ROOT, env=env, check=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in STUBS.glob("*_pb2*.py*"))
    for name in made:
        assert (tmp_path / name).read_text() == (STUBS / name).read_text(), name


def test_the_service_is_tritons_own() -> None:
    """Same package, messages and fields: so one process can load both (the tests do)."""
    ours = grpc_service_pb2.DESCRIPTOR.serialized_pb
    assert ours == triton_service.DESCRIPTOR.serialized_pb
    assert model_config_pb2.DESCRIPTOR.serialized_pb == triton_config.DESCRIPTOR.serialized_pb
