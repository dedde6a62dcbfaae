"""Where weights come from besides a local folder: a Hub snapshot at a pinned revision, and the Hub token."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmi_deploy.staging.errors import StagingError, client_error_code, explain
from lmi_deploy.staging.local import BIN_PATTERNS, SAFETENSORS_PATTERNS, SUPPORT_PATTERNS


def hub_allow_patterns(repo_files: Iterable[str]) -> list[str]:
    """The seed's allow-patterns for a Hub repo: support files plus safetensors, or .bin when it has no safetensors."""
    has_safetensors = any(f.endswith(".safetensors") for f in repo_files)
    return [*SUPPORT_PATTERNS, *(SAFETENSORS_PATTERNS if has_safetensors else BIN_PATTERNS)]


def download_from_hub(
    model_id: str,
    revision: str,
    token: str | None,
    cache_dir: str | None = None,
    patterns: list[str] | None = None,
) -> Path:
    """A Hub snapshot at a pinned revision with only what serving needs (``patterns``, default: a model's); errors
    say what to do."""
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise StagingError("huggingface_hub is not installed: pip install -r requirements.txt") from None
    try:
        files = HfApi(token=token).list_repo_files(model_id, revision=revision)
        path = snapshot_download(
            model_id,
            revision=revision,
            allow_patterns=patterns or hub_allow_patterns(files),
            token=token,
            cache_dir=cache_dir,
        )
    except HFValidationError:
        raise StagingError(
            f"{model_id!r} is neither a local model folder nor a Hub model id (org/name): check the path or the id"
        ) from None
    except GatedRepoError:
        raise StagingError(
            f"{model_id} is gated: accept its license on the Hub, then pass a token with access "
            "(HF_TOKEN, or --token-secret NAME in Secrets Manager)"
        ) from None
    except RevisionNotFoundError:
        raise StagingError(
            f"revision {revision!r} of {model_id} does not exist on the Hub: check the commit or branch"
        ) from None
    except RepositoryNotFoundError:
        raise StagingError(f"{model_id} does not exist on the Hub (or is private: pass a token)") from None
    except LocalEntryNotFoundError:
        raise StagingError(
            f"cannot reach the Hugging Face Hub for {model_id}; download it elsewhere and stage the "
            "local folder with --model PATH"
        ) from None
    except OSError as error:
        if error.errno == 28:
            raise explain(error, "", "") from None
        raise StagingError(f"downloading {model_id}: {error}") from None
    return Path(path)


def token_from(environ: dict[str, str], secrets: Any, secret_name: str | None) -> str | None:
    """The Hub token: from Secrets Manager when a secret is named, else HF_TOKEN. Never printed or written."""
    if secret_name:
        try:
            value = secrets.get_secret_value(SecretId=secret_name)["SecretString"]
        except Exception as error:
            code = client_error_code(error)
            raise StagingError(
                f"cannot read secret {secret_name!r} ({code or type(error).__name__}): check its name "
                "and that you may call secretsmanager:GetSecretValue on it"
            ) from None
        try:
            parsed = json.loads(value)
        except ValueError:
            return str(value).strip()
        if isinstance(parsed, dict):
            for key in ("token", "HF_TOKEN", "hf_token"):
                if key in parsed:
                    return str(parsed[key])
            raise StagingError(f"secret {secret_name!r} is JSON without a 'token' key")
        return str(parsed)
    return environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN") or None
