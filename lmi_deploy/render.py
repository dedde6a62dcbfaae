"""Render a deployment's model code (serving.properties, model.py) and pack it into a deterministic tarball.

The only module that knows template file names. Decisions are made here, in Python, and passed to the templates
as values; the templates only lay them out.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import math
import os
import pprint
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from lmi_deploy import containers, identifiers, known_keys, mpi_mode, request_limits, warm_shapes
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.errors import ConfigError
from lmi_deploy.known_keys import TEMPLATES_DIR, handler_keys

SERVING_PROPERTIES = "serving.properties"
MODEL_PY = "model.py"
# lmi_deploy/handlers/, shipped beside model.py under this name (the tarball's folder is what is on sys.path)
HANDLERS_PACKAGE = "lmi_handlers"
_HANDLERS_DIR = Path(__file__).parent / "handlers"


def _check_literal(value: object) -> None:
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_literal(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_literal(key)
            _check_literal(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"internal: {value!r} has no Python literal")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ConfigError(f"internal: a {type(value).__name__} cannot be placed in generated code")


def python_literal(value: object) -> str:
    """``value`` as Python source that evaluates back to it: the only way a template puts a value into code.

    Strings, whole numbers, finite floats, booleans, None, and lists/tuples/dicts of them (``repr`` escapes quotes,
    backslashes, control characters and line separators); anything else is an internal error rather than code.
    Containers are wrapped at 80 columns so that the rendered module stays within a linter's line length.
    """
    _check_literal(value)
    if not isinstance(value, (list, tuple, dict)):
        return repr(value)  # one line, however long: a message stays greppable
    return pprint.pformat(value, width=80, sort_dicts=False)


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENVIRONMENT.filters["pyrepr"] = python_literal


@dataclass(frozen=True)
class RenderedCode:
    """What :func:`render` wrote: the folder of files and the tarball that ships them."""

    directory: Path
    files: tuple[str, ...]
    tarball: Path


def serving_properties(config: DeploymentConfig) -> list[tuple[str, str]]:
    """The serving.properties entries, in order. Keys and values exactly as DJL will read them.

    Every version rule lives in ``containers``: the weights key (s3url before 0.23), the handler module's name,
    rolling batch (never written as ``disable`` on 0.23-0.26, where the key's presence turns it on); what varies by
    engine (its length and batch keys, its partitioned checkpoint, its handler's options) the engine's module says
    (``lmi_deploy/engines/``).
    """
    spec = containers.ENGINES[config.engine]
    version = config.lmi_version
    resolved = config.resolved
    if handler_tensor_parallel(config):
        entries = [("engine", mpi_mode.MPI_ENGINE), *mpi_mode.server_entries(version)]
    else:
        entries = [("engine", containers.server_engine(config.engine, version))]
    entry_point = containers.entry_point(config.engine, version)
    if config.handler == "builtin" and entry_point:
        entries.append(("option.entryPoint", entry_point))
    entries += [
        (containers.weights_key(version), config.weights_s3_uri),
        ("option.tensor_parallel_degree", resolved.tensor_parallel_property),
        # Always explicit: code, container env and docs disagree on the default (240/1200/1800 s).
        ("option.model_loading_timeout", str(resolved.model_loading_timeout)),
    ]
    # lmi-deploy's handlers read option.dtype; a built-in one reads what its version reads (data_type on 0.19.0).
    dtype_key = "option.dtype" if config.handler == "custom" else containers.dtype_key(version)
    if dtype_key:
        entries.insert(-1, (dtype_key, resolved.dtype))
    if custom_template(config):
        # our handlers stop generating at this per-request deadline (DJL does not read the key)
        entries.append(("option.request_timeout", str(config.request_timeout_s)))
    entries += [(f"option.{name}", value) for name, value in handler_options(config).items()]
    if config.partitioned:
        entries += spec.partitioned_properties()
    if spec.rolling_batch:
        entries.append(("option.rolling_batch", spec.rolling_batch))
        if config.max_batch_size:
            entries.append(("option.max_rolling_batch_size", str(config.max_batch_size)))
    entries += spec.length_properties(
        resolved.max_sequence_length, config.max_batch_size, version, config.handler == "custom", known_keys.reads
    )
    entries += lora_properties(config)
    for key, _ in entries:
        if not (known_keys.reads(key, version) or (config.handler == "custom" and key in handler_keys(version))):
            raise ConfigError(f"internal: {key} is not read by LMI {version}")
    entries += sorted(config.extra_properties.items())  # checked by the registry (LMI808)
    for key, value in entries:
        check_line_value("serving.properties", key, value)
    return entries


def lora_properties(config: DeploymentConfig) -> list[tuple[str, str]]:
    """LoRA on, with the derived limits (lmi_deploy.adapters.plan); the adapters themselves are staged beside the
    weights (``adapters/<name>/``), where the server registers them at start."""
    if not config.lora_enabled:
        return []
    plan = config.lora_plan
    entries = [
        ("option.enable_lora", "true"),
        ("option.max_loras", str(plan.max_loras)),
        ("option.max_lora_rank", str(plan.max_lora_rank)),
    ]
    if plan.max_cpu_loras is not None:
        entries.append(("option.max_cpu_loras", str(plan.max_cpu_loras)))
    return entries


def check_line_value(where: str, key: str, value: str) -> None:
    """Refuse a value that would not read back as itself from a ``key=value`` line of serving.properties or an
    environment variable: line breaks and other control characters, '#' (a comment in properties files),
    backslashes (escapes), surrounding whitespace (dropped on reading)."""
    problem = identifiers.control_character_problem(value)
    if problem is None and ("#" in value or "\\" in value):
        problem = "holds '#' or a backslash, which a properties file reads as a comment or an escape"
    if problem is None and value != value.strip():
        problem = "starts or ends with whitespace, which is dropped on reading"
    if problem:
        raise ConfigError(f"{key}={value!r} cannot be written to {where}: it {problem}; fix the setting it comes from")


def handler_tensor_parallel(config: DeploymentConfig) -> bool:
    """Whether the rendered Accelerate handler runs tensor-parallel under ``engine=MPI`` (``lmi_deploy.mpi_mode``)."""
    tp = config.resolved.tensor_parallel_degree
    return mpi_mode.tensor_parallel_at(config.engine, config.handler, tp, config.lmi_version, config.facts)


def custom_template(config: DeploymentConfig) -> str | None:
    """The template of the rendered ``model.py``, or None where the engine's built-in handler serves."""
    template = containers.ENGINES[config.engine].custom_template
    return template if config.handler == "custom" and template else None


def handler_options(config: DeploymentConfig) -> dict[str, str]:
    """lmi-deploy's own handler's options (the engine's ``handler_options``), as serving.properties values."""
    options = containers.ENGINES[config.engine].handler_options
    if not options or config.handler != "custom":
        return {}
    values = {}
    for name, default in options.items():
        value = getattr(config, name)
        if value is None and name == "tp_all_reduce":  # one-shot sums are measured over NVLink only (2 x H200)
            value = default if config.instance.interconnect.name.startswith("NVLink") else "nccl"
        value = default if value is None else value
        values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    resolved = config.resolved
    values["warm_shapes"] = warm_shapes.property_value(
        warm_shapes.warm_shapes(resolved.max_batch_size, resolved.max_sequence_length)
    )
    return values


SAGEMAKER_MODEL_DIR = "/opt/ml/model"
# Names (never holds) the Hub token's secret; the rendered handler reads the secret at start.
HUB_TOKEN_SECRET_ENV = "HF_TOKEN_SECRET_ID"


def container_environment(config: DeploymentConfig) -> dict[str, str]:
    """The container's environment: empty when serving.properties ships (but for the id of the Hub token's secret
    that a rendered handler reads); the same settings as variables otherwise.

    With ``weights_delivery=sagemaker`` SageMaker copies the weights prefix to /opt/ml/model and no code tarball
    ships, so every serving.properties entry becomes ``OPTION_<KEY>`` (``engine`` as ``OPTION_ENGINE``, 0.27+;
    server keys as ``SERVING_<KEY>``) and ``HF_MODEL_ID`` names the local copy.
    """
    if config.weights_delivery == "container":
        environment = {HUB_TOKEN_SECRET_ENV: str(config.hf_token_secret)} if config.endpoint_reads_hub_token else {}
        for key, value in environment.items():
            check_line_value("the container environment", key, value)
        return environment
    environment = {"HF_MODEL_ID": SAGEMAKER_MODEL_DIR}
    for key, value in serving_properties(config):
        if key in ("option.model_id", "option.s3url"):
            continue
        if key == "engine":
            environment["OPTION_ENGINE"] = value
        elif key.startswith("option."):
            environment["OPTION_" + key.removeprefix("option.").upper()] = value
        else:
            environment["SERVING_" + key.upper()] = value
    return environment


def _render_template(name: str, config: DeploymentConfig, **values: object) -> str:
    try:
        return _ENVIRONMENT.get_template(name).render(**values)
    except jinja2.UndefinedError as error:
        raise ConfigError(f"template {name} for deployment {config.deployment!r}: {error.message}") from None


def partition_script(config: DeploymentConfig, **values: object) -> str:
    """The ahead-of-time partition script (see ``lmi_deploy.partition``)."""
    return _render_template("partition.py.j2", config, **values)


def render_files(config: DeploymentConfig) -> dict[str, str]:
    """File name -> content of the model code for this config."""
    check_line_value("the serving.properties header", "model_id", config.model_id)
    files = {
        SERVING_PROPERTIES: _render_template(
            "serving.properties.j2",
            config,
            entries=serving_properties(config),
            model_id=config.model_id,
            image_uri_tag=containers.image_tag(config.engine, config.lmi_version),
        )
    }
    template = custom_template(config)
    if template:
        parameters = containers.generation_parameters(config.engine, config.resolved_model_type)
        sequence = config.resolved.max_sequence_length
        options = handler_options(config)
        files[MODEL_PY] = _render_template(
            template,
            config,
            model_id=config.model_id,
            model_type=config.resolved_model_type,
            tensor_parallel_degree=config.resolved.tensor_parallel_degree,
            dtype=config.resolved.dtype,
            handler_options={k: v for k, v in options.items() if k != "warm_shapes"},
            warm_shapes=[shape for shape in options.get("warm_shapes", "").split(",") if shape],
            hub_token_secret_env=HUB_TOKEN_SECRET_ENV if config.endpoint_reads_hub_token else None,
            region=config.region,
            stream_refusal=config.streaming_refusal
            or (mpi_mode.STREAM_REFUSAL if handler_tensor_parallel(config) else None),
            parameters={k: list(v) for k, v in parameters.items()},
            bounds=request_limits.parameter_bounds(list(parameters), sequence),
            lowest_excluded=request_limits.lowest_excluded(list(parameters)),
            max_sequence_length=sequence,
            max_inputs=request_limits.MAX_INPUTS,
            chars_per_token=request_limits.CHARS_PER_TOKEN_CEILING,
            request_timeout=config.request_timeout_s,
        )
        files.update(handler_package())
    return files


def handler_package() -> dict[str, str]:
    """The modules of ``lmi_deploy/handlers/`` as tarball entries ``lmi_handlers/<name>.py``, in name order."""
    return {f"{HANDLERS_PACKAGE}/{path.name}": path.read_text() for path in sorted(_HANDLERS_DIR.glob("*.py"))}


def write_files(folder: Path, files: dict[str, str]) -> None:
    """Write ``files`` (names may hold one folder, as ``lmi_handlers/request.py``) under ``folder``."""
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)


def pack(files: dict[str, str], top: str) -> bytes:
    """A tar.gz of ``files`` under ``top/``, byte-for-byte identical for identical inputs.

    Sorted entries, fixed mtime/owner/mode, and a gzip header without timestamp or file name.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name].encode("utf-8")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS or file system cannot."""
    rename_exchange, at_fdcwd = 2, -100
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    return int(renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)) == 0


def replace_folder(staging: Path, target: Path) -> None:
    """Put a fully written ``staging`` folder in ``target``'s place, so that at every instant ``target`` is either the
    whole old folder or the whole new one (a kill mid-render never leaves it missing).

    Where the OS cannot swap two folders in one step, the old one is renamed aside first and the next render puts it
    back if a kill came between the two renames.
    """
    old = target.parent / f".{target.name}.old"
    if old.exists() and not target.exists():
        old.rename(target)  # an earlier render was killed between its two renames
    if not target.exists():
        staging.rename(target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
    else:
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render(config: DeploymentConfig, out_root: Path | str = "model_code") -> RenderedCode:
    """Write ``<out_root>/<deployment>/`` and ``<out_root>/<deployment>.tar.gz``.

    The folder is replaced as a whole (a stale model.py from an earlier ``handler=custom`` would otherwise be
    picked up by the container), and nothing half-written is ever left in place.
    """
    files = render_files(config)
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / config.deployment
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{config.deployment}."))
    try:
        write_files(staging, files)
        staging.chmod(0o755)
        tarball = root / f"{config.deployment}.tar.gz"
        _atomic_write(tarball, pack(files, config.deployment))
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RenderedCode(directory=target, files=tuple(sorted(files)), tarball=tarball)
