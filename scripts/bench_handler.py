"""Benchmark the rendered Accelerate handler against plain ``generate`` on one GPU, in the same run.

``python scripts/bench_handler.py [--config FILE] [-c k=v ...] [--out docs/benchmarks]``

Builds the deployment's model architecture (default google/flan-t5-xxl, 11 B parameters) with random weights
directly on the GPU — nothing is downloaded — and a tokenizer trained on the spot; saves it as a safetensors
checkpoint; then measures

- cold load: ``from_pretrained(device_map="cuda")`` vs the handler's load (``option.fast_load``), each from the saved
  checkpoint in the same process (the file is in the page cache: it was just written);
- latency: plain ``generate`` (dynamic cache) vs the handler's ``handle()`` (JSON in, JSON out) for batch 1/4/16 at
  128 input / 64 new tokens, greedy, plus the handler with CUDA graphs off; p50/p99 of each;
- the bandwidth bound: the decoder's weights read once per new token at the copy bandwidth measured on this GPU;
- agreement: the handler's greedy tokens against plain ``generate`` on the same weights.

Prints a table and writes ``handler-<gpu>.json`` (per batch: generate_p50_ms, handler_p50_ms, handler_p99_ms,
bound_ms, plus load_s, the GPU and library versions). ``--model-py`` runs a model.py rendered elsewhere (a machine
without this project's dependencies); ``--layers N`` shrinks the model for a quick check.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCHES = (1, 4, 16)
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
    graphs, compiled = ("on" if flag else "off" for flag in (fast.graphs, fast.compiled_forward))
    return f"static cache, cuda_graphs {graphs}, compile {compiled}"


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

    from lmi_deploy.tiny_models import _tokenizer

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
    started = time.perf_counter()
    model.save_pretrained(folder, max_shard_size="5GB")
    _tokenizer().save_pretrained(folder)  # type: ignore[attr-defined]
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    log(f"saved {size / 1e9:.1f} GB in {time.perf_counter() - started:.1f} s")
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def prompts_of(tokenizer: Any, batch: int) -> list[str]:
    """``batch`` different prompts of about INPUT_TOKENS tokens each (the longest sets the padded length)."""
    import random

    from lmi_deploy.tiny_models import CORPUS

    words = " ".join(CORPUS).split()
    prompts = []
    for row in range(batch):
        generator = random.Random(row)
        text = ""
        while len(tokenizer(text)["input_ids"]) < INPUT_TOKENS:
            text += " " + generator.choice(words)
        ids = tokenizer(text)["input_ids"][:INPUT_TOKENS]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="deployment file (engine accelerate, handler custom)")
    parser.add_argument("-c", dest="context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--model-py", type=Path, help="a rendered model.py (skips rendering)")
    parser.add_argument("--model-config", type=Path, help="the model's config.json (default: the bundled one)")
    parser.add_argument("--layers", type=int, help="encoder and decoder layers (default: the model's)")
    parser.add_argument("--repeats", type=int, default=20, help="timed handler calls per batch size")
    parser.add_argument("--generate-repeats", type=int, default=5, help="timed generate calls per batch size")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--work", type=Path, help="checkpoint folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=None,
        help="handler options to measure beside the rendered defaults, e.g. 'compile=true' or "
        "'cuda_graphs=false;compile=false' (repeatable; default: those two)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke test only")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = ["compile=true", "cuda_graphs=false;compile=false"]

    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("bench_handler: needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    from lmi_deploy.runtime import load_handler

    context = {
        "engine": "accelerate",
        "handler": "custom",
        "model_id": "google/flan-t5-xxl",
        "instance_type": "ml.g6e.xlarge",
        "dtype": "bf16",
        "tensor_parallel_degree": "1",
        "deployment": "bench-handler",
    }
    if args.config:
        context["config"] = args.config
    for pair in args.context:
        key, _, value = pair.partition("=")
        context[key] = value
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-handler-"))
    work.mkdir(parents=True, exist_ok=True)
    model_py = args.model_py or render_model_py(context, work / "code")
    config_path = args.model_config or ROOT / "lmi_deploy" / "model_configs" / "google--flan-t5-xxl.json"
    model_config = json.loads(config_path.read_text())
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    log(f"{gpu}; torch {torch.__version__}")
    bandwidth = copy_bandwidth(torch, device)
    log(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")

    checkpoint = work / "checkpoint"
    if not (checkpoint / "config.json").exists():
        checkpoint.mkdir(parents=True, exist_ok=True)
        build_checkpoint(checkpoint, model_config, args.layers, device)
    size = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))

    import transformers
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    # cold load, same process, same file: from_pretrained first, then the handler's fast path
    started = time.perf_counter()
    placement = {"device_map": "cuda"} if device == "cuda" else {}
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, dtype=torch.bfloat16, **placement).eval()
    synchronize(torch, device)
    from_pretrained_s = time.perf_counter() - started
    log(f"from_pretrained: {from_pretrained_s:.2f} s")
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()

    handler: Any = load_handler(model_py)  # the rendered module: its globals are set below
    from djl_python import Input  # importable once a handler is loaded

    properties = {"model_id": str(checkpoint), "dtype": "bf16", "model_dir": str(checkpoint)}
    started = time.perf_counter()
    model, tokenizer, seq2seq = handler.load_model(properties)
    synchronize(torch, device)
    load_s = time.perf_counter() - started
    log(f"handler load (fast_load): {load_s:.2f} s")
    decoder_params = sum(p.numel() for n, p in model.decoder.named_parameters() if "embed_tokens" not in n)
    bytes_per_token = decoder_params * model.dtype.itemsize
    bound_per_token_ms = bytes_per_token / bandwidth * 1000

    variants = {}
    for name, overrides in [("handler", {}), *((v, dict(parse_pairs(v))) for v in args.variants if v)]:
        started = time.perf_counter()
        fast = handler.fast_decoder(model, tokenizer, seq2seq, dict(properties, **overrides))
        log(f"{name}: {describe(fast)} after its self-check ({time.perf_counter() - started:.1f} s)")
        variants[name] = fast
    handler._model = (model, tokenizer, seq2seq, variants["handler"])
    plain_tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="right")

    results: dict[str, Any] = {}

    def write_report() -> Path:
        report = {
            "gpu": gpu,
            "model": f"{config_path.stem.replace('--', '/')} architecture, random bf16 weights",
            "layers": args.layers or model_config.get("num_layers"),
            "new_tokens": NEW_TOKENS,
            "decoder_parameters": decoder_params,
            "copy_bandwidth_tb_s": round(bandwidth / 1e12, 2),
            "bound_ms_per_token": round(bound_per_token_ms, 3),
            "checkpoint_gb": round(size / 1e9, 2),
            "load_s": round(load_s, 2),
            "from_pretrained_load_s": round(from_pretrained_s, 2),
            "batches": results,
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

    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = prompts_of(tokenizer, batch)
        encoded = plain_tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)

        def plain(encoded: Any = encoded) -> Any:
            with torch.inference_mode():
                return model.generate(**encoded, max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)

        plain()  # warm-up
        generate_ms, plain_ids = timed(torch, device, plain, args.generate_repeats)
        body = json.dumps({"inputs": prompts, "parameters": {"max_new_tokens": NEW_TOKENS}}).encode()

        def call(body: bytes = body) -> Any:
            output = handler.handle(Input.of(properties, body))
            return json.loads(output.body())

        row: dict[str, Any] = {
            "input_tokens": int(encoded["input_ids"].shape[1]),
            "generate_p50_ms": round(statistics.median(generate_ms), 1),
        }
        for name, fast in variants.items():
            handler._model = (model, tokenizer, seq2seq, fast)
            started = time.perf_counter()
            call()  # warm-up: captures (and compiles) this shape
            warm_up_s = time.perf_counter() - started
            times, answer = timed(torch, device, call, args.repeats if name == "handler" else args.generate_repeats)
            prefix = "handler" if name == "handler" else name
            row[f"{prefix}_p50_ms"] = round(statistics.median(times), 1)
            row[f"{prefix}_p99_ms"] = round(percentile(times, 0.99), 1)
            row[f"{prefix}_decoder"] = describe(fast)
            row[f"{prefix}_first_call_s"] = round(warm_up_s, 1)
            if fast is None:
                continue
            settings = fast.settings({"max_new_tokens": NEW_TOKENS})
            with torch.inference_mode():
                fast_ids = fast.generate_ids(encoded, settings).tolist()
            reference = plain_ids[:, 1:].tolist()
            pairs = zip(fast_ids, reference, strict=False)
            same = sum(a == b for x, y in pairs for a, b in zip(x, y, strict=False))
            row[f"{prefix}_tokens_match"] = fast_ids == reference
            row[f"{prefix}_matching_tokens"] = f"{same}/{sum(len(x) for x in reference)}"
            if name == "handler":
                row["generated_tokens"] = answer["generated_tokens"]
        steps = plain_ids.shape[1] - 1
        row["bound_ms"] = round(bound_per_token_ms * steps, 1)
        if "handler_p50_ms" in row:
            row["handler_vs_bound"] = round(row["handler_p50_ms"] / row["bound_ms"], 2)
            row["generate_vs_handler"] = round(row["generate_p50_ms"] / row["handler_p50_ms"], 2)
        results[str(batch)] = row
        log(f"batch {batch}: {row}")
        write_report()  # after every batch size: a run cut short still leaves its figures
    handler._model = None
    path = write_report()
    header = ("batch", "generate p50", "handler p50", "p99", "bound", "x bound", "speed-up")
    print(" ".join(f"{h:>13}" for h in header))
    for name, row in results.items():
        keys = ("generate_p50_ms", "handler_p50_ms", "handler_p99_ms", "bound_ms", "handler_vs_bound")
        cells = [name, *(row.get(key, "-") for key in keys), row.get("generate_vs_handler", "-")]
        print(" ".join(f"{cell:>13}" for cell in cells))
    print(f"load: handler {load_s:.2f} s, from_pretrained {from_pretrained_s:.2f} s ({size / 1e9:.1f} GB); {path}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
