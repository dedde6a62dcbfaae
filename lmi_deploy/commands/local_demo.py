"""The demos ``make local`` ends with: the rendered handler serving a model here, answering the seed's requests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lmi_deploy.commands.local_aws import LOCAL_ACCOUNT, LOCAL_REGION
from lmi_deploy.config import load_config
from lmi_deploy.console import Console


def multi_model_demo(workdir: Path, folders: Mapping[str, Path] | None = None, *, console: Console) -> int:
    """Two tiny models made on the spot (or given), behind one port and routed by TargetModel, as an MME routes them."""
    from lmi_deploy import tiny_models
    from lmi_deploy.client import UrlClient, payload
    from lmi_deploy.multi_model import load_multi_model
    from lmi_deploy.multi_render import render_multi
    from lmi_deploy.runtime.multi_server import TARGET_MODEL_HEADER, router_for, serve_router

    console.say("demo: a tiny random T5 and Llama behind one port, routed by TargetModel, as an MME routes them")
    with console.step("make the two tiny models"):
        folders = folders or {kind: tiny_models.make(workdir / f"demo-{kind}", kind) for kind in ("t5", "llama")}
    multi = load_multi_model(
        {},
        {
            "deployment": "demo-tiny-mme",
            "multi_model": "mme",
            "engine": "accelerate",
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "models": [{"name": f"tiny-{kind}", "model_id": str(folder)} for kind, folder in folders.items()],
        },
        {"account": LOCAL_ACCOUNT, "region": LOCAL_REGION},
    )
    rendered = render_multi(multi, workdir / "model_code")
    router = router_for(multi, rendered, {f"tiny-{kind}": folder for kind, folder in folders.items()}).start()
    listening = _listen(console, router, serve_router, "load both behind {url}", "a demo model")
    if listening is None:
        return 1
    http, url = listening
    try:
        for model in rendered.models:
            client = UrlClient(url, headers={TARGET_MODEL_HEADER: model.target_model})
            answer = client.invoke(
                payload(["summarize: the quick brown fox"], {"max_new_tokens": 12, "do_sample": True, "seed": 0})
            )
            console.say(f"  {TARGET_MODEL_HEADER}: {model.target_model} -> {answer['outputs'][0]!r}  (random weights)")
    finally:
        http.shutdown()
    console.say(
        f"  handlers: {shown(rendered.directory)}/<model>/model.py; serve your own: lmi-deploy serve --config FILE"
    )
    return 0


def _listen(
    console: Console, server: Any, serve: Callable[[Any, str, int], Any], label: str, what: str
) -> tuple[Any, str] | None:
    """Serve ``server`` on a free local port and wait until it loads: its HTTP server and URL, or None (stopped, and
    said why) when a model fails to load."""
    from lmi_deploy.commands.local_aws import free_port

    port = free_port()
    http = serve(server, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        with console.step(label.format(url=url)):
            ready = server.wait_ready(timeout=300)
    except BaseException:
        http.shutdown()
        raise
    if not ready:
        http.shutdown()
        console.error(f"lmi-deploy: {what} failed to load: {server.failure}")
        return None
    return http, url


def local_endpoint_demo(workdir: Path, *, console: Console) -> int:
    """Serve the demo T5 (trained here on the seed's four tasks, cached) with the rendered Accelerate handler and send
    it the seed's request."""
    from lmi_deploy import demo_model
    from lmi_deploy.client import UrlClient, payload
    from lmi_deploy.commands.benchmark import PRESETS
    from lmi_deploy.render import render
    from lmi_deploy.runtime.server import ModelServer, serve

    console.say("demo: a tiny T5 taught here the seed's four tasks, served by the rendered Accelerate handler")
    folder = workdir / "demo-model"
    label = (
        f"reuse it from {shown(folder)} (trained by an earlier run)"
        if demo_model.is_cached(folder)
        else f"train it on {len(demo_model.TASKS)} examples (kept in {shown(folder)} for the next run)"
    )
    with console.step(label):
        model_dir = demo_model.make(folder)
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(model_dir),
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "demo-tiny-t5",
        },
        environment_defaults={"account": LOCAL_ACCOUNT, "region": LOCAL_REGION},
    )
    code = render(config, workdir / "model_code")
    server = ModelServer(code.directory, model_dir).start()
    listening = _listen(console, server, serve, "load it behind {url}/invocations", "the demo model")
    if listening is None:
        return 1
    http, url = listening
    try:
        request = payload(PRESETS["seed"], {"max_new_tokens": 24})
        answer = UrlClient(url).invoke(request)
        for prompt, output in zip(request["inputs"], answer["outputs"], strict=True):
            console.say(f"  {_shorten(prompt, 50):52} -> {output}")
    finally:
        http.shutdown()
    console.say(f"  handler: {shown(code.directory / 'model.py')}; serve your own: lmi-deploy serve --config FILE")
    return 0


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"
