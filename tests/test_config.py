"""Settings: environment parsing, validation, derived values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_environment_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSENET_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("DENSENET_CORS_ORIGINS", '["https://a.test"]')
    monkeypatch.setenv("DENSENET_PROVIDERS", " CUDAExecutionProvider , CPUExecutionProvider ")
    settings = Settings()
    assert settings.max_batch_size == 16
    assert settings.cors_origins == ["https://a.test"]
    assert settings.provider_list() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert Settings(providers="auto").provider_list() is None


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`${API_KEY}` unset in compose gives an empty key: it must not turn auth on with an
    empty token accepted."""
    monkeypatch.setenv("DENSENET_API_KEY", key)
    with pytest.raises(ValidationError, match="set but empty"):
        Settings()


def test_a_key_from_a_file_loses_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret made from a file usually ends in a newline that no client sends: stripped,
    as the client's token is."""
    monkeypatch.setenv("DENSENET_API_KEY", " s3cret\n")
    settings = Settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"


@pytest.mark.parametrize("key", ["s3crét", "k\u00e9y", "tab\tinside", "bell\x07"])
def test_a_key_no_header_can_carry_is_refused(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header arrives as latin-1 and the key was compared as UTF-8: a non-ASCII key
    could never match, so it is a start-up error, not a silent lock-out."""
    monkeypatch.setenv("DENSENET_API_KEY", key)
    with pytest.raises(ValidationError, match="only printable ASCII"):
        Settings()


def test_a_real_api_key_is_kept_secret() -> None:
    settings = Settings(api_key="s3cret")  # type: ignore[arg-type]
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_repository_takes_precedence_over_a_model_path(tmp_path: Path) -> None:
    """The images set DENSENET_MODEL_PATH; mounting a repository must still work."""
    settings = Settings(model_path=tmp_path / "a.onnx", model_repository=tmp_path)
    assert settings.model_repository == tmp_path


def test_default_model_needs_a_repository() -> None:
    with pytest.raises(ValidationError, match="needs DENSENET_MODEL_REPOSITORY"):
        Settings(default_model="densenet121")


@pytest.mark.parametrize(
    "values",
    [
        {"default_top_k": 10, "max_top_k": 5},
        {"max_batch_size": 0},
        {"providers": "  "},
        {"limit_concurrency": 0},
        {"max_inflight_upload_bytes": 10},
    ],
)
def test_invalid_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)  # type: ignore[arg-type]


def test_threads_default_to_the_cpus_available() -> None:
    settings = Settings()
    assert settings.resolved_intra_op_threads() >= 1
    assert Settings(intra_op_threads=3).resolved_intra_op_threads() == 3
    assert Settings(preprocess_threads=2).resolved_preprocess_threads() == 2
