"""The local side of staging: which files of a model folder to stage, and each one's full-object CRC64NVME."""

from __future__ import annotations

import base64
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmi_deploy import model_folder
from lmi_deploy.staging.errors import StagingError

MiB = 1024 * 1024
CHUNK = 8 * MiB  # read size while checksumming
HASH_THREADS = max(2, min(8, os.cpu_count() or 2))  # files checksummed at once

# What a served model needs (the seed's allow-patterns): config, tokenizer, generation config, and the weights.
SUPPORT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "vocab*",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "added_tokens.json",
    "preprocessor_config.json",
    "chat_template*",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class LocalFile:
    relative: str
    path: Path
    size: int
    crc64nvme: str  # base64 of the whole file's CRC64NVME (8 bytes, big-endian), as S3 reports it


def select_files(folder: Path, within: Path | None = None) -> list[str]:
    """Files of a model folder to stage: config, tokenizer and weights; safetensors win over .bin when both exist.

    Links may lead only inside ``within`` (default: the folder; for a Hub snapshot its cache folder); a link out of
    it, or anything unreadable, is an error naming the file (model_folder).
    """
    names = model_folder.list_files(folder, within)
    basenames = {name: name.rsplit("/", 1)[-1] for name in names}
    has_safetensors = any(fnmatch.fnmatch(b, "*.safetensors") for b in basenames.values())
    weights = SAFETENSORS_PATTERNS if has_safetensors else BIN_PATTERNS
    chosen = [n for n in names if any(fnmatch.fnmatch(basenames[n], p) for p in (*SUPPORT_PATTERNS, *weights))]
    if not any(fnmatch.fnmatch(basenames[n], p) for n in chosen for p in weights if "index" not in p):
        raise StagingError(f"{folder} holds no weights (*.safetensors or pytorch_model*.bin); nothing to stage")
    if "config.json" not in chosen:
        raise StagingError(f"{folder} has no config.json at its top; is it a Hugging Face model folder?")
    model_folder.check_files(folder, chosen, within)
    return chosen


def hash_file(path: Path, relative: str, progress: Callable[[int], None] | None = None) -> LocalFile:
    """The file's full-object CRC64NVME, in one read through a reused buffer (the CRT releases the GIL meanwhile)."""
    try:
        from awscrt import checksums
    except ImportError:
        raise StagingError("staging needs the AWS CRT for its checksums: pip install -r requirements.txt") from None
    crc = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            crc = checksums.crc64nvme(view[:count], crc)
            if progress:
                progress(count)
    return LocalFile(relative, path, path.stat().st_size, base64.b64encode(crc.to_bytes(8, "big")).decode())
