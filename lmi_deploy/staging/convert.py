"""Converting a model's pytorch_model*.bin shards to .safetensors before staging (tensors unchanged)."""

from __future__ import annotations

import errno
import fnmatch
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmi_deploy.staging.errors import StagingError
from lmi_deploy.staging.local import select_files


def convert_bin_to_safetensors(folder: Path, out: Path, within: Path | None = None) -> list[str]:
    """Write ``out`` as ``folder`` with every pytorch_model*.bin shard converted to .safetensors (tensors unchanged).

    Tensors that share storage (tied weights) are cloned, as safetensors stores no aliases. Each file is written
    beside its name and renamed when complete; a write that fails (a full disk) removes its half-written file and is
    one StagingError. Returns the files of ``out`` to stage.
    """
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise StagingError("--convert needs torch and safetensors: pip install torch safetensors") from None
    names = select_files(folder, within)
    out.mkdir(parents=True, exist_ok=True)
    converted: dict[str, str] = {}
    for name in names:
        try:
            _convert_one(folder / name, out, name, converted, torch.load, save_file)
        except OSError as error:
            full = error.errno == errno.ENOSPC
            raise StagingError(
                f"{'disk full' if full else error.strerror} while converting {name} into {out}: "
                f"{'free space there or set TMPDIR to a larger disk' if full else 'check that folder'}, then run "
                "again (the half-written file was removed)"
            ) from None
    return select_files(out)


def _convert_one(source: Path, out: Path, name: str, converted: dict[str, str], load: Any, save_file: Any) -> None:
    """One file of the model into ``out``: a .bin shard converted (``converted`` maps old to new shard names, for
    the index after it), the .bin index rewritten for the new names, any other file copied."""
    base = name.rsplit("/", 1)[-1]
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    if fnmatch.fnmatch(base, "pytorch_model*.bin"):
        state = load(source, map_location="cpu", weights_only=True)
        tensors = {key: value.detach().clone().contiguous() for key, value in state.items()}
        target = name[: -len(".bin")].replace("pytorch_model", "model", 1) + ".safetensors"
        _write_whole(out / target, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        converted[base] = target.rsplit("/", 1)[-1]
    elif base == "pytorch_model.bin.index.json":
        index = json.loads(source.read_text())
        index["weight_map"] = {
            k: converted.get(v, v.replace("pytorch_model", "model").replace(".bin", ".safetensors"))
            for k, v in index.get("weight_map", {}).items()
        }
        target = name.replace("pytorch_model.bin.index.json", "model.safetensors.index.json")
        _write_whole(out / target, lambda tmp: tmp.write_text(json.dumps(index, indent=2)))
    else:
        _write_whole(out / name, lambda tmp: tmp.write_bytes(source.read_bytes()))


def _write_whole(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a file beside ``target`` and rename it to ``target`` once complete; on failure remove it."""
    partial = target.with_name(target.name + ".partial")
    try:
        write(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
