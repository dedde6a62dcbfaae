"""The shape every lmi-deploy handler shares: load once on the empty warm-up call, parse, answer in JSON.

A rendered ``model.py`` builds one handler object from its deployment's values and hands ``handle`` to the server.
A malformed request is answered 400 with what to change; a failure of the model itself propagates, so the server
answers it as a server fault (424), never disguised as a client error.
"""

from __future__ import annotations

from typing import Any

from .hub_token import hub_token_from_secret
from .request import Answers, BadRequest, RequestRules


def weights_location(properties: dict[str, str]) -> str:
    """Where the weights are: model_id when local or a Hub id; the server's local copy (model_dir) for s3://."""
    location = properties.get("model_id") or properties.get("s3url") or ""
    if not location or location.startswith("s3://"):
        location = properties["model_dir"]
    return location


class Handler:
    """Loads its engine once (the Hub token read first, where the deployment has a token secret), then serves.

    Subclasses say how to ``load`` from the serving.properties values and how to ``answer`` one request.
    """

    def __init__(self, rules: RequestRules, answers: Answers, hub_token_secret: tuple[str, str] | None = None) -> None:
        self.rules = rules
        self.answers = answers
        self.hub_token_secret = hub_token_secret  # (environment variable naming the secret, default region)
        self.loaded: Any = None

    def load(self, properties: dict[str, str]) -> Any:
        raise NotImplementedError

    def answer(self, loaded: Any, inputs: Any) -> Any:
        raise NotImplementedError

    def handle(self, inputs: Any) -> Any:
        """DJL entry point: load once, skip the empty warm-up call, answer one request (400 when malformed)."""
        if self.loaded is None:
            if self.hub_token_secret is not None:
                hub_token_from_secret(*self.hub_token_secret)
            self.loaded = self.load(inputs.get_properties())
        if inputs.is_empty():
            return None
        try:
            return self.answer(self.loaded, inputs)
        except BadRequest as error:
            return self.answers.bad_request(str(error))
