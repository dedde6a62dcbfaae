#!/usr/bin/env python3
"""Run a release's real djl_python beside lmi-deploy's runtime and print every difference (maintainers only).

    python scripts/check_parity.py --djl-serving PATH [--version X.Y.Z[=REF] ...] [--out docs/parity]

PATH is a djl-serving checkout (a work tree or a bare clone). For each release the script exports
``engines/python/setup`` at the ``X.Y.Z-dlc`` branch (the images are built from those; else the tag ``vX.Y.Z``),
installs that ``djl_python`` into a throwaway virtual environment, renders lmi-deploy's Accelerate handler for a
tiny T5 and a tiny Llama made on the spot, and sends the same requests (single, batched, streaming, empty body,
handler error) through the release's engine worker, driven over its socket as the Java server drives it, and
through lmi-deploy's runtime for that release; then the same with the parity probe, a handler that reports what it
is handed. Exit 1 when anything differs. It needs the checkout, so it never runs in CI; ``tests/test_versions.py``
pins the same behaviours with lmi-deploy's own runtime.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lmi_deploy import parity, tiny_models
from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime import PARITY_PROBE
from lmi_deploy.runtime.versions import Release

DEFAULT_VERSIONS = ("0.21.0", "0.24.0", "0.27.0", "0.33.0", "0.36.0")
PROMPT = "translate English to German: the house is wonderful"


def rendered_accelerate(version: str, weights: Path, out: Path) -> Path:
    """lmi-deploy's Accelerate handler for ``weights`` at this release, as ``render`` writes it."""
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(weights),
            "lmi_version": version,
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": f"parity-{weights.name}",
        }
    )
    code = render(config, out).directory
    with (code / "serving.properties").open("a") as properties:
        properties.write(parity.BATCHING)
    return code


def check_release(
    repo: Path, version: str, ref: str | None, work: Path, local_version: str | None = None
) -> tuple[list[str], int]:
    """The report lines for one release and how many differences it found."""
    release = Release(version)
    local = Release(local_version) if local_version else None
    ref = ref or parity.resolve_ref(repo, version)
    installed = parity.install_djl_python(repo, ref, work / "install")
    outcomes: list[parity.Outcome] = []
    for kind in ("t5", "llama"):
        weights = tiny_models.make(work / "models" / kind, kind)
        code = rendered_accelerate(version, weights, work / "code")
        cases = parity.handler_cases(PROMPT)
        outcomes += parity.compare(f"accel-{kind}", code, weights, release, installed, cases, local)
    probe = parity.model_code_for(
        work / "probe", PARITY_PROBE, "engine=Python\noption.dtype=fp32\noption.model_loading_timeout=60\n"
    )
    outcomes += parity.compare("probe", probe, probe, release, installed, parity.probe_cases(), local)
    return parity.report(outcomes, release, ref, local), sum(len(o.differences) for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    """Print each release's comparison (and write it under --out); 1 if anything differs, 2 on a bad argument."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--djl-serving", required=True, type=Path, help="a djl-serving checkout or bare clone")
    parser.add_argument("--version", action="append", help="X.Y.Z or X.Y.Z=REF (repeatable; default: five releases)")
    parser.add_argument("--out", type=Path, help="also write <out>/<version>.txt")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (engine logs, venvs)")
    parser.add_argument(
        "--local-version",
        help="run lmi-deploy's runtime as this release instead (shows what the per-release table changes)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not (args.djl_serving / "engines").is_dir() and not (args.djl_serving / "HEAD").is_file():
        print(f"check_parity: {args.djl_serving} is not a djl-serving checkout", file=sys.stderr)
        return 2
    differences = 0
    for spec in args.version or DEFAULT_VERSIONS:
        version, _, ref = spec.partition("=")
        work = Path(tempfile.mkdtemp(prefix=f"parity-{version}-"))
        try:
            lines, found = check_release(args.djl_serving, version, ref or None, work, args.local_version)
        except (ValueError, RuntimeError, OSError) as error:
            print(f"check_parity: {version}: {error}", file=sys.stderr)
            return 2
        finally:
            if not args.keep:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
        differences += found
        print("\n".join(lines), flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{version}.txt").write_text("\n".join(lines) + "\n")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
