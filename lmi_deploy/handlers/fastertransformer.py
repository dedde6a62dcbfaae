"""lmi-deploy's handler on FasterTransformer: ``fastertransformer.init_inference`` once, ``pipeline_generate`` per
request. Answers ``{"outputs": [str, ...]}``, one generation per input."""

from __future__ import annotations

import logging
from typing import Any

from .handler import Handler, weights_location
from .request import Answers, RequestRules, read_body


class FasterTransformerHandler(Handler):
    """One deployment's handler: its model type, rendered tensor-parallel degree and dtype (properties override)."""

    def __init__(
        self,
        rules: RequestRules,
        answers: Answers,
        *,
        model_type: str,
        tensor_parallel_degree: int,
        dtype: str,
        hub_token_secret: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(rules, answers, hub_token_secret)
        self.model_type = model_type
        self.tensor_parallel_degree = tensor_parallel_degree
        self.dtype = dtype

    def load(self, properties: dict[str, str]) -> Any:
        """Initialize FasterTransformer from the serving.properties values (``option.`` stripped)."""
        import fastertransformer  # in the FasterTransformer container only

        location = weights_location(properties)
        degree = int(properties.get("tensor_parallel_degree", self.tensor_parallel_degree))
        dtype = properties.get("dtype", self.dtype)
        logging.info("loading %s model from %s, tp=%d, dtype=%s", self.model_type, location, degree, dtype)
        return fastertransformer.init_inference(location, degree, 1, dtype)

    def answer(self, loaded: Any, inputs: Any) -> Any:
        prompts, kwargs = self.rules.parse(read_body(inputs))
        generations = loaded.pipeline_generate(prompts, **kwargs)
        return self.answers.json({"outputs": [str(text) for text in generations]})
