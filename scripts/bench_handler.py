"""Benchmark the rendered Accelerate handler against Hugging Face's own paths on one GPU, in the same run.

``python scripts/bench_handler.py [--config FILE] [-c k=v ...] [--out docs/benchmarks]``

Builds the deployment's model architecture (default google/flan-t5-xxl, 11 B parameters) with random weights
directly on the GPU — nothing is downloaded — and a tokenizer trained on the spot; saves it as a safetensors
checkpoint; then measures, for batch 1/4/16 at 128 input / 64 new tokens, greedy:

- the handler (its rendered defaults, then each ``--variant``), each on a freshly loaded model: startup (load plus
  everything ``fast_decoder`` does at load: self-check, projection fusion, compilation, warm shapes), the first
  request of each batch size after startup, then p50/p99 of its ``handle()`` (JSON in, JSON out);
- the peers, on one ``from_pretrained(device_map="cuda")`` model: plain ``generate`` (dynamic cache) and
  ``generate(cache_implementation="static")``, which compiles itself on its first call (timed apart);
- the bandwidth bound: the decoder's weights read once per new token at the copy bandwidth measured on this GPU;
- agreement: every variant's and the static peer's greedy tokens against plain ``generate``.

Also: a disk-cold load (page cache dropped) beside the disk's read bandwidth, the streaming kernel's timings against
cuBLAS, and, last, startup in a fresh process with the compile cache the defaults' startup saved (bench_load.py).
The handler runs first, with empty compiler caches. Prints a table and writes ``handler-<gpu>.json``. ``--model-py``
runs a model.py rendered elsewhere (a machine without this project's dependencies); ``--layers N`` shrinks the model
for a quick check.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import bench_load  # noqa: E402  (after ROOT is importable)

BATCHES = (1, 4, 16)
CACHE_FOLDER = "partitioned/compile-cache"  # where the handler looks under the weights (lmi_handlers.compile_cache)
INPUT_TOKENS = 128
NEW_TOKENS = 64


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(fast: Any) -> str:
    if fast is None:
        return "generate()"
    graphs, compiled, fused = ("on" if flag else "off" for flag in (fast.graphs, fast.compiled_forward, fast.fused))
    streamed = getattr(fast, "kernels", "")
    return f"static cache, cuda_graphs {graphs}, compile {compiled}, fused projections {fused}{streamed}"


def parse_pairs(text: str) -> list[tuple[str, str]]:
    return [(k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in text.split(";"))]


def synchronize(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(torch: Any, device: str) -> float:
    """Copy rate within the device in bytes/s, counting bytes read plus bytes written (median of 20)."""
    size = (1 << 31) if device == "cuda" else (1 << 27)
    source = torch.randint(0, 255, (size,), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    times = []
    for _ in range(25):
        synchronize(torch, device)
        started = time.perf_counter()
        target.copy_(source)
        synchronize(torch, device)
        times.append(time.perf_counter() - started)
    del source, target
    return 2 * size / statistics.median(times[5:])


def render_model_py(context: dict[str, Any], out: Path) -> Path:
    from lmi_deploy.config import load_config
    from lmi_deploy.render import render

    config = load_config(context)
    return render(config, out).directory / "model.py"


def build_checkpoint(folder: Path, model_config: dict[str, Any], layers: int | None, device: str) -> None:
    """Random weights of the architecture, made on the device in bf16, saved with a trained tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from lmi_deploy.tiny_models import _tokenizer, own_lm_head, text_only_head

    config = AutoConfig.for_model(**model_config)
    if layers:
        config.num_layers = config.num_decoder_layers = layers
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = AutoModelForSeq2SeqLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(torch.bfloat16).eval()
    tokenizer = _tokenizer()
    special = max(tokenizer.all_special_ids) + 1  # type: ignore[attr-defined]
    live = range(special, len(tokenizer))  # type: ignore[arg-type]
    head = model.get_output_embeddings().weight
    if head is not model.get_input_embeddings().weight:  # a head of its own: greedy ids the tokenizer spells
        text_only_head(head, live)
    started = time.perf_counter()
    model.save_pretrained(folder, max_shard_size="5GB")
    if model_config.get("tie_word_embeddings") is False:  # flan-t5, flan-ul2: an LM head of its own, as published
        own_lm_head(folder, config.d_model, config.vocab_size, device, torch.bfloat16, live)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    log(f"saved {size / 1e9:.1f} GB in {time.perf_counter() - started:.1f} s")
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def prompts_of(tokenizer: Any, batch: int, length: int) -> list[str]:
    """``batch`` different prompts of about ``length`` tokens each (the longest sets the padded length)."""
    import random

    from lmi_deploy.tiny_models import CORPUS

    words = " ".join(CORPUS).split()
    prompts = []
    for row in range(batch):
        generator = random.Random(row)
        text = ""
        while len(tokenizer(text)["input_ids"]) < length:
            text += " " + generator.choice(words)
        ids = tokenizer(text)["input_ids"][:length]
        prompts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return prompts


def timed(torch: Any, device: str, function: Any, repeats: int) -> tuple[list[float], Any]:
    times = []
    result = None
    for _ in range(repeats):
        synchronize(torch, device)
        started = time.perf_counter()
        result = function()
        synchronize(torch, device)
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def free(torch: Any, device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # the next variant compiles from scratch, as a new process would


def compiled_graphs(torch: Any) -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


def measure_variant(
    handler: Any, properties: dict[str, str], overrides: dict[str, str], cases: dict[int, Any], args: Any
) -> tuple[dict[str, Any], dict[int, Any]]:
    """One handler variant on a freshly loaded model: startup, then per batch the first request and p50/p99."""
    import torch
    from djl_python import Input

    device = args.device
    started = time.perf_counter()
    model, tokenizer, seq2seq = handler.HANDLER.load_model(properties)
    synchronize(torch, device)
    load_s = time.perf_counter() - started
    graphs_before = compiled_graphs(torch)
    fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, dict(properties, **overrides))
    synchronize(torch, device)
    startup_s = time.perf_counter() - started
    summary = {
        "decoder": describe(fast),
        "load_s": round(load_s, 2),
        "startup_s": round(startup_s, 1),
        "compilations": compiled_graphs(torch) - graphs_before,
        "warm_buckets": sorted(fast.warm) if fast is not None else [],
    }
    if not overrides and fast is not None and fast.compiled_forward is not None:
        from lmi_handlers import compile_cache  # the shipped module the rendered model.py imported

        summary["compile_cache_saved"] = compile_cache.save(str(Path(properties["model_dir"]) / CACHE_FOLDER))
    log(f"{overrides or 'defaults'}: {summary}")
    handler.HANDLER.loaded = (model, tokenizer, seq2seq, fast)
    rows: dict[int, Any] = {}
    for batch, (prompts, encoded) in cases.items():
        body = json.dumps({"inputs": prompts, "parameters": {"max_new_tokens": args.new_tokens}}).encode()

        def call(body: bytes = body) -> Any:
            return json.loads(handler.handle(Input.of(properties, body)).body())

        first, _ = timed(torch, device, call, 1)
        times, answer = timed(torch, device, call, args.repeats if not overrides else args.generate_repeats)
        if not isinstance(answer, dict) or "generated_tokens" not in answer:
            raise SystemExit(f"bench_handler: the handler did not answer the batch-{batch} request: {answer}")
        row = {
            "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(percentile(times, 0.99), 1),
            "first_request_ms": round(first[0], 1),
            "generated_tokens": answer["generated_tokens"],
        }
        row["first_vs_steady"] = round(row["first_request_ms"] / row["p50_ms"], 2)
        if fast is not None:
            key = fast.bucket(len(prompts), encoded["input_ids"].shape[1], args.new_tokens)
            row["bucket"], row["bucket_compiled"] = list(key), bool(fast.shapes[key].compiled)
            with torch.inference_mode():
                ids = fast.generate_ids(encoded.to(model.device), fast.settings({"max_new_tokens": args.new_tokens}))
            row["ids"] = ids.tolist()
        rows[batch] = row
        log(f"  batch {batch}: { {k: v for k, v in row.items() if k not in ('ids', 'generated_tokens')} }")
    handler.HANDLER.loaded = None
    del model, fast
    free(torch, device)
    return summary, rows


def measure_peers(checkpoint: Path, cases: dict[int, Any], args: Any) -> tuple[float, int, dict[int, Any]]:
    """Plain generate and generate(cache_implementation="static") on one from_pretrained model, per batch.

    Returns the load time, the decoder's parameters (its embedding excluded) and a row per batch.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    device = args.device
    started = time.perf_counter()
    placement = {"device_map": "cuda"} if device == "cuda" else {}
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, dtype=torch.bfloat16, **placement).eval()
    synchronize(torch, device)
    load_s = time.perf_counter() - started
    log(f"from_pretrained: {load_s:.2f} s")
    decoder_params = sum(p.numel() for n, p in model.decoder.named_parameters() if "embed_tokens" not in n)
    pad = model.generation_config.pad_token_id
    rows: dict[int, Any] = {}
    for batch, (_, encoded) in cases.items():
        encoded = encoded.to(model.device)

        def plain(encoded: Any = encoded, **extra: Any) -> Any:
            with torch.inference_mode():
                return model.generate(**encoded, max_new_tokens=args.new_tokens, pad_token_id=pad, **extra)

        plain()  # warm-up
        generate_ms, plain_ids = timed(torch, device, plain, args.generate_repeats)
        first, _ = timed(torch, device, lambda: plain(cache_implementation="static"), 1)
        static_ms, static_ids = timed(
            torch, device, lambda: plain(cache_implementation="static"), args.generate_repeats
        )
        rows[batch] = {
            "generate_p50_ms": round(statistics.median(generate_ms), 1),
            "static_peer_p50_ms": round(statistics.median(static_ms), 1),
            "static_peer_first_call_s": round(first[0] / 1000, 1),
            "static_peer_tokens_match": static_ids.tolist() == plain_ids.tolist(),
            "steps": plain_ids.shape[1] - 1,
            "ids": plain_ids[:, 1:].tolist(),
        }
        log(f"  batch {batch}: { {k: v for k, v in rows[batch].items() if k != 'ids'} }")
    model = None
    free(torch, device)
    return load_s, decoder_params, rows


def until_end(rows: list[list[int]], eos: int) -> list[list[int]]:
    """Each row up to and including its first end-of-sequence token (what follows is batch padding)."""
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def matching(mine: list[list[int]], reference: list[list[int]]) -> str:
    same = sum(a == b for x, y in zip(mine, reference, strict=False) for a, b in zip(x, y, strict=False))
    return f"{same}/{sum(len(x) for x in reference)}"


def deployment_context(args: argparse.Namespace) -> dict[str, str]:
    """The deployment whose handler is rendered: flan-t5-xxl with limits that fit the measured requests."""
    context = {
        "engine": "accelerate",
        "handler": "custom",
        "model_id": "google/flan-t5-xxl",
        "instance_type": "ml.g6e.xlarge",
        "dtype": "bf16",
        "tensor_parallel_degree": "1",
        "deployment": "bench-handler",
        "max_batch_size": "16",
        "max_sequence_length": str(INPUT_TOKENS + NEW_TOKENS),
    }
    if args.config:
        context["config"] = args.config
    for pair in args.context:
        key, _, value = pair.partition("=")
        context[key] = value
    return context


def combine(
    peer_rows: dict[int, Any], handler_rows: dict[str, dict[int, Any]], bound_per_token_ms: float, eos: int
) -> dict[str, Any]:
    """One row per batch: the peers, every handler variant (prefixed by its name), the bound and the ratios."""
    results: dict[str, Any] = {}
    for batch, peer in peer_rows.items():
        row = {k: v for k, v in peer.items() if k != "ids"}
        row["bound_ms"] = round(bound_per_token_ms * peer["steps"], 3)
        for name, rows in handler_rows.items():
            mine = rows[batch]
            prefix = "handler" if name == "handler" else name
            for key, value in mine.items():
                if key != "ids":
                    row[f"{prefix}_{key}"] = value
            if "ids" in mine:
                ids, reference = until_end(mine["ids"], eos), until_end(peer["ids"], eos)
                row[f"{prefix}_tokens_match"] = ids == reference
                row[f"{prefix}_matching_tokens"] = matching(ids, reference)
        handler_ms = row["handler_p50_ms"]
        row["handler_vs_bound"] = round(handler_ms / row["bound_ms"], 2)
        row["static_peer_vs_handler"] = round(row["static_peer_p50_ms"] / handler_ms, 2)
        row["generate_vs_handler"] = round(row["generate_p50_ms"] / handler_ms, 2)
        results[str(batch)] = row
    return results


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="deployment file (engine accelerate, handler custom)")
    parser.add_argument("-c", dest="context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--model-py", type=Path, help="a rendered model.py (skips rendering)")
    parser.add_argument("--model-config", type=Path, help="the model's config.json (default: the bundled one)")
    parser.add_argument("--layers", type=int, help="encoder and decoder layers (default: the model's)")
    parser.add_argument("--repeats", type=int, default=20, help="timed handler calls per batch size")
    parser.add_argument("--generate-repeats", type=int, default=5, help="timed peer and variant calls per batch")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--input-tokens", type=int, default=INPUT_TOKENS, help="prompt tokens per request")
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help="new tokens per request (greedy)")
    parser.add_argument("--work", type=Path, help="checkpoint folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=None,
        help="handler options to measure after the rendered defaults, e.g. 'compile=false' or "
        "'fuse_projections=false;compile=false' (repeatable; default: those two)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke test only")
    parser.add_argument("--warm-shapes", help="option.warm_shapes for the handler (default: the measured requests)")
    parser.add_argument("--no-disk-cold", action="store_true", help="skip the disk-cold load and disk bandwidth")
    parser.add_argument("--autotune-probe", help="row counts (e.g. 4,16): also time the compiler's max-autotune GEMMs")
    parser.add_argument("--startup-only", type=Path, help=argparse.SUPPRESS)  # bench_load's fresh-process startup
    parser.add_argument(
        "--tp",
        type=int,
        default=1,
        help="N > 1: TP 1 vs TP N vs device_map over N GPUs (scripts/bench_tensor_parallel.py)",
    )
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = ["compile=false", "fuse_projections=false;compile=false"]
    return args


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if _tensor_parallel_degree(given) > 1:  # its own options: scripts/bench_tensor_parallel.py
        from scripts import bench_tensor_parallel

        return bench_tensor_parallel.main(given)
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_handler: needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    with bench_load.scratch_folder(args.work, "bench-handler-") as work:
        model_py = args.model_py or render_model_py(deployment_context(args), work / "code")
        if args.startup_only:
            return startup_only(args, model_py, work / "checkpoint")
        with bench_load.cold_compiler_caches():
            return run(args, argv, work, model_py)


def run(args: argparse.Namespace, argv: list[str] | None, work: Path, model_py: Path) -> int:
    """Every measurement of one handler on one GPU (main's body once its folders are set up)."""
    import torch

    device = args.device
    checkpoint = work / "checkpoint"
    config_path = args.model_config or ROOT / "lmi_deploy" / "model_configs" / "google--flan-t5-xxl.json"
    model_config = json.loads(config_path.read_text())
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    log(f"{gpu}; torch {torch.__version__}")
    bandwidth = copy_bandwidth(torch, device)
    log(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    if not (checkpoint / "config.json").exists():
        checkpoint.mkdir(parents=True, exist_ok=True)
        build_checkpoint(checkpoint, model_config, args.layers, device)
    shards = sorted(checkpoint.glob("*.safetensors"))
    handler, properties = handler_for(model_py, checkpoint, args)
    loading: dict[str, Any] = {}
    if not args.no_disk_cold:
        load, freed = partial(load_timed, handler, properties, args), partial(release, args)
        loading["disk_cold"] = bench_load.disk_cold(shards, load, freed)
        log(f"disk-cold load: {loading['disk_cold']}")
    variants, handler_rows = measure_handler(handler, properties, args)
    args.out.mkdir(parents=True, exist_ok=True)
    handler_partial = {
        "handler_startup": variants,
        "loading": loading,
        "gemv": kernel_summary(handler),
        "handler": {n: {str(b): r for b, r in rows.items()} for n, rows in handler_rows.items()},
    }
    (args.out / "handler-partial.json").write_text(json.dumps(handler_partial, indent=1) + "\n")  # a cut run keeps it
    if args.autotune_probe:
        loading["autotune_probe"] = autotune_probe(handler, properties, args)
    from_pretrained_s, decoder_params, peer_rows = measure_peers(checkpoint, args.cases, args)
    bound_per_token_ms = decoder_params * 2 / bandwidth * 1000  # bf16 weights read once per token

    results = combine(peer_rows, handler_rows, bound_per_token_ms, args.eos)
    measured = {
        "decoder_parameters": decoder_params,
        "copy_bandwidth_tb_s": round(bandwidth / 1e12, 2),
        "bound_ms_per_token": round(bound_per_token_ms, 3),
        "checkpoint_gb": round(sum(f.stat().st_size for f in shards) / 1e9, 2),
        "from_pretrained_load_s": round(from_pretrained_s, 2),
        "handler_startup": variants,
        "loading": loading,
        "gemv": kernel_summary(handler),
        "batches": results,
    }
    path = write_report(args, argv, gpu, config_path, model_config, measured)
    print_table(results, variants, path)
    # last, as the longest and least central step: the table is written even if a time limit cuts this one
    loading["compile_cache"] = compile_cache_startup(handler, model_py, checkpoint, work, args, variants)
    write_report(args, argv, gpu, config_path, model_config, measured)
    return 0


def _tensor_parallel_degree(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tp", type=int, default=1)
    return int(parser.parse_known_args(argv)[0].tp)


def handler_for(model_py: Path, checkpoint: Path, args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """The rendered module and the properties the server would hand it; the requests per batch on ``args``."""
    from transformers import AutoTokenizer

    from lmi_deploy.runtime import load_handler

    handler: Any = load_handler(model_py)  # the rendered module
    properties = {"model_id": str(checkpoint), "dtype": "bf16", "model_dir": str(checkpoint)}
    batches = [int(b) for b in args.batches.split(",")]
    properties["warm_shapes"] = args.warm_shapes or ",".join(
        f"{b}x{args.input_tokens}x{args.new_tokens}" for b in batches
    )
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="right")
    args.cases, args.eos = {}, tokenizer.eos_token_id
    for batch in batches:
        prompts = prompts_of(tokenizer, batch, args.input_tokens)
        args.cases[batch] = prompts, tokenizer(prompts, return_tensors="pt", padding=True)
    return handler, properties


def measure_handler(
    handler: Any, properties: dict[str, str], args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, dict[int, Any]]]:
    """The rendered defaults, then each --variant, each on a freshly loaded model."""
    variants: dict[str, Any] = {}
    handler_rows: dict[str, dict[int, Any]] = {}
    for name, overrides in [("handler", {}), *((v, dict(parse_pairs(v))) for v in args.variants if v)]:
        variants[name], handler_rows[name] = measure_variant(handler, properties, overrides, args.cases, args)
    return variants, handler_rows


def load_timed(handler: Any, properties: dict[str, str], args: argparse.Namespace) -> Any:
    """The handler's model load alone (config, weights to the device, tokenizer), finished on the device."""
    import torch

    loaded = handler.HANDLER.load_model(properties)
    synchronize(torch, args.device)
    return loaded


def release(args: argparse.Namespace) -> None:
    import torch

    free(torch, args.device)


def startup_only(args: argparse.Namespace, model_py: Path, checkpoint: Path) -> int:
    """In a fresh process (bench_load.startup_in_fresh_process): load and prepare the handler, report the times."""
    import torch

    handler, properties = handler_for(model_py, checkpoint, args)
    started = time.perf_counter()
    model, tokenizer, seq2seq = handler.HANDLER.load_model(properties)
    synchronize(torch, args.device)
    load_s = time.perf_counter() - started
    fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, properties)
    synchronize(torch, args.device)
    report = {
        "startup_s": round(time.perf_counter() - started, 1),
        "load_s": round(load_s, 2),
        "decoder": describe(fast),
        "compile_cache_loaded": handler.HANDLER.compile_cache_loaded,
        "warm_buckets": sorted(fast.warm) if fast is not None else [],
    }
    args.startup_only.write_text(json.dumps(report) + "\n")
    return 0


def compile_cache_startup(
    handler: Any, model_py: Path, checkpoint: Path, work: Path, args: argparse.Namespace, variants: dict[str, Any]
) -> dict[str, Any]:
    """Startup in a fresh process with the compile cache the defaults' startup saved, beside the cold one."""
    saved = variants["handler"].get("compile_cache_saved")
    result: dict[str, Any] = {"cold_startup_s": variants["handler"]["startup_s"], "saved": saved}
    if not saved:
        return result
    argv = ["--model-py", str(model_py), "--work", str(work), "--device", args.device, "--batches", args.batches]
    argv += ["--input-tokens", str(args.input_tokens), "--new-tokens", str(args.new_tokens)]
    if args.warm_shapes:
        argv += ["--warm-shapes", args.warm_shapes]
    result["with_cache"] = bench_load.startup_in_fresh_process(Path(__file__), argv, work / "startup.json")
    log(f"startup with the compile cache, in a fresh process: {result['with_cache']}")
    return result


def kernel_summary(handler: Any) -> dict[str, Any]:
    """gemv.choose's timings on this GPU, and what the chosen kernels save per decode step at each row count."""
    timings = handler.HANDLER.kernel_timings
    saved: dict[int, float] = {}
    for rows_report in timings.values():
        for rows, row in rows_report.items():
            if row["chosen"] == "kernel":
                saved[rows] = saved.get(rows, 0.0) + (row["cublas_ms"] - row["kernel_ms"]) * row["matrices"]
    return {"timings": timings, "saved_ms_per_step": {k: round(v, 3) for k, v in sorted(saved.items())}}


def autotune_probe(handler: Any, properties: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """The compiler's autotuned GEMM templates (max-autotune) on each decode matrix shape, against cuBLAS."""
    import torch

    from lmi_deploy.handlers.gemv import _time_ms

    results: dict[str, Any] = {}
    model, _, seq2seq = handler.HANDLER.load_model(properties)
    shapes: dict[tuple[int, ...], list[Any]] = {}
    for module in (model.get_decoder() if seq2seq else model).modules():
        if type(module) is torch.nn.Linear:
            shapes.setdefault(tuple(module.weight.shape), []).append(module.weight)
    for rows in [int(r) for r in args.autotune_probe.split(",")]:
        for shape, weights in sorted(shapes.items()):
            x = torch.randn((rows, shape[1]), dtype=weights[0].dtype, device=weights[0].device)
            tuned = torch.compile(torch.nn.functional.linear, mode="max-autotune-no-cudagraphs", dynamic=False)
            started = time.perf_counter()
            with torch.inference_mode():
                tuned(x, weights[0])
                compile_s = time.perf_counter() - started
                row = {
                    "cublas_ms": round(_time_ms(partial(torch.nn.functional.linear, x), weights), 4),
                    "autotuned_ms": round(_time_ms(partial(tuned, x), weights), 4),
                    "compile_s": round(compile_s, 1),
                }
            results.setdefault(f"{shape[0]}x{shape[1]}", {})[rows] = row
            log(f"  autotune probe {shape} rows {rows}: {row}")
    del model
    free(torch, args.device)
    return results


def write_report(
    args: argparse.Namespace,
    argv: list[str] | None,
    gpu: str,
    config_path: Path,
    model_config: dict[str, Any],
    measured: dict[str, Any],
) -> Path:
    """``handler-<gpu>.json`` under ``--out``: what was measured, on what, with which command."""
    import torch
    import transformers

    report = {
        "gpu": gpu,
        "model": f"{config_path.stem.replace('--', '/')} architecture, random bf16 weights",
        "layers": args.layers or model_config.get("num_layers"),
        "input_tokens": args.input_tokens,
        "new_tokens": args.new_tokens,
        **measured,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
        },
        "command": "python scripts/bench_handler.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path: Path = args.out / ("handler-" + gpu.lower().replace("nvidia ", "").split()[0] + ".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def print_table(results: dict[str, Any], variants: dict[str, Any], path: Path) -> None:
    header = ("batch", "generate", "HF static", "handler p50", "first req", "x bound", "vs static")
    print(" ".join(f"{h:>12}" for h in header))
    for name, row in results.items():
        keys = ("generate_p50_ms", "static_peer_p50_ms", "handler_p50_ms", "handler_first_request_ms")
        cells = [name, *(row[key] for key in keys), row["handler_vs_bound"], row["static_peer_vs_handler"]]
        print(" ".join(f"{cell:>12}" for cell in cells))
    for name, summary in variants.items():
        print(f"{name}: startup {summary['startup_s']} s (load {summary['load_s']} s), {summary['decoder']}")
    print(path)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
