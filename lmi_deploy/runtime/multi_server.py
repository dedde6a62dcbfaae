"""Several rendered handlers behind one port, routed by the model a request names, as SageMaker routes it.

A request names its model as the SageMaker runtime sends it: ``X-Amzn-SageMaker-Target-Model`` (a multi-model
endpoint's ``TargetModel``: the versioned archive name ``<model>-<sha256[:12]>.tar.gz``, or ``<model>[.tar.gz]``) or
``X-Amzn-SageMaker-Inference-Component`` (``<deployment>-<model>``, or ``<model>``; an adapter inference component's
``<deployment>-<model>-<adapter>`` reaches its base model with the adapter named in
``X-Amzn-SageMaker-Adapter-Identifier``, as SageMaker forwards it). DJL's own
``POST /models/<model>/invoke`` (the path SageMaker uses inside an MME container) works too. No name, with more than
one model: 400; an unknown name: 404. ``GET /ping`` answers 200 once every model has loaded (503 while loading, 500
if one failed); ``GET /models`` lists the models and their state. Each model is a :class:`ModelServer` of its own:
its own worker, batching and queue, exactly as one model is served.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmi_deploy.adapters import IDENTIFIER_HEADER, component_name
from lmi_deploy.runtime.contract import Reply, error_reply
from lmi_deploy.runtime.http_guard import make_http_server
from lmi_deploy.runtime.server import ModelServer, http_response

if TYPE_CHECKING:
    from lmi_deploy.multi_model import MultiModelDeployment
    from lmi_deploy.multi_render import RenderedMultiModel

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
INFERENCE_COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
_VERSIONED = re.compile(r"(?P<name>.+)-[0-9a-f]{12}")


class ModelRouter:
    """Named :class:`ModelServer` instances, and how names in requests map onto them."""

    def __init__(
        self,
        servers: Mapping[str, ModelServer],
        aliases: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a router needs at least one model")
        self.servers = dict(servers)
        self.aliases = dict(aliases or {})
        self.adapters = dict(adapters or {})  # an adapter inference component's name -> its adapter (aliased too)
        self._loader: threading.Thread | None = None

    def start(self) -> ModelRouter:
        """Load the models one after another, in the background.

        In the container each model has a Python process of its own; here they share one, and Hugging Face loading
        patches torch process-wide while it builds a model (meta-device initialisation), so two loads at once break
        each other.
        """

        def load_in_turn() -> None:
            for server in self.servers.values():
                server.start()
                server.wait_ready(timeout=3600)

        self._loader = threading.Thread(target=load_in_turn, name="model-loader", daemon=True)
        self._loader.start()
        return self

    def wait_ready(self, timeout: float = 120) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self.state == "ready"

    @property
    def state(self) -> str:
        states = {server.state for server in self.servers.values()}
        return "failed" if "failed" in states else "loading" if "loading" in states else "ready"

    @property
    def failure(self) -> str:
        return "; ".join(f"{name}: {s.failure}" for name, s in self.servers.items() if s.failure)

    def resolve(self, requested: str) -> str | None:
        """The model a name in a request means, or None."""
        key = requested.strip().removesuffix(".tar.gz")
        if key in self.servers:
            return key
        if key in self.aliases:
            return self.aliases[key]
        versioned = _VERSIONED.fullmatch(key)
        if versioned and versioned.group("name") in self.servers:
            return versioned.group("name")
        return None

    def adapter_of(self, headers: Mapping[str, str], path_model: str | None = None) -> str | None:
        """The adapter a request names by its adapter inference component (SageMaker then tells the base container
        with the adapter identifier header), or None."""
        requested = _requested(headers, path_model)
        return self.adapters.get(requested.strip()) if requested else None

    def route(self, headers: Mapping[str, str], path_model: str | None = None) -> ModelServer | Reply:
        """The server for a request, or the error reply SageMaker-like routing gives."""
        requested = _requested(headers, path_model)
        names = ", ".join(sorted(self.servers))
        if not requested:
            if len(self.servers) == 1:
                return next(iter(self.servers.values()))
            return error_reply(
                400,
                "Bad Request",
                f"this endpoint serves several models ({names}): name one with {TARGET_MODEL_HEADER} or "
                f"{INFERENCE_COMPONENT_HEADER}",
            )
        name = self.resolve(requested)
        if name is None:
            return error_reply(404, "Not Found", f"no model {requested!r} is served here; models: {names}")
        return self.servers[name]


def _requested(headers: Mapping[str, str], path_model: str | None) -> str | None:
    lowered = {key.lower(): value for key, value in headers.items()}
    return path_model or lowered.get(TARGET_MODEL_HEADER.lower()) or lowered.get(INFERENCE_COMPONENT_HEADER.lower())


def create_router_app(router: ModelRouter) -> Any:
    """The Flask app speaking the SageMaker contract for several models behind one port."""
    from flask import Flask, Response, request

    app = Flask("lmi-deploy-local-multi")

    def invoke(path_model: str | None) -> Any:
        headers = {key: value for key, value in request.headers.items()}
        target = router.route(headers, path_model)
        if isinstance(target, Reply):
            return http_response(target)
        adapter = router.adapter_of(headers, path_model)
        if adapter:
            headers[IDENTIFIER_HEADER] = adapter
        return http_response(target.invoke(request.get_data(), headers, request.environ.get("werkzeug.socket")))

    @app.get("/ping")
    def ping() -> Response:
        state = router.state
        status = {"ready": 200, "loading": 503, "failed": 500}[state]
        detail = {"status": "Healthy" if state == "ready" else state}
        if router.failure:
            detail["error"] = router.failure
        if state == "ready":  # a worker stuck past its deadline makes the whole endpoint unhealthy
            healths = {name: server.health() for name, server in router.servers.items()}
            stuck = {name: body.get("error", "") for name, (code, body) in healths.items() if code != 200}
            if stuck:
                status, detail = 503, {"status": "Unhealthy", "error": "; ".join(f"{n}: {e}" for n, e in stuck.items())}
        return Response(json.dumps(detail), status, content_type="application/json")

    @app.get("/models")
    def models() -> Response:
        listing = [{"modelName": name, "status": server.state} for name, server in sorted(router.servers.items())]
        return Response(json.dumps({"models": listing}), 200, content_type="application/json")

    @app.post("/invocations")
    def invocations() -> Any:
        return invoke(None)

    @app.post("/models/<name>/invoke")
    def invoke_model(name: str) -> Any:
        return invoke(name)

    return app


def serve_router(router: ModelRouter, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """A started werkzeug server (threaded) for ``router``, with the local server's HTTP guards; ``.shutdown()``
    stops it."""
    return make_http_server(create_router_app(router), host, port)


def router_for(
    multi: MultiModelDeployment, rendered: RenderedMultiModel, model_dirs: Mapping[str, Path]
) -> ModelRouter:
    """A router over every model of a multi-model deployment: its rendered code, its local weights.

    Aliases: the inference component's name and the MME archive's versioned name reach the same model.
    """
    missing = [m.name for m in multi.models if m.name not in model_dirs]
    if missing:
        raise ValueError(f"no local weights for {', '.join(missing)}: give --model-dir NAME=DIR for each")
    servers = {m.name: ModelServer(rendered.model(m.name).directory, Path(model_dirs[m.name])) for m in multi.models}
    aliases = {multi.inference_component_name(m): m.name for m in multi.models}
    aliases.update({rendered.model(m.name).target_model.removesuffix(".tar.gz"): m.name for m in multi.models})
    adapters = {
        component_name(multi.inference_component_name(m), a): (m.name, a.name)
        for m in multi.models
        for a in m.config.adapters
    }
    aliases.update({name: model for name, (model, _) in adapters.items()})
    return ModelRouter(servers, aliases, {name: adapter for name, (_, adapter) in adapters.items()})
