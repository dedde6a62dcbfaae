"""Staging weights in S3 (moto): fresh, idempotent, repairing, resumable; conversion; errors; both delivery modes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from moto import mock_aws

from lmi_deploy import s3_prefix, staging
from lmi_deploy.commands import stage_model

BUCKET = "weights-bucket"
PREFIX = "models/acme/tiny/abc123/"
PART = 5 * 1024 * 1024  # S3's smallest part; production uses staging.PART_SIZE (16 MiB)


@pytest.fixture
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "model.safetensors.index.json").write_text("{}")
    # one shard large enough for a multipart upload (2 parts of PART), one small
    (folder / "model-00001-of-00002.safetensors").write_bytes(os.urandom(PART + 1024 * 1024))
    (folder / "model-00002-of-00002.safetensors").write_bytes(os.urandom(1024))
    (folder / "pytorch_model.bin").write_bytes(b"old format, not staged when safetensors exist")
    (folder / "README.md").write_text("not needed to serve")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("")
    return folder


def manifest(s3: Any) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "manifest.json")["Body"].read())


def test_select_files_prefers_safetensors_and_skips_the_rest(model_dir: Path) -> None:
    assert staging.select_files(model_dir) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    for name in (
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ):
        (model_dir / name).unlink()
    assert "pytorch_model.bin" in staging.select_files(model_dir)
    assert staging.hub_allow_patterns(["a.safetensors", "pytorch_model.bin"])[-2:] == list(staging.SAFETENSORS_PATTERNS)


def test_fresh_then_idempotent_then_repairs_corruption_and_loss(s3: Any, model_dir: Path) -> None:
    first = staging.stage(
        s3, model_dir, BUCKET, PREFIX, part_size=PART, show_progress=False, description={"model": "acme/tiny"}
    )
    assert len(first.uploaded) == 6 and first.skipped == [] and first.repaired == []
    listed = manifest(s3)
    assert listed["model"] == "acme/tiny" and set(listed["files"]) == set(staging.select_files(model_dir))
    big = listed["files"]["model-00001-of-00002.safetensors"]
    local = staging.hash_file(model_dir / "model-00001-of-00002.safetensors", "x")
    assert big == {"size": PART + 1024 * 1024, "crc64nvme": local.crc64nvme}
    head = s3.head_object(Bucket=BUCKET, Key=PREFIX + "model-00001-of-00002.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-2"')  # multipart: S3 computed the full-object CRC64NVME of the assembled parts
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (local.crc64nvme, "FULL_OBJECT")

    again = staging.stage(s3, model_dir, BUCKET, PREFIX, part_size=PART, show_progress=False)
    assert again.uploaded == [] and again.repaired == [] and len(again.skipped) == 6

    s3.put_object(Bucket=BUCKET, Key=PREFIX + "tokenizer.json", Body=b'{"corrupted": true}')
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "model-00002-of-00002.safetensors")
    fixed = staging.stage(s3, model_dir, BUCKET, PREFIX, part_size=PART, show_progress=False)
    assert fixed.repaired == ["tokenizer.json"] and fixed.uploaded == ["model-00002-of-00002.safetensors"]
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "tokenizer.json")["Body"].read() == b"{}"
    assert manifest(s3)["files"] == listed["files"]


class _SseKmsEtags:
    """The client as S3 behaves under SSE-KMS: ETags are not MD5s of the bytes (moto keeps the MD5)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        head: dict[str, Any] = self._client.head_object(**kwargs)
        if str(head.get("ServerSideEncryption", "")).startswith("aws:kms"):
            head["ETag"] = '"0123456789abcdef0123456789abcdef"'
        return head


def test_sse_kms_bucket_is_verified_by_the_same_checksums(s3: Any, model_dir: Path) -> None:
    key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="kms-bucket")
    s3.put_bucket_encryption(
        Bucket="kms-bucket",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]
        },
    )
    client = _SseKmsEtags(s3)
    first = staging.stage(client, model_dir, "kms-bucket", PREFIX, part_size=PART, show_progress=False)
    assert len(first.uploaded) == 6 and first.repaired == []  # verified although no ETag is an MD5
    big = "model-00001-of-00002.safetensors"
    local = staging.hash_file(model_dir / big, big)
    head = s3.head_object(Bucket="kms-bucket", Key=PREFIX + big, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (local.crc64nvme, "FULL_OBJECT")

    again = staging.stage(client, model_dir, "kms-bucket", PREFIX, part_size=PART, show_progress=False)
    assert again.uploaded == [] and again.repaired == [] and len(again.skipped) == 6

    # same size, other bytes, with S3's own CRC64NVME of them: the checksum tells
    original = (model_dir / "tokenizer.json").read_bytes()
    s3.put_object(Bucket="kms-bucket", Key=PREFIX + "tokenizer.json", Body=b"[]", ChecksumAlgorithm="CRC64NVME")
    # an object without a CRC64NVME (staged by another tool, or an earlier lmi-deploy) has nothing to verify by: resent
    s3.put_object(
        Bucket="kms-bucket",
        Key=PREFIX + "config.json",
        Body=(model_dir / "config.json").read_bytes(),
        ChecksumAlgorithm="CRC32",
    )
    fixed = staging.stage(client, model_dir, "kms-bucket", PREFIX, part_size=PART, show_progress=False)
    assert fixed.repaired == ["config.json", "tokenizer.json"] and fixed.uploaded == []
    assert s3.get_object(Bucket="kms-bucket", Key=PREFIX + "tokenizer.json")["Body"].read() == original


def test_interrupted_run_leaves_no_manifest_and_resumes(s3: Any, model_dir: Path) -> None:
    class Killed(Exception):
        pass

    verified: list[str] = []

    def die_after_first(item: staging.LocalFile) -> None:
        verified.append(item.relative)
        raise Killed("killed")

    with pytest.raises(staging.StagingError, match="Killed"):
        staging.stage(s3, model_dir, BUCKET, PREFIX, part_size=PART, show_progress=False, on_verified=die_after_first)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "manifest.json")
    resumed = staging.stage(s3, model_dir, BUCKET, PREFIX, part_size=PART, show_progress=False)
    assert verified[0] in resumed.skipped  # what finished before the kill is not sent again
    assert len(resumed.skipped) + len(resumed.uploaded) == 6 and resumed.repaired == []
    assert set(manifest(s3)["files"]) == set(staging.select_files(model_dir))


def test_bin_to_safetensors_round_trips_exactly(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    torch.manual_seed(0)
    embedding = torch.randn(64, 16)
    shard1 = {"wte.weight": embedding, "lm_head.weight": embedding, "h.0.attn.bias": torch.randn(16).to(torch.bfloat16)}
    shard2 = {"h.1.mlp.weight": torch.randn(16, 32).to(torch.float16), "h.1.ln.weight": torch.ones(16)}
    torch.save(shard1, folder / "pytorch_model-00001-of-00002.bin")
    torch.save(shard2, folder / "pytorch_model-00002-of-00002.bin")
    index = {
        "metadata": {"total_size": 1},
        "weight_map": {
            **dict.fromkeys(shard1, "pytorch_model-00001-of-00002.bin"),
            **dict.fromkeys(shard2, "pytorch_model-00002-of-00002.bin"),
        },
    }
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))

    out = tmp_path / "converted"
    files = staging.convert_bin_to_safetensors(folder, out)
    assert files == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    for shard, name in ((shard1, "model-00001-of-00002.safetensors"), (shard2, "model-00002-of-00002.safetensors")):
        loaded = load_file(out / name)
        assert set(loaded) == set(shard)
        for key, tensor in shard.items():
            assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    new_index = json.loads((out / "model.safetensors.index.json").read_text())
    assert new_index["weight_map"]["h.1.ln.weight"] == "model-00002-of-00002.safetensors"


def test_errors_say_what_to_do(s3: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(staging.StagingError, match=r"bucket nope-bucket does not exist: deploy the artifacts stack"):
        staging.stage(s3, model_dir, "nope-bucket", PREFIX, part_size=PART, show_progress=False)
    assert "no AWS credentials found" in str(staging.explain(NoCredentialsError(), BUCKET, PREFIX))
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    assert f"access denied to s3://{BUCKET}/{PREFIX} (AccessDenied)" in str(staging.explain(denied, BUCKET, PREFIX))
    assert "disk full" in str(staging.explain(OSError(28, "No space left on device"), BUCKET, PREFIX))
    empty = model_dir.parent / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(staging.StagingError, match="holds no weights"):
        staging.select_files(empty)

    import httpx2 as httpx
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    response = httpx.Response(404, request=httpx.Request("GET", "https://hub.invalid/api/models"))

    def missing_repo(self: Any, *args: Any, **kwargs: Any) -> list[str]:
        raise RepositoryNotFoundError("404", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", missing_repo)
    with pytest.raises(staging.StagingError, match="acme/missing does not exist on the Hub"):
        staging.download_from_hub("acme/missing", "main", None)

    def missing_revision(self: Any, *args: Any, **kwargs: Any) -> list[str]:
        raise RevisionNotFoundError("404", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", missing_revision)
    with pytest.raises(staging.StagingError, match="revision 'deadbeef' of acme/tiny does not exist"):
        staging.download_from_hub("acme/tiny", "deadbeef", None)


def test_stage_script_reads_the_artifacts_stack_and_the_token_secret(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        template = {
            "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"BucketName": {"Value": BUCKET}, "WeightsPrefix": {"Value": PREFIX}},
        }
        cloudformation.create_stack(StackName="tiny-artifacts", TemplateBody=json.dumps(template))
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        secrets.create_secret(Name="hf-token", SecretString=json.dumps({"token": "hf_SECRET_VALUE"}))
        assert staging.token_from({}, secrets, "hf-token") == "hf_SECRET_VALUE"
        assert staging.token_from({"HF_TOKEN": "hf_ENV"}, None, None) == "hf_ENV"
        with pytest.raises(staging.StagingError, match="cannot read secret 'nope'"):
            staging.token_from({}, secrets, "nope")

        args = [
            "--model",
            str(model_dir),
            "-c",
            "deployment=tiny",
            "-c",
            "engine=vllm",
            "-c",
            "model_id=acme/tiny",
            "--no-progress",
        ]
        assert stage_model.main(args, s3=s3, cloudformation=cloudformation, secrets=secrets) == 0
        out = capsys.readouterr().out
        assert f"at s3://{BUCKET}/{PREFIX}" in out and "uploaded 6, already intact 0, repaired 0" in out
        assert stage_model.main(args, s3=s3, cloudformation=cloudformation) == 0
        assert "uploaded 0, already intact 6, repaired 0" in capsys.readouterr().out

        # a Hub model: the deployment's hf_token_secret is the default --token-secret
        tokens: list[str | None] = []
        monkeypatch.setattr(
            staging, "download_from_hub", lambda model, revision, token: tokens.append(token) or model_dir
        )
        from_hub = ["-c", "deployment=tiny", "-c", "engine=vllm", "-c", "model_id=acme/tiny", "--no-progress"]
        hub_args = [*from_hub, "-c", "hf_token_secret=hf-token"]
        assert stage_model.main(hub_args, s3=s3, cloudformation=cloudformation, secrets=secrets) == 0
        assert tokens == ["hf_SECRET_VALUE"] and "hf_SECRET_VALUE" not in capsys.readouterr().out

        missing = ["--model", str(model_dir), "-c", "deployment=other", "-c", "engine=vllm", "-c", "model_id=acme/tiny"]
        assert stage_model.main(missing, s3=s3, cloudformation=cloudformation) == 2
        err = capsys.readouterr().err
        assert "stack other-artifacts does not exist: deploy it first" in err and "Traceback" not in err


@pytest.mark.slow
def test_staging_benchmark_runs_all_three_tools(capsys: pytest.CaptureFixture[str]) -> None:
    from lmi_deploy.commands import bench_staging

    assert bench_staging.main(["--shards", "2", "--shard-mib", "6", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("server ceiling", "lmi-deploy stager", "s5cmd", "aws s3 cp --recursive"):
        assert name in out
    assert out.count("MiB/s") == 4 and "CRC64NVME checksum alone" in out and "GB/s" in out


# ---- re-staging: the prefix holds exactly the model -------------------------------------------------------------


def resharded(source: Path, folder: Path) -> dict[str, Any]:
    """``source`` (one model.safetensors) copied to ``folder`` as two shards and an index; returns its tensors."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    (folder / "model.safetensors").unlink()
    tensors = load_file(source / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return tensors


def download(s3: Any, prefix: str, folder: Path) -> Path:
    """What the container does with the staged prefix: every object under it, into a folder."""
    for name in s3_prefix.list_names(s3, BUCKET, prefix):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read())
    return folder


def loaded_weights(tiny_models: dict[str, Path], out: Path, weights: Path, **options: str) -> dict[str, Any]:
    """The rendered Accelerate handler's model loaded from ``weights``: its state dict."""
    from lmi_deploy.config import load_config
    from lmi_deploy.render import render
    from lmi_deploy.runtime import load_handler

    context = {
        "engine": "accelerate",
        "handler": "custom",
        "model_id": str(tiny_models["llama"]),
        "instance_type": "ml.g5.xlarge",
        "tensor_parallel_degree": "1",
        "dtype": "fp32",
        "deployment": "restaged",
    }
    handler = load_handler(render(load_config(context), out).directory / "model.py")
    model, _, _ = handler.HANDLER.load_model({"model_id": str(weights), "dtype": "fp32", **options})
    return dict(model.state_dict())


def test_restaging_a_differently_sharded_model_leaves_only_its_files_and_serves_it(
    s3: Any, tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from lmi_deploy import tiny_models as make_tiny

    old = tiny_models["llama"]  # one model.safetensors
    new_tensors = resharded(make_tiny.make(tmp_path / "other", "llama", seed=1), tmp_path / "new")
    stage = ["--bucket", BUCKET, "--prefix", PREFIX, "--region", "us-east-1", "--no-progress"]
    assert stage_model.main(["--model", str(old), *stage], s3=s3) == 0
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "partitioned/tp2/mp_rank_00.pt", Body=b"built from the old weights")
    neighbours = ["models/acme/tiny/abc1234/model.safetensors", "models/acme/tiny/model.safetensors"]
    for key in neighbours:  # a sibling prefix that starts with ours, and the folder above: never touched
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not ours")
    capsys.readouterr()

    assert stage_model.main(["--model", str(tmp_path / "new"), *stage], s3=s3) == 0
    out = capsys.readouterr().out
    assert "removed 2 objects not in this model: model.safetensors, partitioned/tp2/mp_rank_00.pt" in out
    assert "run scripts/partition_model.py again" in out
    assert sorted(s3_prefix.list_names(s3, BUCKET, PREFIX)) == sorted(
        [*staging.select_files(tmp_path / "new"), "manifest.json"]
    )
    for key in neighbours:
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"not ours"
    assert set(manifest(s3)["files"]) == set(staging.select_files(tmp_path / "new"))

    # what the endpoint downloads and loads is the new model
    served = loaded_weights(tiny_models, tmp_path / "code", download(s3, PREFIX, tmp_path / "served"))
    assert all(torch.equal(served[k], v) for k, v in new_tensors.items())

    # a folder still holding the old single file beside the new shards: the loader reads what the index names
    stale = tmp_path / "stale"
    (tmp_path / "served").rename(stale)
    (stale / "model.safetensors").write_bytes((old / "model.safetensors").read_bytes())
    loaded = loaded_weights(tiny_models, tmp_path / "code", stale)
    assert all(torch.equal(loaded[k], v) for k, v in new_tensors.items())
    # from_pretrained would pick the single file: refused, and a shard the index names but the folder lacks too
    with pytest.raises(Exception, match=re.escape("holds model.safetensors beside model.safetensors.index.json")) as e:
        loaded_weights(tiny_models, tmp_path / "code", stale, fast_load="false")
    (stale / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(Exception, match=re.escape("names model-00002-of-00002.safetensors, missing from")) as f:
        loaded_weights(tiny_models, tmp_path / "code", stale)
    assert type(e.value).__name__ == type(f.value).__name__ == "CheckpointError"


def test_restage_removes_the_manifest_first_and_what_is_stale_last(
    s3: Any, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (old / "model.safetensors").write_bytes(os.urandom(2048))
    for i in range(5):
        (old / f"tokenizer-{i}.json").write_text(str(i))  # more stale objects than a page holds
    monkeypatch.setattr(s3_prefix, "LIST_PAGE_SIZE", 2)
    monkeypatch.setattr(s3_prefix, "DELETE_BATCH", 2)
    fast = {"part_size": PART, "show_progress": False}
    staging.stage(s3, old, BUCKET, PREFIX, **fast)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "partitioned/tp2/rank0.bin", Body=b"from the old weights")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "partitioned/tp2/rank1.bin", Body=b"from the old weights")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "other/manifest.json", Body=b"{}")  # another staging inside ours
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "other/config.json", Body=b"{}")
    partitioned = ["partitioned/tp2/rank0.bin", "partitioned/tp2/rank1.bin"]

    # a re-stage of the same files keeps the checkpoint partitioned from them
    same = staging.stage(s3, old, BUCKET, PREFIX, **fast)
    assert same.removed == [] and same.kept == ["other/", "partitioned/"] and len(same.skipped) == 7

    # a dry run says what would change and changes nothing
    plan = staging.stage(s3, model_dir, BUCKET, PREFIX, dry_run=True, **fast)
    stale = ["model.safetensors", *(f"tokenizer-{i}.json" for i in range(5))]
    assert plan.dry_run and plan.removed == stale + partitioned
    assert len(plan.uploaded) == 5 and plan.repaired == ["config.json"]  # config.json differs
    assert manifest(s3)["files"].keys() == set(staging.select_files(old))
    assert len(s3_prefix.list_names(s3, BUCKET, PREFIX)) == 7 + 1 + 2 + 2

    # killed after the first new file verified: no manifest claims a complete set
    class Killed(Exception):
        pass

    def kill(item: staging.LocalFile) -> None:
        raise Killed("killed")

    with pytest.raises(staging.StagingError, match="Killed"):
        staging.stage(s3, model_dir, BUCKET, PREFIX, on_verified=kill, **fast)
    assert "manifest.json" not in s3_prefix.list_names(s3, BUCKET, PREFIX)

    done = staging.stage(s3, model_dir, BUCKET, PREFIX, **fast)
    assert done.removed == stale + partitioned and done.kept == ["other/"]
    remaining = s3_prefix.list_names(s3, BUCKET, PREFIX)
    other = ["other/config.json", "other/manifest.json"]
    assert sorted(remaining) == sorted([*staging.select_files(model_dir), "manifest.json", *other])
    assert manifest(s3)["files"].keys() == set(staging.select_files(model_dir))

    with pytest.raises(staging.StagingError, match="refusing to stage at the root of bucket"):
        staging.stage(s3, model_dir, BUCKET, "/", **fast)


# ---- what a model folder may hold --------------------------------------------------------------------------------


def test_links_out_of_the_folder_are_refused_and_unreadable_parts_fail(
    s3: Any, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stage = ["--model", str(model_dir), "--bucket", BUCKET, "--prefix", PREFIX, "--region", "us-east-1"]
    outside = tmp_path / "secret"
    outside.write_text("root:x:0:0")

    def refused(match: str) -> None:
        assert stage_model.main([*stage, "--no-progress"], s3=s3) == 2
        err = capsys.readouterr().err
        assert re.search(match, err) and err.count("\n") == 1 and "Traceback" not in err, err
        assert s3_prefix.list_names(s3, BUCKET, PREFIX) == []

    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer.json").symlink_to(outside)
    refused(rf"tokenizer.json in {model_dir} is a link to {outside}, outside {model_dir}")
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer.json").symlink_to(model_dir / "tokenizer_config.json")  # inside: fine
    (model_dir / "extra").symlink_to(tmp_path, target_is_directory=True)  # a folder out of the model folder
    refused(rf"extra in {model_dir} is a link to {tmp_path}, outside")
    (model_dir / "extra").unlink()

    # unreadable to the user staging (the tests may run as root, whom mode bits do not stop: the OS answer is faked)
    (model_dir / "sub").mkdir()
    original_scandir, original_access = os.scandir, os.access

    def scandir(path: Any = ".") -> Any:
        if isinstance(path, str | os.PathLike) and Path(path) == model_dir / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return original_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    refused(rf"cannot read {model_dir / 'sub'} \(Permission denied\): make the model folder readable")
    monkeypatch.setattr(os, "scandir", original_scandir)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "model-00002-of-00002.safetensors")
    refused(rf"cannot read {model_dir / 'model-00002-of-00002.safetensors'} \(Permission denied\)")
    monkeypatch.setattr(os, "access", original_access)

    # a Hub download: snapshot files are links into the cache's blobs/, which is allowed; anything else is not
    repo = tmp_path / "hub" / "models--acme--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (repo / "blobs" / name).write_bytes((model_dir / "config.json").read_bytes())
        (snapshot / name).symlink_to(Path("../../blobs") / name)
    monkeypatch.setattr(staging, "download_from_hub", lambda model, revision, token: snapshot)
    hub = ["--model", "acme/tiny", "--bucket", BUCKET, "--prefix", PREFIX, "--region", "us-east-1", "--no-progress"]
    assert stage_model.main(hub, s3=s3) == 0 and "uploaded 2" in capsys.readouterr().out
    assert stage_model.main(["--model", str(snapshot), *hub[2:]], s3=s3) == 0  # the snapshot as a local folder
    assert "already intact 2" in capsys.readouterr().out
    (snapshot / "tokenizer.json").symlink_to(outside)
    assert stage_model.main(hub, s3=s3) == 2
    assert f"tokenizer.json in {snapshot} is a link to {outside}, outside {repo}" in capsys.readouterr().err


def test_staging_faults_are_one_line_saying_what_to_do(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import safetensors.torch
    import torch

    folder = tmp_path / "bin-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    torch.save({"wte.weight": torch.randn(64, 16)}, folder / "pytorch_model.bin")
    where = ["--bucket", BUCKET, "--prefix", PREFIX, "--region", "us-east-1", "--no-progress"]

    def one_line(argv: list[str], match: str) -> None:
        assert stage_model.main(argv, s3=s3) == 2
        err = capsys.readouterr().err  # progress lines, then the error
        assert re.search(match, err.splitlines()[-1]) and err.count("lmi-deploy: ") == 1 and "Traceback" not in err

    def disk_fills(tensors: Any, path: str, metadata: Any = None) -> None:
        Path(path).write_bytes(b"half a shard")
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills)
    out = tmp_path / "converted"
    with pytest.raises(staging.StagingError, match=r"disk full while converting pytorch_model\.bin into .*TMPDIR"):
        staging.convert_bin_to_safetensors(folder, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # the half-written shard is gone
    one_line(["--model", str(folder), "--convert", *where], r"disk full while converting pytorch_model.bin into ")

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    one_line(["--model", str(folder), *where], r"AWS profile 'no-such-profile' \(AWS_PROFILE\) is not in ~/.aws/config")
    monkeypatch.delenv("AWS_PROFILE")

    for path in (tmp_path / "missing", "./missing", "missing/", folder / "config.json"):
        one_line(["--model", str(path), *where], rf"--model {re.escape(str(path))} (does not exist|is not a folder): ")
    for value in ("0", "-3", "many"):
        with pytest.raises(SystemExit) as exit_code:
            stage_model.main(["--model", str(folder), "--concurrency", value, *where], s3=s3)
        assert exit_code.value.code == 2 and "argument --concurrency: " in capsys.readouterr().err
    assert s3_prefix.list_names(s3, BUCKET, PREFIX) == []


def test_the_emulator_checksums_multipart_objects_part_by_part_to_the_same_value(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lmi-deploy's emulator computes a multipart object's full-object checksum as the parts come (moto copies the
    whole object twice more to checksum it): the value S3 and stock moto give, for every full-object algorithm."""
    import base64
    import binascii

    from awscrt import checksums
    from moto.s3 import models

    from lmi_deploy.commands.local_aws import stream_full_object_checksums

    parts = [os.urandom(PART), os.urandom(PART), os.urandom(1000)]
    whole = b"".join(parts)
    expected = {
        "CRC64NVME": checksums.crc64nvme(whole).to_bytes(8, "big"),
        "CRC32": binascii.crc32(whole).to_bytes(4, "big"),
        "CRC32C": checksums.crc32c(whole).to_bytes(4, "big"),
    }

    def upload(key: str, algorithm: str) -> str:
        started = s3.create_multipart_upload(
            Bucket=BUCKET, Key=key, ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT"
        )
        done = []
        for number, data in enumerate(parts, start=1):
            sent = s3.upload_part(
                Bucket=BUCKET,
                Key=key,
                UploadId=started["UploadId"],
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm=algorithm,
            )
            done.append({"PartNumber": number, "ETag": sent["ETag"]})
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=started["UploadId"], MultipartUpload={"Parts": done}
        )
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumType"] == "FULL_OBJECT"
        return str(head[f"Checksum{algorithm}"])

    stock = {algorithm: upload(f"stock-{algorithm}", algorithm) for algorithm in expected}
    monkeypatch.setattr(models, "MultipartChecksumBuilder", models.MultipartChecksumBuilder)  # undone after
    stream_full_object_checksums()
    assert getattr(models.MultipartChecksumBuilder, "_lmi_deploy", False)
    for algorithm, value in expected.items():
        assert upload(f"streamed-{algorithm}", algorithm) == base64.b64encode(value).decode()
        if algorithm != "CRC32C":  # stock moto computes a CRC32 for it unless the optional crc32c package is there
            assert stock[algorithm] == base64.b64encode(value).decode()
