"""Model control: load, unload and swap model versions while serving (DENSENET_MODEL_CONTROL).

`explicit`: a client with the API key asks to load or unload a model (Triton's model
repository extension). `poll`: the repository directory is read every
DENSENET_REPOSITORY_POLL_S and the served versions follow it. Either way:

- a version takes requests only once it is loaded and warm (`ModelRepository.add`); a
  load that fails leaves what was serving untouched and says why (the index, the log);
- an unloaded or replaced version stops being found at once, the requests that found it
  finish (within the grace period), then everything that kept it alive is dropped and
  the memory given back (`_return_memory`: the runtime's arena shrunk, the C heap
  trimmed);
- polling reads a version only once its `model.onnx` has kept the same size and
  modification time for a whole poll interval, so a file still being copied is never
  read half-written (an atomic rename is picked up the same way, one interval later);
- loads and unloads run one at a time, off the request path, and every change is logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import functools
import gc
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from app.engine import Engine
from app.errors import ModelLoadFailed, ModelNotFound
from app.metrics import Metrics
from app.names import is_model_name, parse_version
from app.repository import MODEL_FILE, EngineLoader, LoadedModel, ModelRepository

log = logging.getLogger(__name__)
Key = tuple[str, int]


@dataclass(frozen=True)
class Found:
    """A version's model file as the repository holds it now."""

    path: Path
    signature: tuple[int, int]  # size and modification time (ns): changes while copied


def _found(path: Path) -> Found | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return Found(path, (stat.st_size, stat.st_mtime_ns))


def scan_model(model_dir: Path) -> dict[int, Found]:
    """The versions of one model directory that hold a model file (others are skipped:
    a version directory still being made has none yet)."""
    versions: dict[int, Found] = {}
    try:
        entries = sorted(model_dir.iterdir())
    except OSError:
        return versions
    for entry in entries:
        version = parse_version(entry.name)
        if version is not None and (found := _found(entry / MODEL_FILE)) is not None:
            versions[version] = found
    return versions


def scan(root: Path) -> dict[Key, Found] | None:
    """Every (model, version) with a model file under the repository directory; None when
    the directory cannot be read (nothing is concluded from that)."""
    found: dict[Key, Found] = {}
    try:
        model_dirs = sorted(p for p in root.iterdir() if p.is_dir() and is_model_name(p.name))
    except OSError as exc:
        log.error("model repository %s cannot be read: %s", root, exc)
        return None
    for model_dir in model_dirs:
        for version, file in scan_model(model_dir).items():
            found[(model_dir.name, version)] = file
    return found


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim


def _trim_heap() -> None:
    """Free what an unloaded engine held now (it sits in reference cycles), and hand the
    C allocator's free pages back to the system (glibc keeps them otherwise)."""
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)


def _load_in_daemon_thread(loader: EngineLoader, path: Path) -> asyncio.Future[Engine]:
    """The loader on a thread of its own that does not hold the process's exit (the
    default executor's threads are joined at exit: a slow load would outlast the grace)."""
    future: concurrent.futures.Future[Engine] = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(loader(path))
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name="model-load", daemon=True).start()
    return asyncio.wrap_future(future)


class ModelControl:
    """Loads and unloads versions of a repository's models in a running service."""

    def __init__(
        self,
        repository: ModelRepository,
        loader: EngineLoader,
        settings: Settings,
        metrics: Metrics,
        served: list[LoadedModel],
    ) -> None:
        assert settings.model_repository is not None  # Settings refuses control without one
        self.root = settings.model_repository
        self.repository, self.loader = repository, loader
        self.settings, self.metrics = settings, metrics
        self._lock = asyncio.Lock()
        # What each served version was loaded from, and what failed (not retried unchanged).
        self._loaded: dict[Key, tuple[int, int]] = {}
        for model in served:
            if (found := _found(model.path)) is not None:
                self._loaded[(model.name, model.version)] = found.signature
        self._failed: dict[Key, tuple[int, int]] = {}
        self._seen: dict[Key, tuple[int, int]] = dict(self._loaded)  # the last poll's view
        self._absent: set[Key] = set()  # served versions the last poll did not find
        self._running: set[asyncio.Task[None]] = set()
        self._released = False  # a version was retired or failed since memory was returned

    async def _shielded(self, operation: Awaitable[None]) -> None:
        """Run a load or unload to its end even when its caller goes away (a client's
        deadline): half-done, it would leave a version neither served nor freed."""
        task = asyncio.ensure_future(operation)
        self._running.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # read, so that an abandoned operation's error is not "lost"

    # --- explicit ------------------------------------------------------------------------

    async def load(self, name: str) -> None:
        """Serve model `name` as its directory holds it now: new and changed versions
        loaded, versions gone unloaded. ModelLoadFailed says which versions failed; the
        others are served."""
        await self._shielded(self._load_model(name))

    async def unload(self, name: str) -> None:
        """Stop serving every version of model `name` (in-flight requests finish)."""
        await self._shielded(self._unload_model(name))

    async def _load_model(self, name: str) -> None:
        async with self._lock:
            model_dir = self.root / name
            if not is_model_name(name) or not model_dir.is_dir():
                raise ModelNotFound(f"the model repository has no model '{name:.80}'")
            found = scan_model(model_dir)
            if not found:
                raise ModelLoadFailed(f"{model_dir}: no version directory holds {MODEL_FILE}")
            failures = await self._follow(name, found, retry_failed=True)
            await self._return_memory()
        if failures:
            raise ModelLoadFailed(f"model '{name}': " + "; ".join(failures))

    async def _unload_model(self, name: str) -> None:
        async with self._lock:
            versions = [p.version for p in self.repository if p.name == name]
            if not versions:
                raise ModelNotFound(f"model '{name:.80}' is not loaded")
            for version in versions:
                await self._retire(name, version, "unloaded")
            await self._return_memory()

    # --- poll ----------------------------------------------------------------------------

    async def poll(self) -> None:
        """One look at the repository: stable new or changed versions loaded, versions
        gone unloaded."""
        async with self._lock:
            found = scan(self.root)
            if found is None:
                return
            stable = {k: f for k, f in found.items() if self._seen.get(k) == f.signature}
            self._seen = {k: f.signature for k, f in found.items()}
            for name in sorted({n for n, _ in stable}):
                versions = {v: f for (n, v), f in stable.items() if n == name}
                await self._follow(name, versions, retry_failed=False, removals=False)
            # Gone from two polls in a row, not one: a directory being renamed, or one
            # listing that failed, does not unload a model.
            absent = {(p.name, p.version) for p in self.repository} - set(found)
            for name, version in sorted(absent & self._absent):
                await self._retire(name, version, "removed from the repository")
            self._absent = absent
            self.repository.forget_not_serving(lambda key: key not in found)
            await self._return_memory()

    async def run_polling(self) -> None:
        """Poll every DENSENET_REPOSITORY_POLL_S until cancelled."""
        while True:
            await asyncio.sleep(self.settings.repository_poll_s)
            try:
                await self.poll()
            except Exception:  # the next poll tries again; serving goes on
                log.exception("model repository poll failed")

    # --- both ----------------------------------------------------------------------------

    async def _follow(
        self, name: str, found: dict[int, Found], retry_failed: bool, removals: bool = True
    ) -> list[str]:
        failures = []
        for version, file in sorted(found.items()):
            key = (name, version)
            if self._loaded.get(key) == file.signature:
                continue
            if not retry_failed and self._failed.get(key) == file.signature:
                continue
            if (reason := await self._load(key, file)) is not None:
                failures.append(f"version {version}: {reason}")
        if removals:
            for version in [p.version for p in self.repository if p.name == name]:
                if version not in found:
                    await self._retire(name, version, "its version directory was removed")
            self.repository.forget_not_serving(lambda key: key[0] == name and key[1] not in found)
        return failures

    async def _load(self, key: Key, file: Found) -> str | None:
        """Load and warm one version, then swap it in; the reason when it failed."""
        name, version = key
        serving = self.repository.find_version(name, version) is not None
        if not serving:
            self.repository.not_serving[key] = ("LOADING", "")
        log.info("%s v%d: loading %s", name, version, file.path)
        started = time.perf_counter()
        try:
            engine = await _load_in_daemon_thread(self.loader, file.path)
            old = await self.repository.add(LoadedModel(name, version, file.path, engine))
        except Exception as exc:
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            kept = "the copy served before goes on" if serving else "nothing was served"
            log.error("%s v%d: failed to load, %s: %s", name, version, kept, reason)
            if not serving:
                self.repository.not_serving[key] = ("UNAVAILABLE", f"failed to load: {reason}")
            self._failed[key] = file.signature
            self.metrics.model_loads.labels(name, "failed").inc()
            self._released = True
            return reason
        took = time.perf_counter() - started
        self.metrics.model_loads.labels(name, "loaded").inc()
        self.metrics.model_load_seconds.labels(name).observe(took)
        self._loaded[key] = file.signature
        self._failed.pop(key, None)
        log.info("%s v%d: serving (loaded and warmed in %.2f s)", name, version, took)
        if old is not None:
            log.info("%s v%d: retiring the copy it replaced", name, version)
            await self.repository.retire(old, self.settings.shutdown_grace_s, "replaced")
            self._released = True
        return None

    async def _return_memory(self) -> None:
        """After loads and unloads, once their callers hold no retired pipeline: the
        runtime's free memory and the C heap's free pages back to the system (nothing to
        do when only new versions were added)."""
        if not self._released:
            return
        self._released = False
        try:
            await asyncio.to_thread(_trim_heap)
            await self.repository.release_memory()
            await asyncio.to_thread(_trim_heap)
        except Exception:  # the change itself is done; this only returns memory sooner
            log.exception("giving memory back after a model change failed")

    async def _retire(self, name: str, version: int, reason: str) -> None:
        pipeline = self.repository.find_version(name, version)
        if pipeline is None:
            return
        log.info("%s v%d: unloading (%s)", name, version, reason)
        self._loaded.pop((name, version), None)  # first: a cancelled unload reloads
        await self.repository.retire(pipeline, self.settings.shutdown_grace_s, reason)
        self._released = True
        self.metrics.model_loads.labels(name, "unloaded").inc()
        log.info("%s v%d: unloaded", name, version)
