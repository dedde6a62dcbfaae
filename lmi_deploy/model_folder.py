"""Reading a model folder for staging: every file under it, nothing from elsewhere, nothing skipped in silence.

A link that leads out of the folder (out of the Hugging Face cache's repository folder for a Hub download, whose
snapshot files are links into ``blobs/``) is refused, so staging never uploads ``/etc/shadow`` because a folder held
a link named ``tokenizer.json``. A subfolder or file that cannot be read fails the run: a staging that silently left
one out would write a manifest claiming a complete model.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmi_deploy.errors import ConfigError


class FolderError(ConfigError):
    """The model folder cannot be staged as it is; the message names the file and says what to do."""


def hub_cache_root(folder: Path) -> Path:
    """Where the files of a model folder may lead: for a Hub snapshot (``<repo>/snapshots/<revision>/``, its files
    links into ``<repo>/blobs/``) its repository folder; for any other folder, the folder itself."""
    repo = folder.parent.parent
    return repo if folder.parent.name == "snapshots" and (repo / "blobs").is_dir() else folder


def list_files(folder: Path, within: Path | None = None) -> list[str]:
    """Every non-hidden file under ``folder`` (relative, POSIX), following links that stay inside ``within``.

    ``within`` (default: the folder) bounds where a link to a folder may lead; a link that leads elsewhere, or a
    subfolder that cannot be listed, is a FolderError.
    """
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder: pass a model folder (config.json, tokenizer, weights)")
    root = (within or folder).resolve()

    def unreadable(error: OSError) -> None:
        raise FolderError(_unreadable_message(folder, Path(error.filename or folder), error.strerror))

    names: list[str] = []
    seen: set[Path] = set()
    for current, subfolders, files in os.walk(folder, onerror=unreadable, followlinks=True):
        here = Path(current)
        real = here.resolve()
        if not real.is_relative_to(root):
            raise FolderError(
                f"{here.relative_to(folder).as_posix()} in {folder} is a link to {real}, outside {root}: "
                "staging uploads only the model folder's own files; copy what it needs into the folder"
            )
        if real in seen:  # a link back into the folder: its files were listed under their own path
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        names.extend((here / name).relative_to(folder).as_posix() for name in files if not name.startswith("."))
    return sorted(names)


def check_files(folder: Path, names: list[str], within: Path | None = None) -> None:
    """Each of ``names`` is a readable regular file that is, or whose link leads, inside ``within`` (default:
    ``folder``); otherwise a FolderError naming it."""
    root = (within or folder).resolve()
    for name in names:
        path = folder / name
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise FolderError(f"{name} in {folder} is a broken link: download or copy the model again") from None
        if not real.is_relative_to(root):
            raise FolderError(
                f"{name} in {folder} is a link to {real}, outside {root}: staging uploads only the model folder's "
                "own files; replace the link with the file itself"
            )
        if not real.is_file():
            raise FolderError(f"{name} in {folder} is not a regular file ({real}): replace it with the file")
        if not os.access(real, os.R_OK):
            raise FolderError(_unreadable_message(folder, path, "Permission denied"))


def _unreadable_message(folder: Path, path: Path, reason: str | None) -> str:
    return (
        f"cannot read {path} ({reason or 'unreadable'}): make the model folder readable "
        f"(chmod -R u+rX {folder}) or move that out of it, then run again"
    )
