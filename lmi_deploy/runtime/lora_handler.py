"""A local stand-in for LMI's rolling-batch handler (vLLM, lmi-dist), with LoRA adapters.

That handler exists only inside the container, so ``scripts/serve_local.py`` runs this one for a rolling-batch
deployment. It speaks the handler's request contract as djl-serving's source has it (``input_parser.py``):
``{"inputs": str, "parameters": {...}, "adapters": NAME}`` (a list of one string and one name per input works too),
or SageMaker's ``X-Amzn-SageMaker-Adapter-Identifier`` header (an adapter inference component); ``""`` or no
adapter is the base model; an adapter that is not registered is refused (400). With ``option.enable_lora=true`` it
registers, at load, every folder of ``adapters/`` beside the model (the code folder, then the weights folder) under
the folder's name, as the server does (``ModelInfo``). Generation is transformers + PEFT (unmerged LoRA, one adapter
per input): greedy unless ``do_sample``. The answer is ``{"generated_text": ...}`` (with ``"details": {"tokens":
[{"id", "text"}], ...}`` when ``parameters.details`` is true). It imports only ``djl_python`` at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from djl_python import Input, Output

IDENTIFIER_HEADER = "x-amzn-sagemaker-adapter-identifier"
BASE = "__base__"  # PEFT's adapter name for "no adapter" in a mixed batch
GENERATION = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed")
DEFAULT_MAX_NEW_TOKENS = 30
_service: dict[str, Any] = {}


def adapter_folders(*roots: str) -> dict[str, Path]:
    """``adapters/<name>/`` under each root, first root first (the server's order: model folder, download folder)."""
    found: dict[str, Path] = {}
    for root in roots:
        folder = Path(root) / "adapters"
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if child.is_dir() and child.name not in found:
                    found[child.name] = child
    return found


def load(properties: dict[str, str]) -> dict[str, Any]:
    """The tokenizer, the model (a PeftModel holding every adapter when LoRA is on) and the adapters' names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id = properties.get("model_id") or properties["model_dir"]
    on_gpu = torch.cuda.is_available() and int(properties.get("device_id", "-1")) >= 0
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(properties.get("dtype", ""), torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype if on_gpu else torch.float32)
    model = model.to("cuda:0" if on_gpu else "cpu").eval()
    folders = adapter_folders(properties["model_dir"], model_id)
    if properties.get("enable_lora", "false").lower() != "true" or not folders:
        return {"tokenizer": tokenizer, "model": model, "adapters": ()}
    from peft import PeftModel

    names = list(folders)
    model = PeftModel.from_pretrained(model, str(folders[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(folders[name]), adapter_name=name)
    return {"tokenizer": tokenizer, "model": model.eval(), "adapters": tuple(names)}


def parse(
    body: Any, properties: dict[str, str], registered: tuple[str, ...]
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(prompts, the adapter of each, parameters) of a request; ValueError saying what is wrong."""
    if not isinstance(body, dict) or "inputs" not in body:
        raise ValueError("Invalid request payload: a JSON object with 'inputs' (a string) is required")
    inputs = body["inputs"]
    prompts = inputs if isinstance(inputs, list) else [inputs]
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("Invalid request payload: 'inputs' must be a non-empty string")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError("Invalid request payload: 'parameters' must be an object of key-value pairs")
    unknown = sorted(set(parameters) - {*GENERATION, "details"})
    if unknown:
        raise ValueError(f"parameters {', '.join(unknown)} are not served locally; use {', '.join(GENERATION)}")
    named: Any = body.get("adapters")
    if named is None:
        named = next((v for k, v in properties.items() if k.lower() == IDENTIFIER_HEADER), None)
    names = [""] * len(prompts) if named is None else named if isinstance(named, list) else [named]
    if len(names) != len(prompts):
        raise ValueError("Number of adapters is not equal to the number of inputs")
    for name in names:
        if not isinstance(name, str) or (name and name not in registered):
            raise ValueError(f"Adapter {name} is not registered")
    return prompts, names, parameters


def generate(prompts: list[str], names: list[str], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    import torch

    tokenizer, model = _service["tokenizer"], _service["model"]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    options = {k: v for k, v in parameters.items() if k in GENERATION and k != "seed"}
    options.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    options.setdefault("do_sample", False)
    if "seed" in parameters:
        torch.manual_seed(int(parameters["seed"]))
    if _service["adapters"]:
        options["adapter_names"] = [name or BASE for name in names]
    with torch.no_grad():
        output = model.generate(**encoded, pad_token_id=tokenizer.pad_token_id, **options)
    answers = []
    for row in output[:, encoded["input_ids"].shape[1] :].tolist():
        ids = [t for t in row if t != tokenizer.pad_token_id]
        answer: dict[str, Any] = {"generated_text": tokenizer.decode(ids, skip_special_tokens=True)}
        if parameters.get("details"):
            finish = "eos_token" if tokenizer.eos_token_id in ids else "length"
            tokens = [{"id": t, "text": tokenizer.decode([t])} for t in ids]
            answer["details"] = {"finish_reason": finish, "generated_tokens": len(ids), "tokens": tokens}
        answers.append(answer)
    return answers


def handle(inputs: Input) -> Output | None:
    if "model" not in _service:
        _service.update(load(inputs.get_properties()))
    if inputs.is_empty():
        return None
    try:
        body = inputs.get_as_json()
        prompts, names, parameters = parse(body, inputs.get_properties(), _service["adapters"])
    except ValueError as error:
        return Output().error(str(error), code=400)
    answers = generate(prompts, names, parameters)
    return Output().add_as_json(answers if isinstance(body["inputs"], list) else answers[0])
