"""``lmi-deploy recommend`` through its script's ``main(argv)``: what it ranks, what it leaves out and why, one row's
arithmetic by hand, the calibration against the H200 benchmark, the deployment file it writes, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy import instances, performance
from lmi_deploy.commands.recommend import main
from lmi_deploy.containers import Engine
from lmi_deploy.recommend import Ask, recommend
from lmi_deploy.rules import estimates

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_seed_ranks_only_instances_where_it_fits_cheapest_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--model", "google/flan-t5-xxl", "--top", "1000", "--json")
    assert code == 0
    result = json.loads(out)
    options = result["options"]
    assert len(options) == result["meeting_target"] > 10
    assert not any(e["reason"] == "refused by validation" for e in result["excluded"])
    unsafe = {e["option"] for e in result["excluded"] if e["reason"] == "no safe dtype"}
    assert "ml.g4dn.12xlarge lmi-dist" in unsafe and "ml.p3.8xlarge lmi-dist" in unsafe  # fp16 only on T4/V100
    prices = [o["usd_per_hour"] for o in options]
    assert prices == sorted(prices)
    for option in options:
        assert option["memory_per_accelerator_gib"] <= option["usable_per_accelerator_gib"]
        instance = instances.get(option["instance_type"])
        assert instance is not None and not instance.is_neuron
        weights_gib = 11_134_828_544 * (4 if option["dtype"] == "fp32" else 2) / estimates.GIB
        per_accelerator = weights_gib / option["tensor_parallel_degree"]
        assert per_accelerator < instance.memory_per_accelerator_gib  # the weights alone fit
    ranked = {o["instance_type"] for o in options}
    assert "ml.g4dn.xlarge" not in ranked and "ml.g6.xlarge" not in ranked  # 16 GiB T4, 22 GiB L4: too small
    reasons = {(e["option"], e["reason"]) for e in result["excluded"]}
    assert ("ml.g4dn.xlarge Accelerate TP1", "does not fit") in reasons
    assert ("vLLM", "engine lacks the family") in reasons and ("NeuronX", "engine lacks the family") in reasons
    assert all(o["engine"] in ("FasterTransformer", "Accelerate", "lmi-dist") for o in options)


def test_text_output_gives_the_reason_of_each_number(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--model", "meta-llama/Llama-2-7b-hf", "--p50-ms", "3000", "--top", "2")
    assert code == 0
    assert "target: p50 <= 3000 ms" in out and "left out:" in out
    first = out.split("\n 1  ")[1]
    for why in ("GB/s effective", "bandwidth efficiency", "TFLOP/s achievable", "per million = $", "-> fits"):
        assert why in first, why
    assert "\n  misses the target" in out and "p50 " in out.split("\n  misses the target")[1]


def test_every_catalog_type_has_a_price_and_accelerator_speed() -> None:
    from lmi_deploy import pricing

    assert set(pricing.US_EAST_1_HOURLY_USD) == set(instances.catalog()) == set(pricing.PRICE_BASIS)
    for instance in instances.catalog().values():
        assert instance.speed.memory_bandwidth_gb_s > 0 and instance.speed.source
        assert instance.interconnect.gb_s > 0 and instance.interconnect.source


def test_one_row_by_hand() -> None:
    """Llama-2-7B, fp16-sized bf16 weights, vLLM TP1 on one A10G (ml.g5.xlarge), 512 + 128 tokens, 4 in flight."""
    result = recommend(Ask("meta-llama/Llama-2-7b-hf", input_tokens=512, output_tokens=128, concurrency=4, top=100))
    row = next(o for o in result.options if o.setup.instance.name == "ml.g5.xlarge" and o.setup.engine is Engine.VLLM)
    assert (row.setup.tensor_parallel, row.setup.dtype, row.estimate.batch) == (1, "bf16", 4)
    parameters = 6_738_411_520  # computed from the bundled config.json
    kv_per_token = 2 * 32 * 128 * 2 * 32  # K and V x 32 KV heads x head_dim 128 x 2 bytes x 32 layers
    step_bytes = parameters * 2 + kv_per_token * (512 + 128 / 2) * 4  # weights + each sequence's mean context
    step_ms = step_bytes / (600e9 * 0.70) * 1e3 + 4 * 32 * 2.0 / 1e3  # A10G 600 GB/s x vLLM's 0.70; 2 us/seq/layer
    prompt_flop = (2 * parameters * 512 + 4 * 32 * 512**2 * 4096) * 4  # weights + attention, 4 prompts
    prompt_ms = prompt_flop / (125e12 * 0.50) * 1e3  # A10G 125 TFLOP/s x 0.50
    request_ms = prompt_ms + 127 * step_ms  # the prompt pass yields the first token
    tokens_per_s = 4 * 128 / (request_ms / 1e3)
    assert row.estimate.step_ms == pytest.approx(step_ms, rel=1e-9)
    assert row.estimate.prefill_ms == pytest.approx(prompt_ms, rel=1e-9)
    assert row.estimate.request_ms == pytest.approx(request_ms, rel=1e-9)
    assert row.hourly_usd == 1.408
    assert row.usd_per_million_tokens == pytest.approx(1.408 / (tokens_per_s * 3600) * 1e6, rel=1e-9)
    assert (round(step_ms, 2), round(prompt_ms, 1), round(request_ms), round(tokens_per_s, 1)) == (
        35.22,
        450.4,
        4923,
        104.0,
    )


def test_all_reduces_and_one_request_at_a_time_by_hand() -> None:
    """TP2 over PCIe pays 2 all-reduces per layer per step; an engine serving one request at a time queues them."""
    result = recommend(Ask("meta-llama/Llama-2-7b-hf", input_tokens=512, output_tokens=128, concurrency=4, top=500))
    by_name = {(o.setup.instance.name, o.setup.engine, o.setup.tensor_parallel): o for o in result.options}
    tp2 = by_name["ml.g5.12xlarge", Engine.VLLM, 2].estimate  # 2 copies of TP2: 2 sequences each
    kv = 2 * 32 * 128 * 2 * 32 * (512 + 64) * 2
    allreduce_ms = 2 * 32 * (30e-6 + 2 * 1 / 2 * 2 * 4096 * 2 / 32e9) * 1e3  # message: 2 sequences x 4096 x 2 bytes
    allreduce_ms += (30e-6 + 2 * 1 / 2 * 2 * 32000 * 2 / 32e9) * 1e3  # and the logits: 2 sequences x 32000 x 2 bytes
    step_ms = (6_738_411_520 * 2 + kv) / (2 * 600e9 * 0.70) * 1e3 + allreduce_ms + 2 * 32 * 2.0 / 2 / 1e3
    assert (tp2.batch, tp2.turns) == (2, 1)
    assert tp2.allreduce_ms == pytest.approx(allreduce_ms, rel=1e-9)
    assert tp2.step_ms == pytest.approx(step_ms, rel=1e-9)
    serial = by_name["ml.g5.xlarge", Engine.ACCELERATE, 1].estimate  # one copy; each request waits for 3 others
    alone = recommend(Ask("meta-llama/Llama-2-7b-hf", input_tokens=512, output_tokens=128, concurrency=1, top=500))
    single = next(
        o for o in alone.options if o.setup.instance.name == "ml.g5.xlarge" and o.setup.engine.value == "Accelerate"
    )
    assert (serial.batch, serial.turns, single.estimate.turns) == (2, 4, 1)  # batch 1 runs in the handler's bucket 2
    assert serial.request_ms == pytest.approx(4 * single.estimate.request_ms, rel=1e-9)
    assert serial.tokens_per_s == pytest.approx(single.estimate.tokens_per_s, rel=1e-9)


def test_the_handlers_one_shot_sums_price_a_decode_step_over_nvlink() -> None:
    """On NVLink the Accelerate handler's decode steps sum through symmetric memory (its default there, measured at
    7.9-8.2 us on 2 x H200); its prompt pass and the other engines pay NCCL's latency."""
    facts = performance._benchmark_facts()  # flan-t5-xxl: 24 + 24 layers, hidden 4096
    instance = instances.get("ml.p5e.48xlarge")
    assert instance is not None and instance.interconnect.name.startswith("NVLink")
    work = performance.Workload(128, 64, 4)  # 4 copies of TP2, one sequence each
    handler = performance.estimate(facts, performance.Setup(instance, Engine.ACCELERATE, 2, "bf16"), work)
    vllm = performance.estimate(facts, performance.Setup(instance, Engine.VLLM, 2, "bf16"), work)
    assert (handler.batch, vllm.batch) == (2, 1)  # the handler's static cache runs batches of 2 and up

    def traffic(batch: int, width: int = 4096) -> float:  # a ring all-reduce over 2 ranks moves the message once
        return 2 * (2 - 1) / 2 * batch * width * 2 / (instance.interconnect.gb_s * 1e9)

    logits = 32128  # one more a step: the LM head's logits, split by vocabulary
    expected = (72 * (6.9e-6 + traffic(2)) + 6.9e-6 + traffic(2, logits)) * 1e3
    assert handler.allreduce_ms == pytest.approx(expected, rel=1e-9)
    assert vllm.allreduce_ms == pytest.approx((72 * (18e-6 + traffic(1)) + 18e-6 + traffic(1, logits)) * 1e3, rel=1e-9)


def test_a_model_that_fits_nowhere_names_the_closest_miss(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 32768,
                "intermediate_size": 131072,
                "num_attention_heads": 256,
                "num_key_value_heads": 16,
                "num_hidden_layers": 160,
                "vocab_size": 32000,
                "max_position_embeddings": 4096,
                "torch_dtype": "bfloat16",
            }
        )
    )
    written = tmp_path / "out.yaml"
    argv = ["--model", "acme/huge", "--model-config", str(config), "--write-config", str(written)]
    code, _, err = run(capsys, *argv)
    assert code == 1 and not written.exists()
    assert err.count("\n") == 1
    assert err.startswith("lmi-deploy recommend: no instance fits acme/huge; closest miss: ml.p5e.48xlarge")
    assert "TP8" in err and "DOES NOT FIT" in err


def test_calibration_reproduces_the_h200_benchmark() -> None:
    measured = json.loads((ROOT / "docs" / "benchmarks" / "handler-h200.json").read_text())
    bench = performance.H200_HANDLER
    assert (bench.input_tokens, bench.output_tokens) == (measured["input_tokens"], measured["new_tokens"])
    for batch, p50 in bench.p50_ms.items():
        assert measured["batches"][str(batch)]["handler_p50_ms"] == p50
    for batch in performance.FITTED_BATCHES:
        assert performance.benchmark_estimate(batch) == pytest.approx(bench.p50_ms[batch], rel=1e-3)
    assert performance.benchmark_estimate(4) == pytest.approx(bench.p50_ms[4], rel=0.02)  # not fitted: a check
    speed = performance.accelerate_speed()
    assert 0.5 < speed.bandwidth_efficiency < 0.75 and speed.source.startswith("measured")


def test_written_config_validates_renders_and_synthesizes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.test_stacks import synth

    written = tmp_path / "deployments" / "pick.yaml"
    written.parent.mkdir()
    argv = ["--model", "meta-llama/Llama-2-7b-hf", "--p50-ms", "4000", "--concurrency", "8", "--write-config"]
    code, out, _ = run(capsys, *argv, str(written))
    assert code == 0 and f"wrote {written}" in out
    first_row = out.split("\n 1  ")[1].split()
    config, stacks, _ = synth(tmp_path, config=str(written))
    assert (config.instance_type, config.engine.value, config.lmi_version) == tuple(first_row[:3])
    assert (config.max_sequence_length, config.max_batch_size) == (640, 8)
    assert config.resolved.errors == [] and stacks.endpoint is not None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "the following arguments are required: --model"),
        (["--model", "google/flan-t5-xxl", "--p50-ms", "-5"], "argument --p50-ms: -5 must be above 0"),
        (["--model", "google/flan-t5-xxl", "--concurrency", "many"], "'many' is not a whole number"),
        (["--model", "google/flan-t5-xxl", "--p50-ms", "900", "--tokens-per-s", "50"], "not allowed with"),
        (["--model", "google/flan-t5-xxl", "--region", "mars-north-1"], "--region 'mars-north-1' hosts no LMI"),
        (["--model", "acme/secret-model"], "pass --model-config PATH"),
        (
            ["--model", "meta-llama/Llama-2-7b-hf", "--input-tokens", "4000", "--output-tokens", "200"],
            "exceed meta-llama/Llama-2-7b-hf's 4096 positions",
        ),
        (["--model", "google/flan-t5-xxl", "--model-config", "/nonexistent/config.json"], "/nonexistent/config.json"),
    ],
)
def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lmi-deploy recommend: ") and says in err, err


def test_targets_and_price_limit_leave_out_what_misses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--model", "meta-llama/Llama-2-70b-hf", "--tokens-per-s", "1e6", "--json")
    assert code == 1 and "no option meets the target (>= 1e+06 generated tokens/s); closest: " in err
    assert json.loads(out)["options"] == []
    code, out, _ = run(capsys, "--model", "meta-llama/Llama-2-7b-hf", "--max-price-per-hour", "1", "--json")
    result: dict[str, Any] = json.loads(out)
    assert code == 0 and all(o["usd_per_hour"] <= 1 for o in result["options"])
    assert any(e["reason"] == "over the price limit" for e in result["excluded"])
