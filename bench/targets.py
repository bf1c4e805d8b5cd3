"""Issue 5's six targets, checked against one results file (ratios within the run).

Each entry says whether it was met, and whether any measurement it rests on was noisy
(other processes took more than 0.25 cores meanwhile): a noisy verdict is not evidence.
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from bench.cpu import is_noisy

Step = dict[str, Any]


def find_step(
    result: dict[str, Any], mode: str, images: str, concurrency: int = 0, overload: bool = False
) -> Step | None:
    for step in result["modes"].get(mode, {}).get("steps", []):
        if (step["images"], step["concurrency"], step["overload"]) == (
            images,
            concurrency,
            overload,
        ):
            found: Step = step
            return found
    return None


def _ratio(a: Step | None, b: Step | None) -> float | None:
    if a is None or b is None or not b["throughput"]:
        return None
    return float(a["throughput"] / b["throughput"])


def _target(
    number: int,
    text: str,
    value: float | None,
    limit: float,
    higher: bool,
    unit: str = "",
    used: tuple[Step | None, ...] = (),
) -> dict[str, Any]:
    met = None if value is None else (value >= limit if higher else value <= limit)
    return {
        "target": number,
        "description": text,
        "value": value,
        "limit": limit,
        "direction": ">=" if higher else "<=",
        "unit": unit,
        "met": met,
        "noisy": any(is_noisy(step) for step in used),
    }


def _nearest(values: list[int], wanted: int) -> int:
    return max(values, key=lambda c: (c <= wanted, c))


def check(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per measurable condition; `met` is None where the run lacks the step."""
    if "service" not in result["modes"]:
        return []
    plan, engine = result["plan"], result["engine"]
    c16 = _nearest(plan["concurrencies"], 16)
    cp = _nearest(plan["phone_concurrencies"], 16)
    cmax = max(plan["concurrencies"])
    web = find_step(result, "service", "web", c16)
    web_cp = find_step(result, "service", "web", cp) or web
    base = find_step(result, "pytorch baseline", "web", c16)
    c1 = find_step(result, "service", "web", 1)
    peak = find_step(result, "service", "web", cmax)
    b1 = (engine.get("batch1_latency_ms") or {}).get("p50")
    c1_gap = c1["latency_ms"]["p50"] - b1 if c1 and b1 and c1["latency_ms"]["p50"] else None
    targets = [
        _target(
            1,
            f"service / engine ceiling, web c={c16}",
            _ratio(web, engine),
            0.90,
            True,
            "x",
            (web, engine),
        ),
        _target(
            2,
            f"service / PyTorch baseline, web c={c16}",
            _ratio(web, base),
            1.5,
            True,
            "x",
            (web, base),
        ),
    ]
    for mode in (m for m in result["modes"] if m.startswith("service") and "batch=1" not in m):
        phone = find_step(result, mode, "phone", cp)
        if phone is not None:
            targets.append(
                _target(
                    3,
                    f"{mode} phone / service web, c={cp}",
                    _ratio(phone, web_cp),
                    0.75,
                    True,
                    "x",
                    (phone, web_cp),
                )
            )
    targets.append(
        _target(4, "c=1 p50 minus engine batch-1 p50", c1_gap, 10.0, False, "ms", (c1, engine))
    )
    over = find_step(result, "service", "web", overload=True)
    if over is not None:
        targets += _overload(over, _timeout_ms(result))
    targets += [
        _target(
            6,
            "cold start (spawn -> ready)",
            result["modes"]["service"]["cold_start_s"],
            5.0,
            False,
            "s",
        ),
        _target(
            6,
            f"peak RSS, web c={cmax}",
            peak["peak_rss_mb"] if peak else None,
            600.0,
            False,
            "MB",  # memory does not depend on other processes: never marked noisy
        ),
    ]
    return targets


def _timeout_ms(result: dict[str, Any]) -> float:
    env = result["modes"]["service"]["env"]
    default = Settings.model_fields["request_timeout_s"].default
    return 1000 * float(env.get("DENSENET_REQUEST_TIMEOUT_S", default))


def _overload(step: Step, timeout_ms: float) -> list[dict[str, Any]]:
    other = sum(n for status, n in step["status_counts"].items() if status not in ("200", "503"))
    recovered = step["recovery"]["recovered_after_s"]
    used = (step,)
    back = _target(5, "overload: back to normal latency after", recovered, 5.0, False, "s", used)
    if recovered is None:
        back["met"] = False  # never came back within the probe time
    return [
        _target(5, "overload: responses other than 200/503", float(other), 0.0, False, "", used),
        _target(5, "overload: server still running", float(step["server_alive"]), 1.0, True),
        _target(
            5,
            "overload: accepted p99",
            step["accepted_latency_ms"]["p99"],
            timeout_ms,
            False,
            "ms",
            used,
        ),
        _target(
            5, "overload: 503 p99", step["rejected_latency_ms"]["p99"], 50.0, False, "ms", used
        ),
        back,
    ]
