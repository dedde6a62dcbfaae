"""The config's fields on the model, its engine and container, the weights, our Accelerate handler and the LoRA
adapters served on the model."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from lmi_deploy import adapters as lora_adapters
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.settings.values import shown

Dtype = Literal["fp32", "fp16", "bf16", "int8", "auto"]
MAX_ACCELERATORS = 64  # more than any SageMaker instance has (ml.trn1.32xlarge: 32 Neuron devices)
MAX_SEQUENCE_LENGTH = 2**24  # 16M tokens: beyond every model's context; keeps memory arithmetic finite


class ModelSettings(BaseModel):
    """The model, the engine and container that serve it, how its weights arrive, our handler's options."""

    deployment: str = Field(
        "",
        description="Names the stacks (`<deployment>-artifacts`, `<deployment>-endpoint`), the endpoint, the rendered "
        "folder and the bucket. 2-32 of `a-z0-9-`.",
        json_schema_extra=shown("slug of `model_id` (`flan-t5-xxl`)"),
    )
    model_id: str = Field(
        "google/flan-t5-xxl",
        min_length=1,
        description="Hugging Face Hub id (weights staged at `models/<model_id>/<model_revision>/` in the artifacts "
        "bucket), an `s3://` prefix used as is, or a local model folder (read for model facts).",
    )
    model_revision: str = Field(
        "main",
        min_length=1,
        description="Hub revision; part of the weights prefix. Pin a commit for reproducible deploys.",
    )
    model_type: str = Field(
        "",
        description="HF `model_type` (t5, gpt2, ...); only needed when neither `config.json` nor the model's name "
        "tells and the engine serves a fixed list.",
        json_schema_extra=shown("from `config.json`, else the model's name"),
    )
    model_config_path: str | None = Field(
        None,
        alias="model_config",
        description="The model's `config.json` (or folder), for the head/memory/timeout checks. Relative to the "
        "deployment file when given in one. Found otherwise in: a local `model_id` folder, the configs bundled for "
        "the examples (`lmi_deploy/model_configs/`), the Hub (cache, then network when reachable). Without one, those "
        "checks are skipped with a warning.",
        json_schema_extra=shown("found automatically"),
    )
    engine: Engine = Field(
        Engine.FASTER_TRANSFORMER,
        description="Case-insensitive: "
        + ", ".join(f"`{spec.engine.value}` ({spec.summary})" for spec in ENGINES.values())  # each engine's module
        + ". Versions and image tags come from sagemaker-core's image config.",
    )
    lmi_version: str = Field(
        "",
        description="LMI/DJL container version; one that doesn't ship the engine is refused with the versions that "
        "do. 0.19.0 is refused: its server downloads no weights from S3 and reads no `OPTION_*` variables. Before "
        "0.22.1 the Accelerate handler is rendered without streaming (djl_python has no `add_stream_content` yet; a "
        "warning says so).",
        json_schema_extra=shown("`0.21.0` for FasterTransformer (the seed), else the newest that ships the engine"),
    )
    handler: Literal["custom", "builtin"] = Field(
        "custom",
        description="`custom`: a rendered `model.py` (FasterTransformer, DeepSpeed, Accelerate): loads once, "
        '`{"inputs": str or [str], "parameters": {...}}` -> `{"outputs": [...]}`, 400 with a JSON error for malformed '
        "or out-of-range requests ([operations](operations.md#requests-the-handler-refuses)). `builtin`: the engine's "
        "no-code handler (`djl_python.fastertransformer`, `djl_python.deepspeed`, `djl_python.huggingface`, "
        "`djl_python.transformers-neuronx` before 0.24 / `transformers_neuronx` after; rolling-batch engines are "
        "served by the server's own choice).",
        json_schema_extra=shown("`custom` where offered, else `builtin`"),
    )
    tensor_parallel_degree: Annotated[int, Field(ge=1, le=MAX_ACCELERATORS)] | Literal["auto", "max"] = Field(
        4,
        description="Accelerators (GPUs, or NeuronCores on inf2/trn1) per model copy; must divide the instance's count "
        "and the model's attention and KV heads. `auto`: the smallest that divides and fits in memory. `max`: all of "
        "them (0.24.0 onward).",
        json_schema_extra=shown("`4` for FasterTransformer (the seed), else `auto`"),
    )
    dtype: Dtype = Field(
        "fp32",
        description="`fp32`, `bf16`, `fp16`, `int8` (per engine). `auto`: bf16 where the GPU (Ampere or newer) and "
        "engine support it, else fp16 (fp32 for T5). T5 models never take fp16 (activations overflow into NaN); "
        "V100/T4 have no bf16; NeuronX bf16 from 0.24.0.",
        json_schema_extra=shown("`fp32` for FasterTransformer (the seed), else `auto`"),
    )
    max_sequence_length: int | None = Field(
        None,
        ge=16,
        le=MAX_SEQUENCE_LENGTH,
        description="Input + output tokens per sequence: sizes the KV-cache estimate; rendered as `option.max_tokens` "
        "(DeepSpeed), `option.max_model_len` (vLLM/lmi-dist, 0.26.0 onward), `option.max_input_len`/`max_output_len` "
        "3:1 (TensorRT-LLM to 0.32; from 0.33.0 `max_input_len` and the total as `max_seq_len`, the build flag 0.33 "
        "passes on - it has no `max_output_len`), `option.n_positions` (NeuronX). With `max_batch_size` it also "
        "derives `option.warm_shapes` (Accelerate `handler=custom`): the request shapes compiled and captured at "
        "load - every power-of-two batch up to `max_batch_size`, each with a short request (128 prompt / 64 new "
        "tokens) and the longest (`max_sequence_length` split 3/4 prompt, 1/4 new); other shapes: see `compile`.",
        json_schema_extra=shown("the model's positions, at most 4096 (2048 when unknown)"),
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Sequences at once: the KV-cache estimate of static-batch engines; "
        "`option.max_rolling_batch_size` (rolling batch) or `batch_size` (NeuronX) when set.",
        json_schema_extra=shown("8 for the estimate; unset in the files"),
    )
    weights_delivery: Literal["container", "sagemaker"] = Field(
        "container",
        description="`container`: the LMI container downloads the staged prefix (s5cmd). `sagemaker`: SageMaker "
        "places it under `/opt/ml/model` (`ModelDataSource` S3Prefix), settings as `OPTION_*` environment variables; "
        "LMI 0.27.0+ and `handler=builtin`.",
    )
    partitioned: bool = Field(
        False,
        description="Load `<prefix>/partitioned/tp<N>/` made by `lmi-deploy partition` (FasterTransformer, "
        "DeepSpeed, TensorRT-LLM; DeepSpeed adds `option.checkpoint=ds_inference_config.json`).",
    )
    kv_cache: Literal["static", "dynamic"] | None = Field(
        None,
        description="`option.kv_cache` of our Accelerate `model.py` (`handler=custom` only). `static`: our decode "
        "loop with a static KV cache per shape bucket (batch, prompt and new tokens rounded up to powers of two); at "
        "load it must match `generate()` token for token on two prompts, else the handler serves with `generate()` "
        "and logs why. Greedy and sampled (temperature/top-k/top-p) requests with `max_new_tokens` use it; beams, "
        "penalties, constraints and streaming go to `generate()`. `dynamic`: always `generate()`. Memory: one cache "
        "per bucket in use (at most 8), e.g. 0.1 GB for flan-t5-xxl at batch 4.",
        json_schema_extra=shown("`static`"),
    )
    cuda_graphs: bool | None = Field(
        None,
        description="With `kv_cache=static` on a GPU: capture each bucket's prompt pass (encoder and first step) and "
        "decode step as CUDA graphs (about 1 s the first time a bucket is used) and replay them; a graph that cannot "
        "be captured runs eagerly, logged. Off on the CPU and when the model is split over several GPUs.",
        json_schema_extra=shown("`true`"),
    )
    compile: bool | None = Field(
        None,
        description="With `kv_cache=static` on a GPU: `torch.compile` the decode step (fuses norms, GELU, softmax; "
        "1.5x faster at batch 4 on flan-t5-xxl) once, at load, with dynamic shapes, then capture the warm shapes' "
        "buckets; nothing compiles on a request: a request outside the warm buckets is served by a larger warm "
        "bucket (at most 4x its cells, padded) or else by its own bucket with the step uncompiled, logged (a new "
        "bucket would cost seconds of kernel specialisation and tuning even without recompiling). Costs ~2-4 min of "
        "startup on flan-t5-xxl, which the derived startup timeout includes. Batches start at 2 when on (batch 1 "
        "shares that bucket). Falls back to graphs without compile if it disagrees with `generate()`. Off when the "
        "model is split over several GPUs (`device_map`: accelerate's per-layer hooks recompile it past dynamo's "
        "limit: flan-t5-xxl over 2 H200s took 4.7 s a request compiled, 2.7 s eager in an earlier run).",
        json_schema_extra=shown("`true`"),
    )
    fuse_projections: bool | None = Field(
        None,
        description="With `kv_cache=static`: one matrix for the decoder's q|k|v (self-attention) and for its "
        "gated-FFN inputs (T5's wi_0|wi_1, Llama's gate|up), made at load: 0.3-0.4 ms a token faster on "
        "flan-t5-xxl, +6.4 GB of GPU memory there (skipped when it would take more than half of what is free). "
        "With it, on a GPU with Triton, lmi-deploy's own decode kernels: a streaming matrix-vector product, kept "
        "per matrix shape where it beat cuBLAS in this GPU's timing at load, and attention of one new token over the "
        "KV cache in one kernel, kept where it matches the model's own attention (0.55 ms a token faster together on "
        "flan-t5-xxl at batch 4 on an H200; ~5 s of startup). Checked with the rest against `generate()`; undone "
        "if it disagrees.",
        json_schema_extra=shown("`true`"),
    )
    tp_all_reduce: Literal["one_shot", "nccl"] | None = Field(
        None,
        description="Accelerate `handler=custom` with `tensor_parallel_degree` > 1 (`engine=MPI`): how the ranks sum a "
        "decode step's partial products. `one_shot`: through PyTorch's symmetric memory, one kernel whose peers read "
        "over NVLink and which also copies the partial in (6.9-7.4 us against NCCL's 17.4 us on 2 x H200), used only "
        "where it matches NCCL's sum at load, NCCL elsewhere (no peer access, older torch). With it, a decode step's "
        "row-wise products and their sums run in one Triton kernel (`gemv_all_reduce`) per matrix shape and row count "
        "where that matches NCCL's sum at load and beats the product then the sum (each rank writes its part into "
        "its peers' memory; 11.0 against 14.3 us on a 4096x2048 matrix on 2 x H200; TP 2 against TP 1: flan-t5-xxl "
        "0.76x, flan-ul2 0.71x). A prompt pass's larger sums (rows x width, megabytes) go through symmetric "
        "memory's two-shot sum where it matches NCCL's and beat NCCL in this machine's timing at load on the largest "
        "`warm_shapes` prompt (NCCL took ~49 us for 8 MB on 2 x H200). An LM head split by vocabulary sums its "
        "logits through a one-shot buffer of its own. `nccl`: always NCCL, no fused kernel.",
        json_schema_extra=shown("`one_shot` on instances with NVLink (p4d, p5, ...), `nccl` on PCIe-only ones"),
    )
    fast_load: bool | None = Field(
        None,
        description="Accelerate `handler=custom`: read the `.safetensors` shards straight into the GPU (one pass per "
        "shard through pinned buffers, shards in parallel, weights as views of the shard buffers) when the model "
        "fits one GPU with a fifth to spare; else `from_pretrained` with `device_map=auto`. Needs local safetensors "
        "(the staged weights), not a Hub id or `.bin`.",
        json_schema_extra=shown("`true`"),
    )
    adapters: tuple[lora_adapters.Adapter, ...] = Field(
        (),
        description="LoRA adapters served on this model (vLLM 0.27.0+, lmi-dist 0.27.0-0.32.0): a list of "
        "`{name, source, revision}`; `source` a Hub id (pin `revision`), a local PEFT folder or an `s3://` prefix. "
        "Staged under the weights' `adapters/<name>/`, where the container registers them at start (with "
        'inference components: one adapter inference component each, 0.31.0+). Requests pick one with `"adapters": '
        '"<name>"`. Validation reads each `adapter_config.json`: base model, rank, target modules. See '
        "[adapters](adapters.md).",
        json_schema_extra=shown("none"),
    )
    lora: lora_adapters.LoraSettings | None = Field(
        None,
        description="LoRA limits `{max_loras, max_lora_rank, max_cpu_loras}` (`option.*`); setting it without "
        "adapters turns LoRA on for adapters added later. `max_lora_rank`: the smallest the release accepts (8, 16, "
        "32, 64; 128, 256 from 0.30.0) that holds every adapter's rank; `max_loras`: adapters per batch, each a slot "
        "of GPU memory counted in the memory estimate (the adapters' count, at most 4); `max_cpu_loras`: adapters "
        "cached in host memory (every adapter when they outnumber `max_loras`).",
        json_schema_extra=shown("derived from the adapters"),
    )

    @field_validator("adapters", mode="before")
    @classmethod
    def _adapters_from_text(cls, value: Any) -> Any:
        return lora_adapters.adapters_from_text(value)

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, value: tuple[lora_adapters.Adapter, ...]) -> tuple[lora_adapters.Adapter, ...]:
        lora_adapters.unique_names(value)
        return value

    @field_validator("lora", mode="before")
    @classmethod
    def _lora_from_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip() else value or None
