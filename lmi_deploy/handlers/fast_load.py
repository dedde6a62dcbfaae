"""option.fast_load: safetensors shards straight into device memory.

Each shard is read once, in chunks through two pinned buffers, into one device buffer; every tensor is a view into
it (converted only where the model's dtype differs). No CPU copy of the model, no per-tensor copies, shards in
parallel. Anything this path cannot do (a Hub id, .bin weights, several GPUs) is left to from_pretrained.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from .hf_generate import DTYPE_ARGUMENT

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_CHUNK_BYTES = 64 << 20


class CheckpointError(Exception):
    """The weights folder does not hold the checkpoint its index describes: serving it would be the wrong model."""


def safetensors_files(location: str) -> list[str]:
    """The checkpoint's files: the shards model.safetensors.index.json names, else model.safetensors; never a glob,
    so a file an earlier staging left beside them is not read. A shard the index names but the folder lacks is a
    CheckpointError."""

    if not os.path.isdir(location):
        return []
    index_path = os.path.join(location, "model.safetensors.index.json")
    if not os.path.isfile(index_path):
        single = os.path.join(location, "model.safetensors")
        return [single] if os.path.isfile(single) else []
    return _indexed_shards(location, index_path)


def _indexed_shards(location: str, index_path: str) -> list[str]:

    with open(index_path) as handle:
        index = json.load(handle)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    shards = sorted({str(name) for name in weight_map.values()}) if isinstance(weight_map, dict) else []
    redo = "stage the model again (scripts/stage_model.py), then restart"
    if not shards:
        raise CheckpointError(f"{index_path} has no weight_map naming the shards: {redo}")
    outside = [name for name in shards if os.path.basename(name) != name or name in (".", "..")]
    if outside:
        raise CheckpointError(f"{index_path} names {', '.join(outside)}, not files of {location}: {redo}")
    missing = [name for name in shards if not os.path.isfile(os.path.join(location, name))]
    if missing:
        raise CheckpointError(f"{index_path} names {', '.join(missing)}, missing from {location}: {redo}")
    return [os.path.join(location, name) for name in shards]


def stale_single_file(location: str) -> bool:
    """Whether model.safetensors lies beside an index that does not name it: a file of an earlier staging, which
    from_pretrained would load instead of the shards."""

    single = os.path.join(location, "model.safetensors")
    if not (os.path.isfile(single) and os.path.isfile(os.path.join(location, "model.safetensors.index.json"))):
        return False
    return single not in safetensors_files(location)


def _fill(handle: Any, view: memoryview, early: int) -> None:
    """Read exactly ``len(view)`` bytes into ``view``; OSError saying how many were missing (``early`` beyond it)."""
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])
        if not got:
            raise OSError(f"{handle.name} ended {early + len(view) - filled} bytes early")
        filled += got


def _read_into(handle: Any, target: Any, device: Any) -> None:
    """Fill the uint8 tensor ``target`` from the open file, through pinned chunks when it lives on a GPU."""
    total = target.numel()
    if device.type != "cuda":
        _fill(handle, memoryview(target.numpy()), 0)
        return
    stream = torch.cuda.Stream(device)
    buffers = [torch.empty(min(_CHUNK_BYTES, total), dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    copied: list[Any] = [None, None]
    done = 0
    index = 0
    while done < total:
        slot = index % 2
        if copied[slot] is not None:
            copied[slot].synchronize()  # the copy out of this buffer has finished; it may be refilled
        size = min(_CHUNK_BYTES, total - done)
        _fill(handle, memoryview(buffers[slot].numpy())[:size], total - done - size)
        with torch.cuda.stream(stream):
            target[done : done + size].copy_(buffers[slot][:size], non_blocking=True)
            copied[slot] = torch.cuda.Event()
            copied[slot].record(stream)
        done += size
        index += 1
    stream.synchronize()


def read_safetensors(path: str, device: Any) -> dict[str, Any]:
    """Every tensor of one .safetensors file, on ``device``, as views into one buffer read in a single pass."""
    import struct

    with open(path, "rb", buffering=0) as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        size = os.path.getsize(path) - 8 - header_size
        needed = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if size < needed:
            raise OSError(f"{path} is {needed - size} bytes shorter than its header says: an interrupted copy?")
        data = torch.empty(size, dtype=torch.uint8, device=device)
        _read_into(handle, data, device)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        raw = data[begin:end]
        if begin % torch.empty(0, dtype=dtype).element_size():
            raw = raw.clone()  # an unaligned offset cannot be viewed as a wider type
        tensors[name] = raw.view(dtype).view(info["shape"])
    return tensors


class _ParametersOnMeta:
    """Build a model whose parameters take no memory (their storage comes from the checkpoint); buffers stay real."""

    def __enter__(self) -> None:
        self.original = torch.nn.Module.register_parameter
        original = self.original

        def register(module: Any, name: str, param: Any) -> None:
            original(module, name, param)
            if param is not None and param.device.type != "meta":
                module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=False)

        torch.nn.Module.register_parameter = register

    def __exit__(self, *exc: Any) -> None:
        torch.nn.Module.register_parameter = self.original


def tie_weights_not_loaded(model: Any, loaded: set[str]) -> None:
    """``model.tie_weights()``, as from_pretrained ties, but a parameter the checkpoint gave (``loaded``) keeps its
    own values where tying would replace them with different ones. transformers 5's T5Config declares every T5 head
    tied to the input embeddings (``tie_word_embeddings`` forced to True), so a bare ``tie_weights()`` would swap
    flan-t5's own ``lm_head`` for ``shared``: other answers than from_pretrained, which keeps a pair whose checkpoint
    values differ."""
    given = {name: param for name, param in model.named_parameters(remove_duplicate=False) if name in loaded}
    model.tie_weights()
    for name, param in given.items():
        now = model.get_parameter(name)
        if now is not param and not (now.shape == param.shape and torch.equal(now, param)):
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner), leaf, param)


def load_direct(location: str, model_class: Any, config: Any, dtype: Any, device: Any) -> Any:
    """The model with its weights read straight to ``device``, or None where this path does not apply."""
    from concurrent.futures import ThreadPoolExecutor

    files = safetensors_files(location)
    if not files:
        return None
    with _ParametersOnMeta():
        model = model_class.from_config(config, **{DTYPE_ARGUMENT: dtype})
    expected = dict(model.named_parameters(remove_duplicate=False))
    state: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=min(len(files), 8)) as pool:
        for tensors in pool.map(lambda path: read_safetensors(path, device), files):
            state.update(tensors)
    for name, tensor in list(state.items()):
        target = expected.get(name)
        if target is not None and tensor.dtype != target.dtype:
            state[name] = tensor.to(target.dtype)
    model.load_state_dict(state, strict=False, assign=True)
    tie_weights_not_loaded(model, set(state))
    missing = [name for name, param in model.named_parameters() if param.device.type == "meta"]
    if missing:
        logging.warning("fast_load: %s... are not in the checkpoint; using from_pretrained", missing[:3])
        return None
    return model.to(device).eval()  # buffers (built on the CPU) follow the weights


def fast_load_device(location: str) -> Any:
    """Where option.fast_load puts the weights: the only GPU, the first when they fit it, the CPU without GPUs."""
    files = safetensors_files(location)
    if not files:
        return None
    if not torch.cuda.is_available():
        return torch.device("cpu")
    size = sum(os.path.getsize(path) for path in files)
    free = torch.cuda.mem_get_info(0)[0]
    # one GPU decodes without cross-device hops; keep a fifth free for activations and the KV cache
    return torch.device("cuda", 0) if size < 0.8 * free else None
