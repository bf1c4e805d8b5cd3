"""KServe's Python SDK clients (REST and gRPC) infer against a real `python -m app` process.

`kserve` pins older protobuf (and more) than this project's environment carries, so it
lives in its own virtualenv: `scripts/install-kserve-client.sh` makes `.venv-kserve`
(`make pytest` runs it; outside CI the test skips, saying so, when it could not be made).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests import images
from tests.conftest import ROOT, load_engine, settings_for
from tests.server import running
from tests.test_protocol_v2 import assert_same_as_classify

pytestmark = pytest.mark.slow
KSERVE_PYTHON = Path(os.environ.get("KSERVE_PYTHON", ROOT / ".venv-kserve" / "bin" / "python"))


@pytest.mark.skipif(
    not KSERVE_PYTHON.exists(),
    reason=f"no KServe client environment at {KSERVE_PYTHON} (scripts/install-kserve-client.sh)",
)
def test_kserve_rest_client_infers(tiny_model: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(11).normal(size=(1, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "tensor.npy", x)
    jpeg = images.jpeg(seed=2)
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    with running(tiny_model) as (_, url):
        command = [str(KSERVE_PYTHON), str(ROOT / "tests" / "kserve_client.py"), url]
        command += ["densenet-tiny", str(tmp_path / "tensor.npy"), str(tmp_path / "photo.jpg")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        classify = httpx.post(
            f"{url}/classify", content=jpeg, headers={"content-type": "image/jpeg"}
        )
    assert found["live"] is True
    assert found["ready"] is True
    assert found["model_ready"] is True
    assert found["unknown_model_ready"] is False
    assert found["id"] == "kserve-1"
    expected = load_engine(settings_for(tiny_model)).run(x)
    np.testing.assert_allclose(found["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(found["logits_json"], expected, rtol=1e-4, atol=1e-5)
    assert_same_as_classify(found["top5"], classify.json()["predictions"])
    assert found["error_status"] == 404
    assert found["error"].startswith("model_not_found: ")


@pytest.mark.skipif(
    not KSERVE_PYTHON.exists(),
    reason=f"no KServe client environment at {KSERVE_PYTHON} (scripts/install-kserve-client.sh)",
)
def test_kserve_grpc_client_infers(tiny_model: Path, tmp_path: Path) -> None:
    """KServe's InferenceGRPCClient (grpc-v2): raw and typed tensors, typed BYTES."""
    x = np.random.default_rng(12).normal(size=(1, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "tensor.npy", x)
    jpeg = images.jpeg(seed=4)
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    with running(tiny_model) as (process, url):
        assert process.grpc_address is not None
        command = [str(KSERVE_PYTHON), str(ROOT / "tests" / "kserve_grpc_client.py")]
        command += [process.grpc_address, "densenet-tiny"]
        command += [str(tmp_path / "tensor.npy"), str(tmp_path / "photo.jpg")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        classify = httpx.post(
            f"{url}/classify", content=jpeg, headers={"content-type": "image/jpeg"}
        )
    assert (found["live"], found["ready"], found["model_ready"]) == (True, True, True)
    assert found["unknown_model_ready"] is False
    assert (found["logits_id"], found["logits_typed_id"]) == (
        "kserve-logits",
        "kserve-logits_typed",
    )
    expected = load_engine(settings_for(tiny_model)).run(x)
    np.testing.assert_allclose(found["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(found["logits_typed"], expected, rtol=1e-4, atol=1e-5)
    assert_same_as_classify(found["top5"], classify.json()["predictions"])
    assert found["error_code"] == "NOT_FOUND"
    assert found["error"].startswith("model_not_found: ")
