"""Model control against real `python -m app` processes: Triton's repository extension
(load, unload, index) through tritonclient in explicit mode, the repository followed in
poll mode while traffic runs, failed loads that leave what served, unloads that answer
what is in flight, and the memory an unload gives back."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests import images
from tests.server import metric, rss_mb, running, wait_until
from tests.slow_model import calibrated_slow_model

pytestmark = pytest.mark.slow
KEY = "control key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GRPC_AUTH = {"authorization": f"Bearer {KEY}"}  # gRPC metadata keys are lower case


def repository(root: Path, model: Path, *entries: tuple[str, int]) -> Path:
    for name, version in entries:
        place(root, model, name, version)
    return root


def place(root: Path, model: Path, name: str, version: int) -> Path:
    """A version directory with its model file, moved in whole (an atomic rename)."""
    staging = root.parent / f".staging-{name}-{version}"
    staging.mkdir(parents=True)
    shutil.copy(model, staging / "model.onnx")
    (root / name).mkdir(parents=True, exist_ok=True)
    staging.rename(root / name / str(version))
    return root / name / str(version)


def index(url: str) -> dict[tuple[str, str], tuple[str, str]]:
    entries = httpx.post(f"{url}/v2/repository/index", headers=AUTH).json()
    return {(e["name"], e["version"]): (e["state"], e["reason"]) for e in entries}


def test_explicit_load_unload_and_index_through_tritonclient(
    tiny_model: Path, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo", tiny_model, ("tiny", 1), ("other", 1))
    with running(
        None,
        model_repository=root,
        default_model="tiny",
        model_control="explicit",
        api_key=KEY,
    ) as (process, url):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        assert "model_repository" in client.get_server_metadata()["extensions"]
        with pytest.raises(InferenceServerException) as caught:
            client.load_model("tiny")  # no key
        assert caught.value.status() == "401"
        place(root, tiny_model, "tiny", 2)
        client.load_model("tiny", headers=AUTH)
        assert client.get_model_metadata("tiny")["versions"] == ["1", "2"]
        photo = {"file": images.jpeg()}
        assert (
            httpx.post(f"{url}/classify", files=photo, headers=AUTH).json()["version"] == 2
        )  # latest
        client.unload_model("other", headers=AUTH)
        assert not client.is_model_ready("other")
        assert (
            httpx.post(f"{url}/classify?model=other", files=photo, headers=AUTH).status_code == 404
        )
        listed = client.get_model_repository_index(headers=AUTH)
        assert {
            "name": "other",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        } in listed
        assert metric(url, 'classifier_model_ready{model="other",version="1"}') is None
        assert metric(url, 'classifier_model_loads_total{model="other",outcome="unloaded"}') == 1
        # The same calls over gRPC.
        assert process.grpc_address is not None
        grpc_client = grpcclient.InferenceServerClient(process.grpc_address)
        grpc_client.load_model("other", headers=GRPC_AUTH)
        assert grpc_client.is_model_ready("other")
        assert {m.name for m in grpc_client.get_model_repository_index().models} == {
            "tiny",
            "other",
        }
        grpc_client.unload_model("other", headers=GRPC_AUTH)
        assert not grpc_client.is_model_ready("other")
        with pytest.raises(InferenceServerException) as missing:
            grpc_client.load_model("nope", headers=GRPC_AUTH)
        assert missing.value.status() == str(grpc.StatusCode.NOT_FOUND)
        assert metric(url, 'classifier_model_loads_total{model="other",outcome="loaded"}') == 1
        assert httpx.get(f"{url}/health/ready").status_code == 200


def test_a_broken_version_leaves_the_served_one_and_says_why(
    tiny_model: Path, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo", tiny_model, ("tiny", 1))
    with running(None, model_repository=root, model_control="explicit", api_key=KEY) as (_, url):
        (root / "tiny" / "2").mkdir()
        (root / "tiny" / "2" / "model.onnx").write_bytes(b"not a model, half copied")
        response = httpx.post(f"{url}/v2/repository/models/tiny/load", headers=AUTH)
        assert response.status_code == 409
        assert response.json()["error"].startswith("model_load_failed: model 'tiny': version 2")
        state, reason = index(url)[("tiny", "2")]
        assert state == "UNAVAILABLE"
        assert "failed to load" in reason
        assert index(url)[("tiny", "1")] == ("READY", "")
        answer = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, headers=AUTH)
        assert (answer.status_code, answer.json()["version"]) == (200, 1)
        assert httpx.get(f"{url}/health/ready").status_code == 200


def test_control_is_refused_where_it_is_off_or_open_to_anyone(
    tiny_model: Path, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo", tiny_model, ("tiny", 1))
    with running(None, model_repository=root) as (_, url):
        off = httpx.post(f"{url}/v2/repository/models/tiny/unload")
        assert (off.status_code, off.json()["error"].split(":")[0]) == (
            409,
            "model_control_disabled",
        )
    with running(None, model_repository=root, model_control="explicit") as (_, url):
        keyless = httpx.post(f"{url}/v2/repository/models/tiny/unload")
        assert (keyless.status_code, keyless.json()["error"].split(":")[0]) == (403, "forbidden")
        strict = httpx.post(
            f"{url}/v2/repository/models/tiny/load", json={"parameters": {"config": "{}"}}
        )
        assert strict.status_code == 400


def send(url: str, count: int, results: list[int], **params: str) -> list[threading.Thread]:
    def one() -> None:
        try:
            response = httpx.post(
                f"{url}/classify",
                params=params,
                files={"file": images.jpeg()},
                headers=AUTH,
                timeout=60,
            )
            results.append(response.status_code)
        except httpx.HTTPError:
            results.append(0)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_unloading_a_model_answers_the_32_requests_in_flight(tmp_path: Path) -> None:
    slow = calibrated_slow_model(tmp_path / "slow.onnx", seconds=0.5)
    root = repository(tmp_path / "repo", slow, ("slow", 1), ("spare", 1))
    with running(
        None,
        model_repository=root,
        default_model="slow",
        model_control="explicit",
        api_key=KEY,
        max_batch_size=4,
        shutdown_grace_s=60,
    ) as (_, url):
        results: list[int] = []
        threads = send(url, 32, results)
        # Accepted: answered or in progress (eight batches of half a second: most are
        # still in flight when the unload comes).
        done = 'classifier_http_requests_total{method="POST",route="/classify",status="200"}'
        in_progress = "classifier_requests_in_progress"
        accepted = lambda: (metric(url, in_progress) or 0) + (metric(url, done) or 0)  # noqa: E731
        wait_until(lambda: accepted() == 32, what="32 accepted")
        assert (metric(url, in_progress) or 0) > 0
        unloaded = httpx.post(f"{url}/v2/repository/models/slow/unload", headers=AUTH, timeout=120)
        assert unloaded.status_code == 200
        for thread in threads:
            thread.join(timeout=120)
        assert results == [200] * 32
        gone = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, headers=AUTH)
        assert gone.status_code == 404
        assert index(url)[("slow", "1")] == ("UNAVAILABLE", "unloaded")


def write_slowly(path: Path, data: bytes, pieces: int, pause_s: float) -> None:
    """A copy in progress: the file grows piece by piece."""
    path.parent.mkdir(parents=True, exist_ok=True)
    step = len(data) // pieces + 1
    with path.open("wb") as file:
        for start in range(0, len(data), step):
            file.write(data[start : start + step])
            file.flush()
            time.sleep(pause_s)


def test_poll_mode_follows_the_repository_while_traffic_runs(
    tiny_model: Path, tiny_random_model: Path, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo", tiny_model, ("tiny", 1))
    with running(None, model_repository=root, model_control="poll", repository_poll_s=0.3) as (
        process,
        url,
    ):
        stop, statuses = threading.Event(), []

        def traffic() -> None:  # requests that name no version, all along
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    answer = client.post(f"{url}/classify", files={"file": images.jpeg()})
                    statuses.append((answer.status_code, answer.json().get("version")))

        runner = threading.Thread(target=traffic)
        runner.start()
        try:
            # Copied in place piece by piece (each piece well within a poll interval): it is
            # read only once whole, never half-written.
            write_slowly(
                root / "tiny" / "2" / "model.onnx", tiny_random_model.read_bytes(), 12, 0.1
            )
            wait_until(lambda: (200, 2) in statuses[-3:], timeout_s=60, what="version 2 serving")
            shutil.rmtree(root / "tiny" / "2")  # removed: version 1 is the latest again
            wait_until(lambda: ("tiny", "2") not in index(url), 60, "version 2 gone")
            (root / "tiny" / "3").mkdir()
            (root / "tiny" / "3" / "model.onnx").write_bytes(b"corrupt")
            wait_until(lambda: "failed to load" in index(url).get(("tiny", "3"), ("", ""))[1], 60)
            count_before = len(statuses)
            wait_until(lambda: len(statuses) > count_before + 5, what="traffic goes on")
        finally:
            stop.set()
            runner.join(timeout=60)
        assert {status for status, _ in statuses} == {200}
        assert statuses[-1] == (200, 1)
        assert metric(url, 'classifier_model_loads_total{model="tiny",outcome="failed"}') == 1
        output = process.output()
        assert "tiny v2: serving" in output
        assert "tiny v2: unloading (removed from the repository)" in output


def test_ten_unload_and_load_cycles_give_the_memory_back(tiny_model: Path, tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    root = repository(tmp_path / "repo", tiny_model, *[(n, 1) for n in names])
    with running(
        None, model_repository=root, default_model="a", model_control="explicit", api_key=KEY
    ) as (process, url):

        def cycle() -> None:
            for name in names[1:]:
                assert (
                    httpx.post(
                        f"{url}/v2/repository/models/{name}/unload", headers=AUTH
                    ).status_code
                    == 200
                )
            for name in names[1:]:
                assert (
                    httpx.post(f"{url}/v2/repository/models/{name}/load", headers=AUTH).status_code
                    == 200
                )

        cycle()  # the first cycle settles what stays allocated for good
        settled = rss_mb(process.pid)
        for _ in range(10):
            cycle()
        grown = rss_mb(process.pid) - settled
        assert grown < 20, f"RSS grew {grown:.1f} MiB over ten cycles"
        assert len(httpx.get(f"{url}/models").json()["models"]) == 4


def test_a_new_copy_of_a_version_keeps_its_series_and_a_failed_one_changes_nothing(
    tiny_model: Path, tiny_random_model: Path, tmp_path: Path
) -> None:
    root = repository(tmp_path / "repo", tiny_model, ("tiny", 1))
    ready = 'classifier_model_ready{model="tiny",version="1"}'
    with running(None, model_repository=root, model_control="explicit", api_key=KEY) as (_, url):
        before = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, headers=AUTH)
        shutil.copy(tiny_random_model, root / "tiny" / "1" / "model.onnx")  # a new copy
        load = f"{url}/v2/repository/models/tiny/load"
        assert httpx.post(load, headers=AUTH).status_code == 200
        after = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, headers=AUTH)
        assert before.json()["predictions"] != after.json()["predictions"]  # the new copy
        assert metric(url, ready) == 1
        (root / "tiny" / "1" / "model.onnx").write_bytes(b"a broken copy")
        assert httpx.post(load, headers=AUTH).status_code == 409
        assert metric(url, ready) == 1  # the copy serving still has its series
        again = httpx.post(f"{url}/classify", files={"file": images.jpeg()}, headers=AUTH)
        assert again.json()["predictions"] == after.json()["predictions"]
