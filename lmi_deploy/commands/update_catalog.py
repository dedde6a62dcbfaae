#!/usr/bin/env python3
"""Regenerate lmi-deploy's key catalog from the djl-serving source (maintainers only; needs no network).

    python scripts/update_catalog.py --djl-serving PATH [--versions 0.27.0 0.28.0 ...] [--output FILE]

PATH is a checkout or a bare clone of deepjavalibrary/djl-serving. For every LMI version lmi-deploy supports, the
release the SageMaker images are built from is read: the ``X.Y.Z-lmiN-dlc`` branch matching the image tag, else
``X.Y.Z-dlc``, else the ``vX.Y.Z`` tag; a version with none of them is read from the default branch and marked
``exact: false``. The keys each release reads and the values its enums allow (see ``catalog_extract.py``)
go to ``lmi_deploy/data/lmi_keys.json``, with each release's ref and commit, and each properties class's own keys and
values (``class_values``: an empty list is a key the class takes any value for). The output is deterministic: running
it twice on the same checkout gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmi_deploy import containers
from lmi_deploy.commands.catalog_extract import PASSTHROUGH, Extraction, extract, is_source
from lmi_deploy.key_catalog import DATA_FILE


class CatalogError(Exception):
    """A problem with the checkout or the arguments, reported as one line."""


class Checkout:
    """Read-only access to a djl-serving git directory (work tree or bare)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists() or self._git("rev-parse", "--git-dir", check=False) is None:
            raise CatalogError(f"--djl-serving {path}: not a git checkout or bare clone of djl-serving")

    def _git(self, *args: str, check: bool = True) -> str | None:
        done = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if check:
                raise CatalogError(f"git {' '.join(args)} failed in {self.path}: {done.stderr.strip()}")
            return None
        return done.stdout

    def commit(self, ref: str) -> str | None:
        """The commit a ref names (a branch, a remote branch or a tag), or None."""
        for full in (f"refs/heads/{ref}", f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
            out = self._git("rev-parse", "--verify", "--quiet", f"{full}^{{commit}}", check=False)
            if out:
                return out.strip()
        return None

    def default_branch(self) -> str:
        out = self._git("symbolic-ref", "--short", "HEAD", check=False)
        return out.strip() if out else "HEAD"

    def text(self, commit: str, path: str) -> str | None:
        """One file's text at a commit; None when the commit has no such file."""
        return self._git("show", f"{commit}:{path}", check=False)

    def source_files(self, commit: str) -> dict[str, str]:
        """Text of the Java and Python sources the extractor reads, at one commit (one git process)."""
        listing = self._git("ls-tree", "-r", "--name-only", commit) or ""
        paths = [p for p in listing.splitlines() if is_source(p)]
        request = "".join(f"{commit}:{p}\n" for p in paths).encode()
        done = subprocess.run(
            ["git", "-C", str(self.path), "cat-file", "--batch"], input=request, capture_output=True, check=True
        )
        return dict(zip(paths, _split_batch(done.stdout), strict=True))


def _split_batch(raw: bytes) -> list[str]:
    """Blob texts out of ``git cat-file --batch`` output (header line, body, newline per object)."""
    texts, at = [], 0
    while at < len(raw):
        end = raw.index(b"\n", at)
        size = int(raw[at:end].split()[2])
        texts.append(raw[end + 1 : end + 1 + size].decode("utf-8", errors="replace"))
        at = end + 1 + size + 1
    return texts


def candidate_refs(version: str) -> list[str]:
    """Refs the SageMaker images of a version are built from, best first."""
    refs = []
    for engine in containers.engines_in(version):
        if match := re.search(r"-lmi(\d+)\.", containers.image_tag(engine, version)):
            refs.append(f"{version}-lmi{match.group(1)}-dlc")
    return [*dict.fromkeys(refs), f"{version}-dlc", f"v{version}"]


def locate(checkout: Checkout, version: str) -> tuple[str, str, bool]:
    """(ref, commit, exact) of the release a version's images are built from."""
    for ref in candidate_refs(version):
        if commit := checkout.commit(ref):
            return ref, commit, True
    ref = checkout.default_branch()
    commit = checkout.commit(ref)
    if commit is None:
        raise CatalogError(f"{checkout.path}: no {', '.join(candidate_refs(version))} and no default branch")
    return ref, commit, False


def carry_passthrough(extractions: list[Extraction]) -> None:
    """A properties class that passes unknown keys on to its engine (vLLM's engine args) still delivers the keys
    it declared in earlier releases: count them as read, ``passthrough``, oldest release first."""
    declared: dict[str, set[str]] = {}
    for found in extractions:
        for name in sorted(found.extra_keys_to):
            for key in sorted(declared.get(name, set()) - set(found.keys)):
                found.add(key, PASSTHROUGH)
        for name, keys in found.class_keys.items():
            declared.setdefault(name, set()).update(keys)


def build(checkout: Checkout, versions: Sequence[str]) -> dict[str, Any]:
    ordered = sorted(versions, key=containers.version_key)
    located = [locate(checkout, version) for version in ordered]
    extractions = [extract(checkout.source_files(commit)) for _, commit, _ in located]
    carry_passthrough(extractions)
    releases = {}
    for version, (ref, commit, exact), found in zip(ordered, located, extractions, strict=True):
        releases[version] = {
            "ref": ref,
            "commit": commit,
            "exact": exact,
            "keys": {key: sorted(where) for key, where in sorted(found.keys.items())},
            "values": {key: sorted(values) for key, values in sorted(found.values.items())},
            "extra_keys_to": sorted(found.extra_keys_to),
            "class_values": {
                name: {key: sorted(values) for key, values in sorted(fields.items())}
                for name, fields in sorted(found.class_values.items())
            },
        }
        print(f"{version}: {ref} {commit[:12]} {len(found.keys)} keys", file=sys.stderr)
    return {
        "source": "https://github.com/deepjavalibrary/djl-serving",
        "generated_by": "scripts/update_catalog.py",
        "releases": releases,
    }


def write(catalog: dict[str, Any], output: Path) -> None:
    """Write atomically: a failed run never leaves a half-written catalog."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".json.partial")
    partial.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n")
    partial.replace(output)


def add_release_arguments(parser: argparse.ArgumentParser, output: Path, what: str) -> None:
    """The arguments every generator from djl-serving's releases takes."""
    parser.add_argument("--djl-serving", required=True, type=Path, help="djl-serving checkout or bare clone")
    parser.add_argument("--versions", nargs="+", help="LMI versions to read (default: all lmi-deploy supports)")
    parser.add_argument("--output", type=Path, default=output, help=f"{what} file (default {output})")


def generate(make: Callable[[Sequence[str]], dict[str, Any]], args: argparse.Namespace) -> int:
    """Build a table for the releases ``args`` names and write it; exit 2 with one line on a bad checkout or input."""
    try:
        for version in args.versions or []:
            if not re.fullmatch(r"\d+\.\d+\.\d+", version):
                raise CatalogError(f"--versions {version!r}: expected X.Y.Z, e.g. 0.28.0")
        table = make(args.versions or containers.all_versions())
    except CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write(table, args.output)
    print(f"wrote {args.output} ({len(table['releases'])} releases)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Read every release from the checkout and write the catalog; exit 2 with one line on a bad checkout."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_release_arguments(parser, DATA_FILE, "catalog")
    args = parser.parse_args(argv)
    return generate(lambda versions: build(Checkout(args.djl_serving), versions), args)


if __name__ == "__main__":
    sys.exit(main())
