"""Where one decode step of the rendered Accelerate handler spends its time: the kernels inside its CUDA graph.

``python scripts/bench_decode_step.py --model-py model.py [--layers 4] [--batch 4] [--out docs/benchmarks]``

Builds the architecture (default flan-t5-xxl) with random bf16 weights and ``--layers`` encoder and decoder layers,
starts the handler as the server would (its defaults: compiled at load, CUDA graphs, its own kernels where they won
at load), runs one request, then replays the decode step of the request's bucket: its mean time over 40 replays,
and under ``torch.profiler`` every kernel of one replay in order with its start and duration, and the kernels summed
by name over ten. Kernels per layer and the gaps between them are what a step's fixed cost is made of; the weight
reads are the bandwidth bound. Writes ``decode-step-<gpu>.json``. Needs an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import bench_handler  # noqa: E402

REPLAYS = 40
PROFILED = 10


def decode_step(args: argparse.Namespace) -> tuple[Any, Any]:
    """The handler started on a fresh checkpoint, and the bucket (its static buffers and graphs) of one request."""
    import torch

    checkpoint = args.work / "checkpoint"
    if not (checkpoint / "config.json").exists():
        checkpoint.mkdir(parents=True, exist_ok=True)
        bench_handler.build_checkpoint(checkpoint, json.loads(args.model_config.read_text()), args.layers, "cuda")
    args.batches, args.warm_shapes, args.device = str(args.batch), None, "cuda"
    handler, properties = bench_handler.handler_for(args.model_py, checkpoint, args)
    model, tokenizer, seq2seq = handler.HANDLER.load_model(properties)
    fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, properties)
    if fast is None:
        raise SystemExit("bench_decode_step: the handler decodes with generate() here: no decode step to profile")
    bench_handler.log(f"handler: {bench_handler.describe(fast)}")
    _, encoded = args.cases[args.batch]
    key = fast.bucket(args.batch, encoded["input_ids"].shape[1], args.new_tokens)
    with torch.inference_mode():
        fast.generate_ids(encoded.to(model.device), fast.settings({"max_new_tokens": args.new_tokens}))
    return fast, fast.shapes[key]


def profile(shape: Any) -> dict[str, Any]:
    """Mean step time over REPLAYS, and the kernels of PROFILED replays (each from a fresh prompt pass)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    prompt, mask = shape.input_ids.clone(), shape.source_mask.clone()
    with torch.inference_mode():
        shape.prefill(prompt, mask)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(REPLAYS):
            shape.next_logits()
        end.record()
        end.synchronize()
        shape.prefill(prompt, mask)
        torch.cuda.synchronize()
        with profiler(activities=[ProfilerActivity.CUDA]) as recorded:
            for _ in range(PROFILED):
                shape.next_logits()
            torch.cuda.synchronize()
    kernels = sorted((e for e in recorded.events() if e.device_type.name == "CUDA"), key=lambda e: e.time_range.start)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for event in kernels:
        by_name[event.name][0] += 1 / PROFILED
        by_name[event.name][1] += event.device_time / PROFILED
    per_step = len(kernels) // PROFILED
    one = kernels[per_step * (PROFILED // 2) : per_step * (PROFILED // 2 + 1)]  # a replay from the middle
    origin = one[0].time_range.start
    return {
        "step_us": round(start.elapsed_time(end) * 1000 / REPLAYS, 1),
        "kernels_per_step": per_step,
        "busy_us": round(sum(e.device_time for e in one), 1),
        "span_us": round(one[-1].time_range.end - origin, 1),
        "by_name": sorted(([n, round(c, 1), round(t, 2)] for n, (c, t) in by_name.items()), key=lambda r: -r[2]),
        "sequence": [[round(e.time_range.start - origin, 2), round(e.device_time, 2), e.name[:100]] for e in one],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-py", type=Path, required=True, help="a rendered model.py (lmi_handlers/ beside it)")
    parser.add_argument("--model-config", type=Path, default=ROOT / "lmi_deploy/model_configs/google--flan-t5-xxl.json")
    parser.add_argument("--layers", type=int, default=4, help="encoder and decoder layers (kernels repeat per layer)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--input-tokens", type=int, default=bench_handler.INPUT_TOKENS)
    parser.add_argument("--new-tokens", type=int, default=bench_handler.NEW_TOKENS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-decode-step"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_decode_step: needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    fast, shape = decode_step(args)
    result = {"gpu": torch.cuda.get_device_name(0), "layers": args.layers, "batch": args.batch}
    result |= {"bucket": [shape.batch, shape.source, shape.new], "handler": bench_handler.describe(fast)}
    result |= profile(shape)
    print(f"decode step: {result['step_us']} us, {result['kernels_per_step']} kernels, busy {result['busy_us']} us")
    for name, count, micros in result["by_name"][:25]:
        print(f"  {micros:9.2f} us  x{count:5.1f}  {name[:110]}")
    gpu = str(result["gpu"]).lower().replace("nvidia ", "").replace(" ", "-")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"decode-step-{gpu}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
