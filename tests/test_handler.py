"""The rendered bring-your-own model.py, driven through our djl_python runtime against a fake FasterTransformer.

The fake checks the call contract of the real ``fastertransformer`` wheel (fact sheet §3): ``init_inference(model,
tensor_parallel_degree, pipeline_parallel_degree, dtype)`` and ``pipeline_generate(inputs, **kwargs)`` with the
keyword names of T5's / GPT's signatures.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime import load_handler

T5_GENERATE_KWARGS = {
    "beam_width",
    "max_seq_len",
    "top_k",
    "top_p",
    "beam_search_diversity_rate",
    "temperature",
    "len_penalty",
    "repetition_penalty",
    "presence_penalty",
    "min_length",
    "random_seed",
}
GPT_GENERATE_KWARGS = {
    "batch_size",
    "output_len",
    "beam_width",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "random_seed",
    "len_penalty",
    "min_length",
}


class FakeFasterTransformer(types.ModuleType):
    def __init__(self, model_type: str) -> None:
        super().__init__("fastertransformer")
        self.model_type = model_type
        self.init_calls: list[tuple[Any, ...]] = []
        self.generate_calls: list[tuple[list[str], dict[str, Any]]] = []

    def init_inference(
        self, model: str, tensor_parallel_degree: int, pipeline_parallel_degree: int, dtype: str = "fp32", **kwargs: Any
    ) -> FakeFasterTransformer:
        assert isinstance(tensor_parallel_degree, int) and isinstance(pipeline_parallel_degree, int)
        assert dtype in ("fp32", "fp16", "bf16", "int8")
        self.init_calls.append((model, tensor_parallel_degree, pipeline_parallel_degree, dtype, kwargs))
        return self

    def pipeline_generate(self, inputs: list[str], **kwargs: Any) -> list[str]:
        allowed = T5_GENERATE_KWARGS if self.model_type == "t5" else GPT_GENERATE_KWARGS
        assert set(kwargs) <= allowed, f"not a pipeline_generate argument: {set(kwargs) - allowed}"
        if any(p == "boom" for p in inputs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.generate_calls.append((list(inputs), kwargs))
        return [f"generated<{p}>" for p in inputs]


@pytest.fixture
def handler_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(**context: Any) -> tuple[Any, FakeFasterTransformer, dict[str, str]]:
        config = load_config(context)
        code = render(config, tmp_path)
        fake = FakeFasterTransformer(config.resolved_model_type)
        monkeypatch.setitem(sys.modules, "fastertransformer", fake)
        module = load_handler(code.directory / "model.py")
        # What the engine hands the handler: option.* with the prefix stripped, plus model_dir.
        properties = {
            key.removeprefix("option."): value
            for key, value in (
                line.split("=", 1)
                for line in (code.directory / "serving.properties").read_text().splitlines()
                if line and not line.startswith("#")
            )
        }
        properties["model_dir"] = str(tmp_path / "weights")
        return module, fake, properties

    return make


def request(handler: Any, properties: dict[str, str], body: Any) -> Any:
    """An invocation as the server hands it over, built with the same Input class the handler imports."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return handler.Input.of({**properties, "Content-Type": "application/json"}, raw)


def test_warm_up_then_batch_of_prompts_with_parameters(handler_for) -> None:
    handler, fake, properties = handler_for()
    assert handler.handle(handler.Input.of(properties)) is None  # the empty warm-up call loads the model
    # s3:// weights are downloaded by the server, which passes the local copy as model_dir
    assert fake.init_calls == [(properties["model_dir"], 4, 1, "fp32", {})]

    output = handler.handle(
        request(
            handler,
            properties,
            {
                "inputs": ["translate to German: hi", "summarize: x"],
                "parameters": {"max_new_tokens": 64, "num_beams": 2, "temperature": 0.7, "seed": 3},
            },
        )
    )
    assert output.code == 200
    assert json.loads(output.body()) == {"outputs": ["generated<translate to German: hi>", "generated<summarize: x>"]}
    assert fake.generate_calls[-1] == (
        ["translate to German: hi", "summarize: x"],
        {"max_seq_len": 64, "beam_width": 2, "temperature": 0.7, "random_seed": 3},
    )
    single = handler.handle(request(handler, properties, {"inputs": "one prompt"}))
    assert json.loads(single.body()) == {"outputs": ["generated<one prompt>"]}
    assert fake.generate_calls[-1] == (["one prompt"], {})
    assert len(fake.init_calls) == 1  # loaded once


def test_gpt_family_maps_max_new_tokens_to_output_len(handler_for) -> None:
    handler, fake, properties = handler_for(model_id="EleutherAI/gpt-j-6b", tensor_parallel_degree=2, dtype="bf16")
    output = handler.handle(request(handler, properties, {"inputs": ["a"], "parameters": {"max_new_tokens": 5}}))
    assert output.code == 200
    assert fake.init_calls[0][1:4] == (2, 1, "bf16")
    assert fake.generate_calls == [(["a"], {"output_len": 5})]


def test_local_weights_path_is_used_directly(handler_for) -> None:
    handler, fake, properties = handler_for()
    properties = {k: v for k, v in properties.items() if k != "s3url"} | {"model_id": "/opt/ml/model/flan"}
    handler.handle(request(handler, properties, {"inputs": "x"}))
    assert fake.init_calls[0][0] == "/opt/ml/model/flan"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "request body is not valid JSON"),
        ({"prompt": "x"}, 'expected a JSON object {"inputs"'),
        ({"inputs": []}, '"inputs" must be a string or a non-empty list of strings'),
        ({"inputs": ["a", 3]}, '"inputs" must be a string or a non-empty list of strings'),
        ({"inputs": "a", "parameters": [1]}, '"parameters" must be a JSON object'),
        ({"inputs": "a", "parameters": {"max_tokens": 5}}, "unsupported parameter(s) ['max_tokens']; supported:"),
        ({"inputs": "a", "parameters": {"max_new_tokens": "5"}}, "parameter 'max_new_tokens' must be a number"),
        ({"inputs": "a", "parameters": {"max_new_tokens": 5.5}}, "must be a whole number"),
        ({"inputs": "a", "parameters": {"top_p": True}}, "parameter 'top_p' must be a number"),
    ],
)
def test_malformed_request_is_a_400_json_error(handler_for, body: Any, error: str) -> None:
    handler, fake, properties = handler_for()
    output = handler.handle(request(handler, properties, body))
    assert output.code == 400
    assert output.get_property("content-type") == "application/json"
    payload = json.loads(output.body())
    assert payload["code"] == 400 and error in payload["error"]
    assert fake.generate_calls == []


def test_model_failure_is_not_disguised_as_a_client_error(handler_for) -> None:
    handler, _, properties = handler_for()
    with pytest.raises(RuntimeError, match="illegal memory access"):  # the server answers it with 424
        handler.handle(request(handler, properties, {"inputs": ["boom"]}))


def test_fake_matches_the_documented_signature() -> None:
    params = inspect.signature(FakeFasterTransformer.init_inference).parameters
    assert list(params)[1:5] == ["model", "tensor_parallel_degree", "pipeline_parallel_degree", "dtype"]
