"""Tensor parallelism of the Accelerate handler, on the CPU with gloo: rendered as the container's MPI mode and run by
the local runtime as N rank processes (as mpirun starts them), token for token against one process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.commands.local_aws import free_port
from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime.server import ModelServer, serve
from tests.test_local_endpoint import get, post

REQUESTS = [
    {"inputs": ["summarize: the quick brown fox jumps", "x"], "parameters": {"max_new_tokens": 12}},
    {"inputs": ["question: what is it?"], "parameters": {"max_new_tokens": 10, "do_sample": True, "seed": 3}},
    {"inputs": ["translate English to German: the house"], "parameters": {"max_new_tokens": 6, "num_beams": 2}},
]


@pytest.fixture(scope="module")
def gated_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny flan-style T5 (gated GELU FFN) whose greedy output is not one repeated token."""
    from lmi_deploy import tiny_models

    return tiny_models.make(tmp_path_factory.mktemp("flan-t5"), "flan-t5", seed=1)


def rendered(model: Path, tp: int, out: Path) -> Path:
    context = {
        "engine": "accelerate",
        "handler": "custom",
        "model_id": str(model),
        "instance_type": "ml.g5.12xlarge",
        "tensor_parallel_degree": str(tp),
        "dtype": "fp32",
        "deployment": f"tp{tp}",
    }
    return render(load_config(context), out).directory


def answers(model_code: Path, model_dir: Path) -> list[tuple[int, Any]]:
    server = ModelServer(model_code, model_dir)
    port = free_port()
    http = serve(server, "127.0.0.1", port)  # bound before the ranks pick their MASTER_PORT
    server.start()
    try:
        assert server.wait_ready(120), server.failure
        assert get(f"http://127.0.0.1:{port}/ping")[0] == 200
        replies = [post(f"http://127.0.0.1:{port}", json.dumps(r).encode()) for r in REQUESTS]
        return [(status, json.loads(body)) for status, body, _ in replies]
    finally:
        http.shutdown()
        if server.group is not None:
            server.group.stop()


@pytest.mark.parametrize("kind", ["t5", "llama", "tied-t5"])
def test_tp2_on_gloo_answers_token_for_token_as_tp1(
    kind: str, gated_t5: Path, tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = {"t5": gated_t5, "llama": tiny_models["llama"], "tied-t5": tiny_models["t5"]}[kind]
    one = rendered(model, 1, tmp_path / "one")
    two = rendered(model, 2, tmp_path / "two")
    properties = (two / "serving.properties").read_text().splitlines()
    assert "engine=MPI" in properties and "use_passive_workers=false" in properties
    assert "engine=Python" in (one / "serving.properties").read_text().splitlines()

    single = answers(one, model)
    with caplog.at_level("WARNING", logger="lmi_deploy.serve"):
        split = answers(two, model)
    assert [status for status, _ in split] == [200, 200, 200]
    assert split == single  # greedy, sampled (the ranks share the seed) and beam search through generate()
    assert len({tuple(answer["outputs"]) for _, answer in split}) == 3
    assert "answered differently" not in caplog.text  # every rank computed the answer the server returns


CRASHING_HANDLER = textwrap.dedent(
    """
    import os

    from djl_python import Output


    def handle(inputs):
        if inputs.is_empty():
            return None
        text = inputs.get_as_string()
        if text == "die" and os.environ["RANK"] == "1":
            os._exit(3)
        rank = f"{os.environ['RANK']}/{os.environ['WORLD_SIZE']} {os.environ['OMPI_COMM_WORLD_RANK']}"
        return Output().add(rank)
    """
)


HEAD_HANDLER = textwrap.dedent(
    """
    import json

    import torch
    from djl_python import Output
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from lmi_deploy.handlers.tensor_parallel import init_ranks
    from lmi_deploy.handlers.tp_shards import load_shard


    def handle(inputs):
        if inputs.is_empty():
            return None
        ranks, found = init_ranks(2, {}), {}
        for folder in json.loads(inputs.get_as_string()):
            config = AutoConfig.from_pretrained(folder)
            kind = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            model = load_shard(folder, kind, config, torch.float32, ranks)
            head = model.get_output_embeddings()
            whole = kind.from_pretrained(folder, dtype=torch.float32).get_output_embeddings()
            hidden = torch.randn(3, 2, head.in_features, generator=torch.Generator().manual_seed(0))
            embeddings = model.get_input_embeddings().weight
            view = head.weight.data_ptr() == embeddings[ranks.rank * head.weight.shape[0]].data_ptr()
            found[folder] = [type(head).__name__, head.weight.shape[0], torch.equal(head(hidden), whole(hidden)), view]
        return Output().add(json.dumps(found))
    """
)


def test_an_untied_lm_head_splits_by_vocabulary_and_returns_the_whole_logits(
    gated_t5: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Each rank reads half the LM head (its vocabulary rows) where the head is its own weights; the logits every rank
    gets are exactly the unsplit head's. A head tied to the input embeddings is split as a view of them: the
    embeddings stay whole for the input, and the head's rows are theirs, not a copy."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text(HEAD_HANDLER)
    (code / "serving.properties").write_text("engine=MPI\noption.tensor_parallel_degree=2\nuse_passive_workers=false\n")
    server = ModelServer(code, tmp_path).start()
    folders = [str(gated_t5), str(tiny_models["llama"]), str(tiny_models["t5"])]
    try:
        assert server.wait_ready(60), server.failure
        reply = server.invoke(json.dumps(folders).encode(), {})
    finally:
        if server.group is not None:
            server.group.stop()
    assert reply.status == 200, reply.body
    found = json.loads(reply.body)
    vocab = {folder: json.loads((Path(folder) / "config.json").read_text())["vocab_size"] for folder in folders}
    flan, llama, tied = folders
    assert found[flan] == ["VocabParallelHead", vocab[flan] // 2, True, False]
    assert found[llama] == ["VocabParallelHead", vocab[llama] // 2, True, False]
    assert found[tied] == ["VocabParallelHead", vocab[tied] // 2, True, True]  # rank 1's rows of the embeddings


def test_a_rank_that_dies_is_reported_as_the_container_does_and_the_ranks_restart(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text(CRASHING_HANDLER)
    (code / "serving.properties").write_text("engine=MPI\noption.tensor_parallel_degree=2\nuse_passive_workers=false\n")
    server = ModelServer(code, tmp_path).start()
    try:
        assert server.wait_ready(60), server.failure
        first = server.invoke(b"hello", {})
        assert (first.status, first.body) == (200, b"1/2 1")  # the last rank's answer, as PyProcess.predict returns
        died = server.invoke(b"die", {})
        assert died.status == 400
        assert json.loads(died.body)["message"] == "Python worker disconnected."
        assert server.wait_ready(60), server.failure  # every rank stopped and started again
        again = server.invoke(b"hello", {})
        assert (again.status, again.body) == (200, b"1/2 1")
    finally:
        if server.group is not None:
            server.group.stop()


@pytest.mark.parametrize(
    ("settings", "engine", "warning"),
    [
        ({"model_id": "google/flan-t5-xxl", "dtype": "bf16"}, "MPI", "LMI306"),  # TP over PCIe: its all-reduce cost
        ({"model_id": "google/flan-t5-xxl", "dtype": "bf16", "instance_type": "ml.p4d.24xlarge"}, "MPI", None),
        ({"model_id": "EleutherAI/gpt-j-6b", "dtype": "fp16"}, "Python", "LMI305"),  # no plan for gptj
        ({"model_id": "google/flan-t5-xxl", "dtype": "fp32", "lmi_version": "0.22.1"}, "Python", "LMI305"),  # no MPI
    ],
)
def test_tensor_parallel_or_a_stated_device_map_fallback(
    settings: dict[str, str], engine: str, warning: str | None, tmp_path: Path
) -> None:
    config = load_config(
        {"engine": "accelerate", "instance_type": "ml.g5.12xlarge", "tensor_parallel_degree": "4", **settings}
    )
    properties = (render(config, tmp_path).directory / "serving.properties").read_text().splitlines()
    assert f"engine={engine}" in properties
    warnings = [w.rule for w in config.resolved.warnings if w.rule.startswith("LMI30")]
    assert warnings == ([warning] if warning else [])
    estimate = next(note for note in config.resolved.notes if note.startswith("latency estimate at TP4"))
    if engine == "MPI" and warning:  # flan-t5-xxl: 24 decoder layers x 3 all-reduces, each ~30 us over PCIe
        assert "(tensor parallel)" in estimate and "all-reduce over PCIe" in estimate
        assert "72 all-reduces per token and one of the logits (~" in next(
            str(w) for w in config.resolved.warnings if w.rule == warning
        )
    if engine == "Python":
        assert "all-reduce" not in estimate and "device_map" in estimate


def test_shards_follow_from_shapes_and_refuse_what_does_not_split() -> None:
    from transformers import T5Config

    from lmi_deploy.handlers.tensor_parallel import Ranks
    from lmi_deploy.handlers.tp_plans import plan_problem, shard_config
    from lmi_deploy.handlers.tp_shards import _shard_slice

    ranks = Ranks(rank=1, world=2, device="cpu", backend="gloo", control=None)
    assert _shard_slice("q.weight", [64, 32], (32, 32), ranks) == (slice(32, 64), slice(None))  # column-wise
    assert _shard_slice("o.weight", [32, 64], (32, 32), ranks) == (slice(None), slice(32, 64))  # row-wise
    assert _shard_slice("norm.weight", [32], (32,), ranks) == (slice(None),)  # replicated
    with pytest.raises(ValueError, match="does not split into 2 parts"):
        _shard_slice("wi.weight", [65, 32], (32, 32), ranks)
    config = T5Config(d_model=32, d_ff=64, d_kv=8, num_heads=4)
    assert (shard_config(config, 2).num_heads, shard_config(config, 2).d_ff, config.num_heads) == (2, 32, 4)
    assert plan_problem(config, 3) == "num_heads=4 is not divisible by tensor_parallel_degree=3"
    config.model_type = "gpt2"
    assert "not among the tensor-parallel plans" in str(plan_problem(config, 2))


def test_each_sum_takes_the_path_its_size_was_chosen_for() -> None:
    """Decode-step sums through the one-shot buffers, a prompt pass's up to the size timed at load through the
    two-shot ones (never inside a compiled step), anything larger through NCCL; the two-shot sum is tried only beside
    a working one-shot sum on NCCL, and sized by the largest prompt pass of the warm shapes as the decoder pads it."""
    from lmi_deploy.handlers import prompt_sums
    from lmi_deploy.handlers.tensor_parallel import Ranks

    class Buffers:
        def __init__(self, name: str, capacity: int) -> None:
            self.name, self.capacity = name, capacity

        def __call__(self, tensor: Any) -> str:
            return self.name

    class Recorded(Ranks):
        def all_reduce(self, tensor: Any) -> None:
            tensor.fill_(-1)

    import torch

    ranks = Recorded(0, 2, "cpu", "gloo", None, one_shot=Buffers("one-shot", 8), two_shot=Buffers("two-shot", 64))
    taken = [ranks.summed(torch.zeros(n)) for n in (1, 8, 9, 64)]
    assert taken == ["one-shot", "one-shot", "two-shot", "two-shot"]
    assert torch.equal(ranks.summed(torch.zeros(65)), torch.full((65,), -1.0))  # NCCL, in place

    class Sevens(Buffers):
        def __call__(self, tensor: Any) -> Any:
            return tensor * 0 + 7

    ranks.two_shot = Sevens("two-shot", 64)
    assert torch.equal(ranks.summed(torch.zeros(9)), torch.full((9,), 7.0))
    compiled = torch.compile(ranks.summed, backend="eager")  # a compiled decode step: never the in-place two-shot
    assert torch.equal(compiled(torch.zeros(9)), torch.full((9,), -1.0))
    torch._dynamo.reset()
    assert prompt_sums.largest_values([(4, 128, 64), (1, 100, 8)], 4096) == 4 * 128 * 4096
    assert prompt_sums.largest_values([(3, 100, 8)], 10) == 4 * 128 * 10 and prompt_sums.largest_values([], 10) == 0
    assert prompt_sums.choose(ranks, 1 << 20) is None  # gloo: NCCL's (gloo's) sums
    nccl = Recorded(0, 2, "cpu", "nccl", None)
    assert prompt_sums.choose(nccl, 1 << 20) is None  # no one-shot sum: no peer access was proven
    nccl.one_shot = Buffers("one-shot", 1 << 20)
    assert prompt_sums.choose(nccl, 1 << 20) is None  # nothing above the one-shot's size to sum


def test_the_two_shot_sum_serves_a_prompt_pass_only_where_it_checked_out_and_was_faster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prompt_sums.choose's decision on every rank (the check, then rank 0's timing), with the GPU parts stood in:
    the two-shot kernel, its check against NCCL and the CUDA-graph timings."""
    from lmi_deploy.handlers import prompt_sums
    from lmi_deploy.handlers.tensor_parallel import Ranks

    class Agreeing(Ranks):  # one rank of two whose peer says the same
        def agree(self, ok: bool) -> bool:
            return ok

        def rank_zero_value(self, value: int) -> int:
            return value

    class TwoShot:
        def __init__(self, ranks: Ranks, capacity: int) -> None:
            self.capacity = capacity

        def __call__(self, tensor: Any) -> Any:
            return tensor

    timings: dict[str, float] = {}
    checks: list[bool] = []
    monkeypatch.setattr(prompt_sums, "TwoShotAllReduce", TwoShot)
    monkeypatch.setattr(prompt_sums, "_sums_as_nccl", lambda reducer, ranks, values: checks.pop(0))
    monkeypatch.setattr(
        prompt_sums,
        "graph_us",
        lambda function, calls: timings["two_shot" if "two_shot" in function.__code__.co_freevars else "nccl"],
    )

    def run(check: bool, nccl_us: float, two_shot_us: float, values: int = 1 << 12) -> tuple[Any, Any]:
        ranks = Agreeing(0, 2, "cpu", "nccl", None, one_shot=type("OneShot", (), {"capacity": 64})())
        checks.append(check)
        timings.update(nccl=nccl_us, two_shot=two_shot_us)
        return prompt_sums.choose(ranks, values), ranks.two_shot

    report, kept = run(True, 49.0, 21.0)
    assert report == {"values": 1 << 12, "nccl_us": 49.0, "two_shot_us": 21.0, "chosen": "two_shot"}
    assert isinstance(kept, TwoShot) and kept.capacity == 1 << 12
    report, kept = run(True, 20.0, 21.0)  # slower here: NCCL stays
    assert report["chosen"] == "nccl" and kept is None
    report, kept = run(False, 49.0, 21.0)  # not NCCL's sum: never timed, never used
    assert report == {"values": 1 << 12, "chosen": "nccl", "why": "the two-shot sum failed its check on a rank"}
    assert kept is None
    report, kept = run(True, 49.0, 21.0, values=prompt_sums.MAX_VALUES * 4)  # a bounded buffer; larger ones NCCL
    assert report["values"] == prompt_sums.MAX_VALUES and kept.capacity == prompt_sums.MAX_VALUES


def test_bench_handler_tp_projects_the_two_gpu_run_to_four_a10gs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import bench_handler

    report = tmp_path / "tp2.json"
    report.write_text((Path(__file__).parent.parent / "docs" / "benchmarks" / "tp2-h200.json").read_text())
    assert bench_handler.main(["--tp", "2", "--project", str(report)]) == 0  # dispatched to bench_tensor_parallel
    projected = json.loads(report.read_text())["projection"]["flan-t5-xxl"]
    h200, a10g = projected["h200"], projected["a10g_tp4"]
    assert a10g["seed_p99_ms"] == 612  # the seed's TP 4 figure is flan-t5-xxl's: no other architecture is set beside it
    assert "seed_p99_ms" not in json.loads(report.read_text())["projection"]["flan-ul2"]["a10g_tp4"]
    # the measured steps split into weight reads (halved by TP 2) and a fixed part: s1 = W + F, s2 = W/2 + F + A
    assert h200["tp1_step_ms"] == pytest.approx(h200["weights_ms"] + h200["fixed_ms"], abs=2e-3)
    assert h200["tp2_step_ms"] == pytest.approx(
        h200["weights_ms"] / 2 + h200["fixed_ms"] + h200["all_reduce_ms_per_token"], abs=2e-3
    )
    assert a10g["weights_ms"] == pytest.approx(h200["weights_ms"] * 4800 / 600 / 4, rel=1e-3)
    assert a10g["p50_ms"] == pytest.approx(a10g["prompt_pass_ms"] + 63 * a10g["step_ms"], abs=1)
    # flan-t5-xxl's own head, split by vocabulary: 72 sums of [4, 4096] fp32 and one of [4, 32128] bf16 logits
    assert a10g["logits_all_reduce_us"] > a10g["all_reduce_us_each"]
    assert a10g["all_reduce_ms"] == pytest.approx(
        (72 * a10g["all_reduce_us_each"] + a10g["logits_all_reduce_us"]) / 1e3, abs=0.01
    )
    assert "Method." in projected["method"]
    # a run too long for one device call, taken in two (--setups tp1, then --setups tp2) and joined (--merge)
    whole = json.loads((Path(__file__).parent.parent / "docs" / "benchmarks" / "tp2-h200-compile.json").read_text())
    parts = []
    for setup in ("tp1", "tp2"):
        part = json.loads(json.dumps(whole))
        for arch in part["architectures"].values():
            arch["setups"] = {setup: arch["setups"][setup]}
            arch["comparison"] = {}
        parts.append(tmp_path / f"{setup}.json")
        parts[-1].write_text(json.dumps(part))
    fused = json.loads((Path(__file__).parent.parent / "docs" / "benchmarks" / "tp2-h200-fused.json").read_text())
    (tmp_path / "fused.json").write_text(json.dumps(fused))
    # a run that summed inside the row-wise products: A is what the kernel added to each product, per matrix
    assert bench_handler.main(["--tp", "2", "--project", str(tmp_path / "fused.json")]) == 0
    inside = json.loads((tmp_path / "fused.json").read_text())["projection"]["flan-t5-xxl"]["h200"]
    sums = fused["architectures"]["flan-t5-xxl"]["setups"]["tp2"]["batches"]["4"]["all_reduce"]
    added = {shape: rows["4"]["kernel_ms"] - rows["4"]["apart_ms"] + sums["graph_us_each"] / 1e3
             for shape, rows in sums["gemv_all_reduce"].items()}  # fmt: skip
    # flan-t5-xxl at TP 2, 24 decoder layers: self- and cross-attention outputs 4096x2048, the FFN output 4096x5120
    assert inside["all_reduce_ms_per_token"] == pytest.approx(
        48 * added["4096x2048"] + 24 * added["4096x5120"], abs=1e-3
    )
    assert 0 < added["4096x2048"] < sums["graph_us_each"] / 1e3  # cheaper than the sum apart, as chosen
    cut = json.loads(json.dumps(fused))  # a run of the first 8 layers (--layers 8): the report's own layer count
    cut["architectures"]["flan-t5-xxl"].update(layers=8, decode_all_reduces_per_token=24)
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    assert bench_handler.main(["--tp", "2", "--project", str(tmp_path / "cut.json")]) == 0
    eight = json.loads((tmp_path / "cut.json").read_text())["projection"]["flan-t5-xxl"]["h200"]
    assert eight["all_reduce_ms_per_token"] == pytest.approx(16 * added["4096x2048"] + 8 * added["4096x5120"], abs=1e-3)
    llama = json.loads(json.dumps(fused))
    llama["architectures"]["flan-t5-xxl"]["model_config"] = "TheBloke--Llama-2-7B-Chat-fp16.json"
    (tmp_path / "llama.json").write_text(json.dumps(llama))
    assert bench_handler.main(["--tp", "2", "--project", str(tmp_path / "llama.json")]) == 0
    assert "for T5 only" in json.loads((tmp_path / "llama.json").read_text())["projection"]["flan-t5-xxl"]["skipped"]
    assert bench_handler.main(["--tp", "2", "--out", str(tmp_path), "--merge", *map(str, parts)]) == 0
    assert bench_handler.main(["--tp", "2", "--out", str(tmp_path), "--merge", str(tmp_path / "nothing.json")]) == 2
    capsys.readouterr()
    assert bench_handler.main(["--tp", "2", "--setups", "tp1,tp3"]) == 2  # refused before any GPU work
    assert "--setups tp3 is not among tp1, tp2, device_map2" in capsys.readouterr().err
    merged = json.loads((tmp_path / "tp2-merged.json").read_text())["architectures"]["flan-t5-xxl"]
    agreement = {batch: row.pop("agreement") for batch, row in merged["comparison"].items()}
    assert merged["comparison"] == whole["architectures"]["flan-t5-xxl"]["comparison"]
    assert agreement["4"]["tp2"] == {  # that run's answers were empty texts (see build_checkpoint): all "identical"
        "rows_identical": "4/4",
        "first_difference_at_char": [None] * 4,
        "reference_chars": [0] * 4,
    }
    from scripts.bench_tensor_parallel import agreement as agree

    tp1 = {"outputs": ["the cat sat", "a dog", "same"], "generated_tokens": [8, 8, 8]}
    tp2 = {"outputs": ["the cat ran", "a dog barked", "same"], "generated_tokens": [8, 8, 8]}
    assert agree(tp2, tp1) == {
        "rows_identical": "1/3",
        "first_difference_at_char": [8, 5, None],  # a longer text that starts with TP 1's differs at TP 1's end
        "reference_chars": [11, 5, 4],
    }


def test_the_all_reduce_mode_is_rendered_and_read_back(gated_t5: Path, tmp_path: Path) -> None:
    """option.tp_all_reduce: one_shot by default on NVLink instances (NCCL where its load-time check fails), nccl on
    PCIe-only ones (g5: one-shot was measured over NVLink only) and when set; the handler refuses anything else."""
    from lmi_deploy.config import ConfigError
    from lmi_deploy.handlers.tensor_parallel import all_reduce_mode

    properties = (rendered(gated_t5, 2, tmp_path / "g5") / "serving.properties").read_text().splitlines()
    assert "option.tp_all_reduce=nccl" in properties and "engine=MPI" in properties
    context = {"engine": "accelerate", "handler": "custom", "model_id": str(gated_t5), "deployment": "tp"}
    nvlink = render(load_config(dict(context, instance_type="ml.p4d.24xlarge", tensor_parallel_degree="2")), tmp_path)
    assert "option.tp_all_reduce=one_shot" in (nvlink.directory / "serving.properties").read_text().splitlines()
    assert all_reduce_mode({}) == "one_shot" and all_reduce_mode({"tp_all_reduce": " NCCL "}) == "nccl"
    with pytest.raises(ValueError, match="'ring' is not one of one_shot, nccl"):
        all_reduce_mode({"tp_all_reduce": "ring"})
    with pytest.raises(ConfigError, match="tp_all_reduce"):
        load_config(dict(context, tp_all_reduce="ring"))


@pytest.mark.parametrize("rank_zero", [0, -1], ids=["rank-0-kept-its-tiling", "rank-0-found-it-slower"])
def test_the_fused_row_wise_kernel_serves_with_rank_zeros_tiling_on_every_rank(
    rank_zero: int, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """gemv_all_reduce.choose on rank 1 of 2, whose own timing prefers another tiling than rank 0's: every rank must
    launch the same blocks (they pair up across ranks by index), so rank 0's decision and tiling are what serve.
    The modules as a rendered model.py ships them (choose registers the operator, which calls its module)."""
    import torch

    from tests.test_handler_speedups import shipped, t5_handler

    t5_handler(tiny_models, tmp_path)
    gemv, gemv_all_reduce = shipped("gemv"), shipped("gemv_all_reduce")

    class Ranks:
        rank, world, backend, one_shot = 1, 2, "nccl", object()

        def agree(self, ok: bool) -> bool:
            return ok

        def rank_zero_value(self, value: int) -> int:
            return rank_zero  # rank 0 kept TILINGS[0], or found the kernel slower than apart

        def summed(self, tensor: Any) -> Any:
            return tensor

    class Fused:
        def __init__(self, ranks: Any, capacity: int) -> None:
            self.capacity = capacity

        def launch(self, x: Any, weight: Any, tiling: Any, compile_only: bool = False) -> Any:
            return torch.mm(x.float(), weight.float().t())

    def timing(function: Any, weights: list[Any], repeats: int = 5) -> float:
        if function.func is gemv_all_reduce._fused_product:  # this rank: TILINGS[1] fastest, all beat apart
            return 1.0 if function.args[2] == gemv.TILINGS[1] else 2.0
        return 3.0

    monkeypatch.setattr(gemv_all_reduce, "GemvAllReduce", Fused)
    monkeypatch.setattr(gemv_all_reduce, "_right", lambda *args: True)
    monkeypatch.setattr(gemv, "_time_ms", timing)
    monkeypatch.setattr(gemv_all_reduce, "ACTIVE", None)
    monkeypatch.setattr(gemv_all_reduce, "CHOICES", {})
    weight = torch.randn(8, 16)
    # two layers: two matrices of one shape, one of another (a decode step calls each once)
    matrices = {(8, 16): [weight, weight], (8, 24): [torch.randn(8, 24)]}
    report = gemv_all_reduce.choose(Ranks(), matrices, [1, 4, 32])
    assert gemv_all_reduce.unavailable(None) == "not tensor-parallel on GPUs"
    if rank_zero == 0:
        kept = gemv_all_reduce.CHOICES
        # rank 0's tiling, never 32 rows; 8x24 left apart: three fused calls a step would put the last of one step's
        # CUDA graph and the first of the next replay on the same buffer
        assert kept == {(8, 16): {1: gemv.TILINGS[0], 4: gemv.TILINGS[0]}}
        measured = {"apart_ms": 3.0, "kernel_ms": 1.0, "tiling": list(gemv.TILINGS[0]), "chosen": "kernel"}
        assert report["8x16"][4] == measured
        odd = {"apart_ms": 3.0, "kernel_ms": 1.0, "tiling": None, "chosen": "apart"}
        assert report["8x24"][4] == {**odd, "why": "an odd number of fused calls a step"}
        assert gemv_all_reduce.serves(weight) and not gemv_all_reduce.serves(matrices[(8, 24)][0])
    else:
        assert gemv_all_reduce.CHOICES == {} and report["8x16"][1]["chosen"] == "apart"
        assert not gemv_all_reduce.serves(weight)


def test_a_row_wise_layer_sums_through_the_fused_kernel_for_the_rows_chosen(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """RowParallelLinear (16-bit weights on a GPU: partial sums in float32) routes a decode step's rows through
    lmi_handlers::gemv_all_reduce where choose() kept them, and the other row counts through the product then the
    ranks' sum: here a fake of two ranks holding the same partial, so the sum is twice the product. The modules as
    a rendered model.py ships them: the operators call those."""
    import torch

    from tests.test_handler_speedups import shipped, t5_handler

    t5_handler(tiny_models, tmp_path)
    gemv, gemv_all_reduce = shipped("gemv"), shipped("gemv_all_reduce")
    RowParallelLinear = shipped("tp_shards").RowParallelLinear

    class Ranks:
        def summed(self, tensor: Any) -> Any:
            return tensor * 2

    class Fused:
        ranks, calls = Ranks(), 0

        def launch(self, x: Any, weight: Any, tiling: Any) -> Any:
            Fused.calls += 1
            return (x @ weight.t()).float() * 2

    layer = torch.nn.Linear(16, 8, bias=False)
    layer.__class__, layer.ranks, layer.wide = RowParallelLinear, Ranks(), True
    monkeypatch.setattr(gemv_all_reduce, "ACTIVE", Fused())
    monkeypatch.setattr(gemv_all_reduce, "CHOICES", {(8, 16): {4: gemv.TILINGS[0]}})
    monkeypatch.setattr(gemv, "CHOICES", {(8, 16): {3: gemv.TILINGS[0]}})  # 3 rows: the streaming kernel, apart
    monkeypatch.setattr(gemv, "launch", lambda x, weight, tiling, out_dtype=None: (x @ weight.t()).to(out_dtype))
    for rows, fused_calls in ((4, 1), (3, 1)):
        x = torch.randn(rows, 1, 16)
        with torch.no_grad():
            assert torch.allclose(layer(x), 2 * (x @ layer.weight.t()), atol=1e-5)
        assert Fused.calls == fused_calls  # 4 rows in the fused kernel; 3 rows apart (the kernel, then the sum)


def test_bench_profile_traces_a_request_on_each_rank_and_says_where_the_time_went(
    gated_t5: Path, tmp_path: Path
) -> None:
    """``bench_handler --tp N --profile DIR``: the benchmark's copy of the rendered handler answers a request under
    torch.profiler (here in this process on the CPU, where it records the top-level operators; on GPUs each rank's
    kernels) and the report keeps each rank's summary."""
    import argparse

    from lmi_deploy.runtime import load_handler
    from scripts import bench_tensor_parallel, kernel_trace

    code = rendered(gated_t5, 1, tmp_path / "one")
    model_py = bench_tensor_parallel.prepare_model_py(argparse.Namespace(model_py=code / "model.py"), tmp_path / "b")
    handler = load_handler(model_py)
    lines = (code / "serving.properties").read_text().splitlines()
    properties = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    properties["model_dir"] = str(gated_t5)  # where the server put its copy of the s3:// weights
    assert handler.handle(handler.Input.of(properties)) is None  # the empty warm-up call loads the model

    class InProcess:  # the worker group's call, answered here by the function the "handler" property names
        def call(self, inputs: Any) -> Any:
            return getattr(handler, inputs.get_properties()["handler"])(inputs)

    body = json.dumps({"inputs": ["summarize: the quick brown fox"], "parameters": {"max_new_tokens": 4}}).encode()
    traces = kernel_trace.record(InProcess(), handler.Input, body, tmp_path / "trace", "tp1-b1", 1)
    events = json.loads((tmp_path / "trace" / "tp1-b1-rank0.json").read_text())
    assert events and [event[1] for event in events] == sorted(event[1] for event in events)
    trace = traces["rank0"]
    assert trace["kernels"] == len(events) and 0 < trace["busy_ms"] <= trace["span_ms"] + 1e-3
    assert any(top["name"].startswith("aten::") for top in trace["top"])
    assert [top["total_ms"] for top in trace["top"]] == sorted((top["total_ms"] for top in trace["top"]), reverse=True)
    assert "kernels, busy" in kernel_trace.describe("tp1-b1", traces)[0]
    # the figures: a 5 µs launch gap, an 80 µs wait for the host, and an overlap that is no gap
    figures = kernel_trace.summary([["a", 0, 10], ["b", 15, 5], ["a", 100, 10], ["c", 105, 1]])
    assert figures["gaps_over_50us"] == 1 and figures["gaps_over_50us_ms"] == 0.08
    assert figures["other_gaps_ms"] == 0.005 and figures["span_ms"] == 0.11 and figures["busy_ms"] == 0.026
    assert figures["top"][0] == {"name": "a", "count": 2, "total_ms": 0.02, "mean_us": 10.0}
    assert kernel_trace.summary([]) == {"kernels": 0}


def test_bench_tp_keeps_each_finished_setup_when_a_run_is_cut_short(
    gated_t5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device call has a time limit: the report so far is written after every setup (answers included), so a
    run stopped during its last setup keeps the others for ``--merge``. Before, it was written per architecture,
    and a flan-t5-xxl run stopped 13 s after its device_map setup's last request kept nothing."""
    import shutil

    from scripts import bench_handler, bench_tensor_parallel

    work = tmp_path / "work"
    shutil.copytree(gated_t5, work / "flan-t5" / "checkpoint")  # found there: no checkpoint is built
    (tmp_path / "flan-t5.json").write_text((gated_t5 / "config.json").read_text())
    args = bench_tensor_parallel.parse_arguments(
        ["--model-config", str(tmp_path / "flan-t5.json"), "--batches", "2", "--out", str(tmp_path / "out")]
    )
    args.work = work  # kept: the copied checkpoint is not removed
    monkeypatch.setattr(bench_tensor_parallel, "prepare_model_py", lambda args, work: work / "model.py")
    monkeypatch.setattr(bench_handler, "copy_bandwidth", lambda torch, device: 4e12)
    monkeypatch.setattr("torch.cuda.get_device_name", lambda index=0: "NVIDIA H200")
    answer = {"outputs": ["the same text"], "generated_tokens": [8]}
    ran: list[str] = []

    def run_setup(setup: Any, model_py: Path, cases: dict[int, list[str]], args: Any) -> dict[str, Any]:
        if len(ran) == 2:
            raise KeyboardInterrupt  # the device call's limit, during device_map2
        ran.append(setup.name)
        return {"startup_s": 1.0, "batches": {"2": {"p50_ms": 10.0 * len(ran), "answer": answer}}}

    monkeypatch.setattr(bench_tensor_parallel, "run_setup", run_setup)
    with pytest.raises(KeyboardInterrupt):
        bench_tensor_parallel.run(args, None, work)
    partial = json.loads((tmp_path / "out" / "tp2-partial.json").read_text())
    arch = partial["architectures"]["flan-t5"]
    assert list(arch["setups"]) == ran == ["tp1", "tp2"] and arch["decoder_parameters"] > 0
    assert arch["comparison"]["2"]["tp_vs_tp1"] == 2.0 and partial["command"].startswith("python scripts/bench")
    assert arch["comparison"]["2"]["agreement"]["tp2"]["rows_identical"] == "1/1"
