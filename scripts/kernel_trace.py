"""``bench_handler.py --tp N --profile DIR``: where a request's GPU time goes, per rank.

After a setup's batch is timed, each rank answers the same request once more under ``torch.profiler`` (kernels
inside CUDA graph replays included) and writes its kernels in start order to ``DIR/<setup>-b<batch>-rank<R>.json``
as ``[name, start µs, duration µs]``; on a CPU-only machine, the top-level operators instead. ``summary`` turns
one rank's list into what the report keeps: how many kernels, the span from the first start to the last end, the
time busy, the idle gaps (over 50 µs: the host making the GPU wait; the rest: launch gaps between kernels) and the
kernels that took the most time. This is how the decode attention's 12-19 µs a call and the 1 ms host round trip
every 8 tokens were found on flan-ul2 at TP 2 (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

LONG_GAP_US = 50.0  # a gap longer than any launch gap inside a CUDA graph: the GPU waited for the host
TOP = 12

# appended to the rendered model.py in the benchmark's copy, beside bench_tensor_parallel's PROBE
PROBE = '''

def profile(inputs):
    """bench_tensor_parallel --profile: this call's request once to warm, then once under torch.profiler; its
    kernels (the top-level operators on a CPU) to PROFILE_DIR/TAG-rank<R>.json as [name, start us, duration us]."""
    import json as _json

    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as _profile

    properties = inputs.get_properties()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    cuda = torch.cuda.is_available()
    handle(inputs)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with _profile(activities=activities) as trace:
        answer = handle(inputs)
        if cuda:
            torch.cuda.synchronize()
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    events = [
        [event.name, event.time_range.start, event.time_range.end - event.time_range.start]
        for event in trace.events()
        if event.device_type == kind and (cuda or event.cpu_parent is None)
    ]
    events.sort(key=lambda event: event[1])
    with open(f"{properties['profile_dir']}/{properties['tag']}-rank{rank}.json", "w") as written:
        _json.dump(events, written)
    return answer
'''


def summary(events: list[list[Any]]) -> dict[str, Any]:
    """One rank's kernels (``[name, start µs, duration µs]`` in start order) in figures; see the module's doc."""
    if not events:
        return {"kernels": 0}
    gaps, reached = [], events[0][1] + events[0][2]  # the latest end so far: kernels may overlap
    for _, start, duration in events[1:]:
        gaps.append(max(0.0, start - reached))
        reached = max(reached, start + duration)
    long = [gap for gap in gaps if gap > LONG_GAP_US]
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for name, _, duration in events:
        totals = by_name[name[:90]]
        totals[0] += 1
        totals[1] += duration
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:TOP]
    return {
        "kernels": len(events),
        "span_ms": round((reached - events[0][1]) / 1e3, 3),
        "busy_ms": round(sum(duration for _, _, duration in events) / 1e3, 3),
        "gaps_over_50us": len(long),
        "gaps_over_50us_ms": round(sum(long) / 1e3, 3),
        "other_gaps_ms": round((sum(gaps) - sum(long)) / 1e3, 3),
        "top": [
            {"name": name, "count": int(count), "total_ms": round(total / 1e3, 3), "mean_us": round(total / count, 2)}
            for name, (count, total) in ranked
        ],
    }


def record(group: Any, input_class: Any, body: bytes, folder: Path, tag: str, world: int) -> dict[str, Any]:
    """Every rank's trace of one request (``body``) through the running ``group``, summarised per rank."""
    folder.mkdir(parents=True, exist_ok=True)
    properties = {"handler": "profile", "content-type": "application/json", "profile_dir": str(folder), "tag": tag}
    group.call(input_class.of(properties, body))
    traces = {}
    for rank in range(world):
        path = folder / f"{tag}-rank{rank}.json"
        traces[f"rank{rank}"] = summary(json.loads(path.read_text())) if path.exists() else {"missing": str(path)}
    return traces


def describe(tag: str, traces: dict[str, Any]) -> list[str]:
    """One line per rank for the log."""
    lines = []
    for rank, trace in traces.items():
        if not trace.get("kernels"):
            lines.append(f"  profile {tag} {rank}: {trace}")
            continue
        heaviest = ", ".join(f"{t['name'][:40]} {t['total_ms']} ms" for t in trace["top"][:3])
        lines.append(
            f"  profile {tag} {rank}: {trace['kernels']} kernels, busy {trace['busy_ms']} of {trace['span_ms']} ms, "
            f"{trace['gaps_over_50us_ms']} ms in {trace['gaps_over_50us']} gaps over 50 µs; most: {heaviest}"
        )
    return lines
