"""``bench_handler.py --tp N``: the Accelerate handler at TP 1, at TP N (engine=MPI) and with device_map over N GPUs,
in one run, on one random-weight checkpoint of the real architecture.

Each setup runs as the container runs it, through the local runtime's MPI mode (``lmi_deploy.runtime.mpi_workers``:
one process per rank, ``RANK``/``WORLD_SIZE``/``MASTER_PORT`` as mpirun and the engine set them, the last rank's
answer returned): TP 1 on GPU 0; TP N on GPUs 0..N-1 (each rank reads its shard, all-reduces captured in the CUDA
graphs); device_map: one process that sees the N GPUs and spreads whole layers with ``device_map=balanced`` (the
fallback). Per setup: startup (load + self-check + warm shapes), then per batch the p50/p99 of the handler's answer
(JSON in, JSON out, 128 prompt / 64 new tokens greedy), and the answers, which must be identical across setups.

The all-reduce cost per token is measured in the TP ranks: the decode step's all-reduces (count from the
architecture: three per decoder layer of an encoder-decoder, two otherwise) of a [batch, d_model] bf16 tensor,
captured back to back in one CUDA graph and replayed, beside the same issued eagerly.

The projection to the seed's 4 x A10G (PCIe) is made where lmi_deploy's catalogs are importable (``--project`` on a
report written elsewhere): see :func:`projection`. ``--profile DIR`` also traces one request per setup and batch on
every rank (``scripts/kernel_trace.py``): the kernels, the time busy and the gaps where the GPU waited.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import bench_handler, bench_load, kernel_trace  # noqa: E402

# appended to the rendered model.py in the benchmark's copy: the ranks' all-reduce probe (function "probe")
PROBE = '''

def probe(inputs):
    """bench_tensor_parallel: time COUNT all-reduces of a [ROWS, HIDDEN] fp32 tensor (the row-wise layers' partial
    sums) as the model sums them (HANDLER.ranks.summed: one-shot or NCCL) and through NCCL, in one CUDA graph, and
    NCCL's eagerly."""
    import json as _json
    import time as _time

    import torch

    properties = inputs.get_properties()
    count, rows, hidden = (int(properties[k]) for k in ("count", "rows", "hidden"))
    ranks = HANDLER.ranks
    if ranks is None or not torch.cuda.is_available():
        return Output().add(_json.dumps({}))
    x = torch.zeros((rows, hidden), dtype=torch.float32, device="cuda")

    def nccl():
        for _ in range(count):
            torch.distributed.all_reduce(x)

    def model():
        y = x
        for _ in range(count):
            y = ranks.summed(y)

    def in_graph(function):  # ms per call of function (COUNT sums), in one CUDA graph
        from lmi_handlers.prompt_sums import graph_us

        return graph_us(function, replays=20) / 1e3

    nccl()
    torch.cuda.synchronize()
    started = _time.perf_counter()
    for _ in range(10):
        nccl()
    torch.cuda.synchronize()
    answer = {"count": count, "one_shot": ranks.one_shot is not None}
    answer["nccl_eager_us_each"] = (_time.perf_counter() - started) / (10 * count) * 1e6
    answer["nccl_graph_ms_per_token"] = in_graph(nccl)
    answer["graph_ms_per_token"] = in_graph(model)
    answer["graph_us_each"] = answer["graph_ms_per_token"] * 1e3 / count
    answer["gemv_all_reduce"] = HANDLER.kernel_timings.get("gemv_all_reduce")  # the fused kernel's choices
    answer["prompt_sums"] = getattr(HANDLER, "prompt_sums", None)  # NCCL or two-shot, as timed at load
    return Output().add(_json.dumps(answer))
'''
NEW_TOKENS = 64
INPUT_TOKENS = 128


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def decode_allreduces(config: dict[str, Any]) -> int:
    """All-reduces of one decode step: three per decoder layer of an encoder-decoder, two otherwise."""
    layers = config.get("num_decoder_layers") or config.get("num_layers") or config.get("num_hidden_layers") or 0
    return int(layers) * (3 if config.get("is_encoder_decoder", config.get("model_type") == "t5") else 2)


class Setup:
    """One way to run the handler: its ranks (processes), the GPUs they see, the properties of the warm-up call."""

    def __init__(self, name: str, world: int, gpus: str, properties: dict[str, str]) -> None:
        self.name, self.world, self.gpus, self.properties = name, world, gpus, properties


def run_setup(setup: Setup, model_py: Path, cases: dict[int, list[str]], args: argparse.Namespace) -> dict[str, Any]:
    """Start the setup's ranks, load, then time every batch; stop them."""
    from lmi_deploy.runtime import api_for
    from lmi_deploy.runtime.mpi_workers import WorkerGroup
    from lmi_deploy.runtime.versions import Release

    input_class, output_class = api_for(Release())
    os.environ["CUDA_VISIBLE_DEVICES"] = setup.gpus  # what mpirun exports to the copy's ranks
    group = WorkerGroup(model_py, Release().version, setup.world, output_class)
    started = time.perf_counter()
    group.start()
    try:
        loaded = group.call(input_class.of(dict(setup.properties, handler="handle")))
        if loaded is not None and getattr(loaded, "code", 200) >= 300:
            raise SystemExit(f"bench_handler --tp: {setup.name} failed to load: {loaded.body()!r}")
        result: dict[str, Any] = {"startup_s": round(time.perf_counter() - started, 1), "batches": {}}
        log(f"{setup.name}: started in {result['startup_s']} s")
        for batch, prompts in cases.items():
            body = json.dumps({"inputs": prompts, "parameters": {"max_new_tokens": args.new_tokens}}).encode()
            result["batches"][str(batch)] = time_batch(group, input_class, body, args.repeats)
            log(f"  batch {batch}: { {k: v for k, v in result['batches'][str(batch)].items() if k != 'answer'} }")
            if getattr(args, "profile", None):
                tag = f"{setup.name}-b{batch}"
                traces = kernel_trace.record(group, input_class, body, args.profile, tag, setup.world)
                result["batches"][str(batch)]["profile"] = traces
                for line in kernel_trace.describe(tag, traces):
                    log(line)
        if setup.world > 1:
            probe = {"handler": "probe", "count": str(args.allreduces), "hidden": str(args.hidden)}
            for batch in cases:
                answer = group.call(input_class.of(dict(probe, rows=str(batch))))
                result["batches"][str(batch)]["all_reduce"] = json.loads(answer.body())
                log(f"  all-reduce, batch {batch}: {result['batches'][str(batch)]['all_reduce']}")
        return result
    finally:
        group.stop()


def time_batch(group: Any, input_class: Any, body: bytes, repeats: int) -> dict[str, Any]:
    """p50/p99 of the request, the first one apart, and the p50 of the same prompts with one new token (the
    prompt pass: the difference is the decode steps)."""

    def call(data: bytes = body) -> Any:
        output = group.call(input_class.of({"handler": "handle", "content-type": "application/json"}, data))
        return json.loads(output.body())

    request = json.loads(body)
    one = json.dumps(dict(request, parameters=dict(request["parameters"], max_new_tokens=1))).encode()
    prompt_times = []
    for _ in range(max(3, repeats // 2)):
        started = time.perf_counter()
        call(one)
        prompt_times.append((time.perf_counter() - started) * 1e3)

    started = time.perf_counter()
    answer = call()
    first = (time.perf_counter() - started) * 1e3
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - started) * 1e3)
    if "generated_tokens" not in answer:
        raise SystemExit(f"bench_handler --tp: the handler did not answer: {answer}")
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(bench_handler.percentile(times, 0.99), 1),
        "first_request_ms": round(first, 1),
        "one_token_p50_ms": round(statistics.median(prompt_times), 1),
        "answer": answer,
    }


def setups(args: argparse.Namespace, checkpoint: Path) -> list[Setup]:
    """TP 1; TP N once per all-reduce mode (``tp<N>`` for the first, ``tp<N>-<mode>`` for the others); device_map."""
    shapes = getattr(args, "shapes", "")  # set per architecture; the names do not depend on it
    base = {"model_id": str(checkpoint), "model_dir": str(checkpoint), "dtype": "bf16", "warm_shapes": shapes}
    base.update(compile=args.compile)
    tp = args.tp
    gpus = ",".join(str(i) for i in range(tp))
    modes = [mode for mode in args.all_reduce.split(",") if mode]
    return [
        Setup("tp1", 1, "0", dict(base, tensor_parallel_degree="1")),
        *(
            Setup(
                f"tp{tp}" + (f"-{mode}" if i else ""),
                tp,
                gpus,
                dict(base, tensor_parallel_degree=str(tp), tp_all_reduce=mode),
            )
            for i, mode in enumerate(modes)
        ),
        Setup(
            f"device_map{tp}",
            1,
            gpus,
            dict(base, tensor_parallel_degree=str(tp), fast_load="false", device_map="balanced"),
        ),
    ]


def compare(results: dict[str, Any], tp: int) -> dict[str, Any]:
    """Per batch: TP N against TP 1 and device_map, and whether every setup gave the same answers; nothing where TP 1
    or TP N did not run (``--setups``)."""
    table: dict[str, Any] = {}
    if not {"tp1", f"tp{tp}"} <= set(results):
        return table
    for batch in results["tp1"]["batches"]:
        row = {name: result["batches"][batch]["p50_ms"] for name, result in results.items()}
        answers = [result["batches"][batch]["answer"] for result in results.values()]
        tp_row = results[f"tp{tp}"]["batches"][batch]
        row["tp_vs_tp1"] = round(row[f"tp{tp}"] / row["tp1"], 3)
        if f"device_map{tp}" in row:
            row["tp_vs_device_map"] = round(row[f"tp{tp}"] / row[f"device_map{tp}"], 3)
        for name in results:  # the other all-reduce modes
            if name.startswith(f"tp{tp}-"):
                row[f"{name}_vs_tp1"] = round(row[name] / row["tp1"], 3)
                reduce = results[name]["batches"][batch].get("all_reduce", {})
                row[f"{name}_all_reduce_graph_us_each"] = round(reduce.get("graph_us_each", 0.0), 1)
                row[f"{name}_one_shot"] = reduce.get("one_shot")
        row["answers_identical"] = all(answer == answers[0] for answer in answers)
        reference = results["tp1"]["batches"][batch]["answer"]
        row["agreement"] = {
            name: agreement(result["batches"][batch]["answer"], reference)
            for name, result in results.items()
            if name != "tp1"
        }
        row["all_reduce_graph_ms_per_token"] = round(tp_row.get("all_reduce", {}).get("graph_ms_per_token", 0.0), 3)
        row["all_reduce_nccl_eager_us_each"] = round(tp_row.get("all_reduce", {}).get("nccl_eager_us_each", 0.0), 1)
        row["all_reduce_nccl_graph_ms_per_token"] = round(
            tp_row.get("all_reduce", {}).get("nccl_graph_ms_per_token", 0.0), 3
        )
        row["one_shot"] = tp_row.get("all_reduce", {}).get("one_shot")
        row["all_reduce_graph_us_each"] = round(tp_row.get("all_reduce", {}).get("graph_us_each", 0.0), 1)
        if tp_row.get("all_reduce", {}).get("prompt_sums"):  # NCCL or two-shot, timed at load
            row["prompt_sums"] = tp_row["all_reduce"]["prompt_sums"]
        table[batch] = row
    return table


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--model-py", type=Path, help="a rendered Accelerate model.py (default: rendered here)")
    parser.add_argument("--model-config", type=Path, action="append", help="config.json of each architecture")
    parser.add_argument("--layers", type=int, help="encoder and decoder layers (default: the model's)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--input-tokens", type=int, default=INPUT_TOKENS)
    parser.add_argument("--compile", default="false", help="option.compile of every setup (default false)")
    parser.add_argument(
        "--all-reduce", default="nccl", help="option.tp_all_reduce of the TP setups, comma-separated: nccl, one_shot"
    )
    parser.add_argument(
        "--device-map-for", default="", help="architectures (config stems) also run with device_map (default: all)"
    )
    parser.add_argument(
        "--setups", default="", help="run only these setups (tp1, tp<N>, ...; default: all): a report of the rest"
    )
    parser.add_argument(
        "--profile", type=Path, help="also trace one request per setup and batch on every rank into this folder"
    )
    parser.add_argument("--work", type=Path, help="checkpoints (default: a temporary folder); reused where there")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--project", type=Path, help="only add the 4 x A10G projection to this report")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="only join reports of --setups runs (same checkpoint) into --out's report"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the three setups on each architecture and write ``tp<N>-<gpu>.json``; or, with ``--project``, add the
    4 x A10G projection to a report."""
    args = parse_arguments(argv)
    if args.project:
        written = json.loads(args.project.read_text())
        written["projection"] = {name: projection(arch) for name, arch in written["architectures"].items()}
        args.project.write_text(json.dumps(written, indent=2) + "\n")
        print(json.dumps(written["projection"], indent=2))
        return 0
    if args.merge:
        return merge(args.merge, args)
    names = [setup.name for setup in setups(args, Path("checkpoint"))]
    unknown = sorted(set(_wanted_setups(args)) - set(names))
    if unknown:
        print(f"bench_handler --tp: --setups {','.join(unknown)} is not among {', '.join(names)}", file=sys.stderr)
        return 2
    import torch

    if torch.cuda.device_count() < args.tp:
        count = torch.cuda.device_count()
        print(f"bench_handler --tp {args.tp}: needs {args.tp} GPUs, {count} visible", file=sys.stderr)
        return 2
    with bench_load.scratch_folder(args.work, "bench-tp-") as work:
        return run(args, argv, work)


def run(args: argparse.Namespace, argv: list[str] | None, work: Path) -> int:
    """Every architecture's setups, one after another, and the report (main's body once ``work`` exists)."""
    import torch

    model_py = prepare_model_py(args, work)
    gpu = torch.cuda.get_device_name(0)
    bandwidth = bench_handler.copy_bandwidth(torch, "cuda")
    report: dict[str, Any] = {"gpu": gpu, "gpus": args.tp, "copy_bandwidth_tb_s": round(bandwidth / 1e12, 2)}
    report["architectures"] = {}
    report["command"] = "python scripts/bench_handler.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    for config_path in args.model_config or [ROOT / "lmi_deploy" / "model_configs" / "google--flan-t5-xxl.json"]:
        name = config_path.stem.replace("google--", "")

        def save(entry: dict[str, Any], name: str = name) -> None:
            """After each setup: a run cut short (a device call's time limit) keeps what it measured, answers
            included, for ``--merge`` with a run of the setups it did not reach."""
            report["architectures"][name] = entry
            (args.out / f"tp{args.tp}-partial.json").write_text(json.dumps(report, indent=1) + "\n")

        run_architecture(config_path, work / name, model_py, args, bandwidth, save)
        if not args.work:  # its checkpoint (tens of GB) before the next architecture writes its own
            shutil.rmtree(work / name, ignore_errors=True)
    path = args.out / f"tp{args.tp}-{gpu.lower().replace('nvidia ', '').split()[0]}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, args.tp, path)
    return 0


def merge(paths: list[Path], args: argparse.Namespace) -> int:
    """Join reports whose runs each took some of the setups (``--setups``, one device call each) into one, compared
    as if from one run; the commands of each are kept."""
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"bench_handler --tp --merge: no report at {', '.join(missing)}", file=sys.stderr)
        return 2
    reports = [json.loads(path.read_text()) for path in paths]
    joined: dict[str, Any] = dict(reports[0], architectures={}, command=[r["command"] for r in reports])
    for report in reports:
        for name, arch in report["architectures"].items():
            into = joined["architectures"].setdefault(name, dict(arch, setups={}))
            into["setups"].update(arch["setups"])
    for arch in joined["architectures"].values():
        arch["comparison"] = compare(arch["setups"], args.tp)
    path = args.out / f"tp{args.tp}-merged.json"
    path.write_text(json.dumps(joined, indent=2) + "\n")
    print_table(joined, args.tp, path)
    return 0


def prepare_model_py(args: argparse.Namespace, work: Path) -> Path:
    """The rendered model.py (given, or rendered here) with its lmi_handlers/, plus the ranks' probe."""
    import shutil

    model_py: Path = work / "code" / "model.py"
    if model_py.exists():
        return model_py
    context = bench_handler.deployment_context(argparse.Namespace(config=None, context=[]))
    source = args.model_py or bench_handler.render_model_py(context, work / "rendered")
    model_py.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source.parent / "lmi_handlers", model_py.parent / "lmi_handlers", dirs_exist_ok=True)
    model_py.write_text(source.read_text() + PROBE + kernel_trace.PROBE)
    return model_py


def run_architecture(
    config_path: Path,
    folder: Path,
    model_py: Path,
    args: argparse.Namespace,
    bandwidth: float,
    save: Callable[[dict[str, Any]], None],
) -> None:
    """Its checkpoint, then its setups one after another; ``save`` gets the architecture's entry after each."""
    import gc

    import torch
    from transformers import AutoTokenizer

    model_config = json.loads(config_path.read_text())
    checkpoint = folder / "checkpoint"
    if not (checkpoint / "config.json").exists():
        checkpoint.mkdir(parents=True, exist_ok=True)
        bench_handler.build_checkpoint(checkpoint, model_config, args.layers, "cuda")
    gc.collect()
    torch.cuda.empty_cache()
    if args.layers:
        model_config = dict(model_config, num_layers=args.layers, num_decoder_layers=args.layers)
    args.allreduces, args.hidden = decode_allreduces(model_config), model_config["d_model"]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="right")
    batches = [int(b) for b in args.batches.split(",")]
    cases = {b: bench_handler.prompts_of(tokenizer, b, args.input_tokens) for b in batches}
    args.shapes = ",".join(f"{b}x{args.input_tokens}x{args.new_tokens}" for b in batches)
    wanted = _wanted_setups(args)
    chosen = [
        s
        for s in setups(args, checkpoint)
        if (not s.name.startswith("device_map") or _with_device_map(args, config_path))
        and (not wanted or s.name in wanted)
    ]
    decoder_params = _decoder_parameters(checkpoint)
    bound = decoder_params * 2 / bandwidth * 1e3  # ms per token, TP 1: the decoder's bf16 weights read once
    results: dict[str, Any] = {}
    for setup in chosen:
        results[setup.name] = run_setup(setup, model_py, cases, args)
        save(
            {
                "model_config": config_path.name,
                "layers": args.layers or model_config.get("num_layers"),
                "decoder_parameters": decoder_params,
                "bound_ms_per_token_tp1": round(bound, 3),
                "decode_all_reduces_per_token": args.allreduces,
                "setups": results,
                "comparison": compare(results, args.tp),
                "new_tokens": args.new_tokens,
                "input_tokens": args.input_tokens,
                "hidden": args.hidden,
            }
        )


def _decoder_parameters(checkpoint: Path) -> int:
    """The decoder's weights in the checkpoint (its embedding aside), from the shards' headers."""
    from safetensors import safe_open

    total = 0
    for shard in checkpoint.glob("*.safetensors"):
        with safe_open(shard, framework="pt") as handle:
            names = [key for key in handle.keys() if key.startswith("decoder.") and "embed_tokens" not in key]  # noqa: SIM118
            total += sum(_numel(handle.get_slice(key).get_shape()) for key in names)
    return total


def _wanted_setups(args: argparse.Namespace) -> list[str]:
    """--setups as names (none: every setup)."""
    return [name for name in args.setups.split(",") if name]


def _model_config(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "lmi_deploy" / "model_configs" / name).read_text()))


def _with_device_map(args: argparse.Namespace, config_path: Path) -> bool:
    wanted = [name for name in args.device_map_for.split(",") if name]
    return not wanted or config_path.stem.replace("google--", "") in wanted


def _numel(shape: list[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def projection(arch: dict[str, Any]) -> dict[str, Any]:
    """Batch 4 on the seed's ml.g5.12xlarge (4 x A10G, PCIe, no NVLink), TP 4, from what was measured.

    Method. A decode step is (p50 - p50 of the same request with one new token) / (new tokens - 1), for TP 1 (s1) and
    TP N (sN). It splits into the weight reads W (1/N of them per rank under TP N), a fixed part F that tensor
    parallelism does not shrink (norms, attention, the many small kernels of a step: their count is the same on every
    rank) and, under TP N, the all-reduces A measured in the CUDA graph: s1 = W + F, sN = W/N + F + A, so
    W = (s1 - sN + A) N/(N-1) and F = s1 - W. On 4 A10Gs: W/4 scaled by the datasheet bandwidths (H200 4.8 TB/s,
    A10G 600 GB/s), F scaled by the FP32 peaks (the small kernels are elementwise and reductions: 67 vs 31.2
    TFLOPS), plus each all-reduce at the catalog's PCIe latency and ring traffic (lmi_deploy.performance,
    lmi_deploy.instances). The prompt pass (the one-token request, TP N) is compute-bound: scaled by the 16-bit
    peaks of N H200s and 4 A10Gs. Where the TP run summed row-wise products inside their kernel (gemv_all_reduce),
    A is what the sums added there, per matrix as timed at load: the kernel's time less the product's alone (the
    product then the one-shot sum, less that sum), times the matrices of that shape per token. Where the LM head is
    split by vocabulary (a vocabulary divisible by 4: the handler's VocabParallelHead, tied or not), each A10G
    token also sums the [4, vocabulary] bf16 logits once, priced the same way; on the H200s that sum sits in F.
    """
    from lmi_deploy import instances
    from lmi_deploy.performance import ALLREDUCE_LATENCY_US

    tp = int(next(name for name in arch["setups"] if name.startswith("tp") and name != "tp1")[2:])
    steps = arch["new_tokens"]

    def step(setup: str) -> float:
        row = arch["setups"][setup]["batches"]["4"]
        return float(row["p50_ms"] - row["one_token_p50_ms"]) / float(steps - 1)

    measured = arch["setups"][f"tp{tp}"]["batches"]["4"]
    reduce_ms = measured["all_reduce"]["graph_ms_per_token"]  # the model's own sum (one-shot or NCCL), in a graph
    fused = measured["all_reduce"].get("gemv_all_reduce") or {}
    if any(row.get("chosen") == "kernel" for rows in fused.values() for row in rows.values()):
        summed_inside = sums_in_products_ms(arch, tp, measured["all_reduce"])
        if summed_inside is None:
            return {"skipped": "the TP run summed its row-wise products inside their kernel, and how many matrices "
                    "of each shape a token multiplies is known here for T5 only: project from a run whose sums "
                    "are apart (--all-reduce nccl)"}  # fmt: skip
        reduce_ms = summed_inside
    s1, sn = step("tp1"), step(f"tp{tp}")
    weights = (s1 - sn + reduce_ms) * tp / (tp - 1)
    fixed = s1 - weights
    h200, a10g = instances.ACCELERATOR_SPEED["H200"], instances.ACCELERATOR_SPEED["A10G"]
    g5 = instances.get("ml.g5.12xlarge")
    assert g5 is not None
    config = _model_config(arch["model_config"])
    hidden = arch.get("hidden") or config["d_model"]
    message = 4 * hidden * 4  # [batch 4, d_model] fp32 partial sums

    def pcie_us(size: int) -> float:  # one ring all-reduce of ``size`` bytes over 4 GPUs
        return ALLREDUCE_LATENCY_US["PCIe"] + 2 * 3 / 4 * size / (g5.interconnect.gb_s * 1e9) * 1e6

    each_us = pcie_us(message)
    vocab = int(config.get("vocab_size", 0))
    split_head = vocab > 0 and vocab % 4 == 0  # tp_shards.VocabParallelHead at TP 4, a tied head as well
    logits_us = pcie_us(4 * vocab * 2) if split_head else 0.0  # [batch 4, vocabulary] bf16 logits, once a token
    a10g_weights = weights * h200.memory_bandwidth_gb_s / a10g.memory_bandwidth_gb_s / 4
    a10g_fixed = fixed * h200.tflops_fp32 / a10g.tflops_fp32
    a10g_reduce = (arch["decode_all_reduces_per_token"] * each_us + logits_us) / 1e3
    prompt = measured["one_token_p50_ms"] * (h200.tflops_16bit * tp) / (a10g.tflops_16bit * 4)
    a10g_step = a10g_weights + a10g_fixed + a10g_reduce
    return {
        "h200": {
            "tp1_step_ms": round(s1, 3),
            f"tp{tp}_step_ms": round(sn, 3),
            "all_reduce_ms_per_token": round(reduce_ms, 3),
            "weights_ms": round(weights, 3),
            "fixed_ms": round(fixed, 3),
            "weights_vs_copy_bound": round(arch["bound_ms_per_token_tp1"] / weights, 3),
        },
        "a10g_tp4": {
            "weights_ms": round(a10g_weights, 2),
            "fixed_ms": round(a10g_fixed, 2),
            "all_reduce_ms": round(a10g_reduce, 2),
            "all_reduce_us_each": round(each_us, 1),
            "logits_all_reduce_us": round(logits_us, 1),
            "step_ms": round(a10g_step, 2),
            "prompt_pass_ms": round(prompt, 1),
            "p50_ms": round(prompt + (steps - 1) * a10g_step),
            **({"seed_p99_ms": 612} if arch["model_config"] == "google--flan-t5-xxl.json" else {}),  # its TP 4 figure
        },
        "method": " ".join((projection.__doc__ or "").split()),
    }


def row_wise_shapes(arch: dict[str, Any], tp: int) -> Counter[str] | None:
    """How many row-wise matrices of each shape (outputs x inputs, one rank's) a decode step multiplies, for T5 (per
    decoder layer: the self- and cross-attention outputs, the FFN output); else None. The decoder layers are the
    report's own (its three sums per layer, as ``--layers`` cut them), the widths the model config's."""
    config = _model_config(arch["model_config"])
    layers, rest = divmod(int(arch["decode_all_reduces_per_token"]), 3)
    if config.get("model_type") != "t5" or rest:
        return None
    shapes = Counter({f"{config['d_model']}x{config['num_heads'] * config['d_kv'] // tp}": 2 * layers})
    shapes[f"{config['d_model']}x{config['d_ff'] // tp}"] += layers
    return shapes


def sums_in_products_ms(arch: dict[str, Any], tp: int, all_reduce: dict[str, Any]) -> float | None:
    """What a batch-4 decode step spent on its sums where gemv_all_reduce ran some inside the row-wise products
    (ms): per matrix, the kernel's time less the product's alone (``apart_ms`` less one one-shot sum) where the
    kernel was kept, one one-shot sum where it was not; None where the shapes' counts are unknown."""
    shapes = row_wise_shapes(arch, tp)
    if shapes is None:
        return None
    each_ms = float(all_reduce["graph_us_each"]) / 1e3
    total = 0.0
    for shape, count in shapes.items():
        row = all_reduce["gemv_all_reduce"].get(shape, {}).get("4")
        if row is not None and row["chosen"] == "kernel":
            total += count * (float(row["kernel_ms"]) - float(row["apart_ms"]) + each_ms)
        else:
            total += count * each_ms
    return total


def agreement(answer: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """How far a setup's greedy answer follows TP 1's, row by row: identical rows, and where each row first differs
    (characters of TP 1's text; None where it does not). Summation order differs between setups (a rank sums half of
    each product), so a near tie between two logits may break the other way, and a random model's text then goes its
    own way from there: this says where, rather than only whether."""
    rows = list(zip(answer.get("outputs", []), reference.get("outputs", []), strict=False))
    first = []
    for mine, theirs in rows:
        same = next(
            (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs))
        )
        first.append(None if mine == theirs else same)
    return {
        "rows_identical": f"{sum(place is None for place in first)}/{len(rows)}",
        "first_difference_at_char": first,
        "reference_chars": [len(theirs) for _, theirs in rows],
    }


def print_table(report: dict[str, Any], tp: int, path: Path) -> None:
    for name, arch in report["architectures"].items():
        print(f"{name} ({arch['layers']} layers), {report['gpu']} x {tp}:")
        header = ("batch", "TP1 p50", f"TP{tp} p50", f"dmap{tp} p50", "TP/TP1", "TP/dmap", "AR ms/tok", "same")
        print(" ".join(f"{h:>11}" for h in header))
        for batch, row in arch["comparison"].items():
            cells = [batch, row["tp1"], row[f"tp{tp}"], row.get(f"device_map{tp}", "-"), row["tp_vs_tp1"]]
            cells += [row.get("tp_vs_device_map", "-")]
            same = row.get("agreement", {}).get(f"tp{tp}", {}).get("rows_identical", row["answers_identical"])
            cells += [row["all_reduce_graph_ms_per_token"], same]
            print(" ".join(f"{c!s:>11}" for c in cells))
            others = {key: value for key, value in row.items() if key.startswith(f"tp{tp}-")}
            if others:
                print(f"{'':>11} {others}")
            if row.get("prompt_sums"):
                print(f"{'':>11} prompt pass sums: {row['prompt_sums']}")
            for name, agreed in row.get("agreement", {}).items():
                print(
                    f"{'':>11} {name} vs tp1: {agreed['rows_identical']} rows identical, first difference at "
                    f"{agreed['first_difference_at_char']} of {agreed['reference_chars']} characters"
                )
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
