#!/usr/bin/env python3
"""A local AWS emulator: moto in server mode on 127.0.0.1, taught the LMI instance types.

``python scripts/local_aws.py [--port 5000]`` runs it until Ctrl-C and prints the environment to point the CDK CLI
and boto3 at it. ``scripts/deploy_local.py`` uses :class:`LocalAws` to run the whole deploy flow against it.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from lmi_deploy import instances

LOCAL_ACCOUNT = "123456789012"  # moto's account
LOCAL_REGION = "us-east-1"


def accept_lmi_instance_types() -> None:
    """moto's SageMaker mock only knows older instance types; let it also accept every type in our catalog."""
    from moto.sagemaker import models

    original = models.FakeEndpointConfig.validate_instance_type
    if getattr(original, "_lmi_deploy", False):
        return

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if instance_type not in instances.catalog():
            original(self, instance_type)

    validate_instance_type._lmi_deploy = True  # type: ignore[attr-defined]
    models.FakeEndpointConfig.validate_instance_type = validate_instance_type  # type: ignore[method-assign]


def accept_kms_key_tags_from_cloudformation() -> None:
    """moto hands an ``AWS::KMS::Key``'s template tags (``Key``/``Value``) to its KMS API, which reads
    ``TagKey``/``TagValue``; translate them, as CloudFormation does."""
    from moto.kms import models

    original = models.Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(original, "_lmi_deploy", False):
        return

    def create(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
        properties = template.get("Properties", {})
        tags = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in properties.get("Tags", [])]
        translated = {**template, "Properties": {**properties, "Tags": tags}}
        return original(cls, name, translated, account_id, region, **kwargs)

    create._lmi_deploy = True  # type: ignore[attr-defined]
    models.Key.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment,arg-type]


def stream_full_object_checksums() -> None:
    """S3 computes a multipart object's full-object checksum (CRC64NVME, CRC32, CRC32C) as the parts arrive; moto
    keeps a second copy of the whole object in memory to checksum it at completion (two more copies of every byte,
    and twice the memory for a model's shards). Compute it part by part instead: the same value, no copies."""
    import base64
    import binascii

    from awscrt import checksums
    from moto.s3 import models

    if getattr(models.MultipartChecksumBuilder, "_lmi_deploy", False):
        return
    combine = {
        "CRC64NVME": (checksums.crc64nvme, 8),
        "CRC32": (lambda data, crc: binascii.crc32(data, crc), 4),
        "CRC32C": (checksums.crc32c, 4),
    }

    class StreamingChecksumBuilder(models.MultipartChecksumBuilder):
        _lmi_deploy = True

        def __init__(self, checksum_algorithm: str | None, checksum_type: str | None) -> None:
            super().__init__(checksum_algorithm, checksum_type)
            self.streamed = self.checksum_type == "FULL_OBJECT" and self.checksum_algorithm in combine
            self.crc = 0

        def addPart(self, part: bytes) -> None:  # moto's name
            if not self.streamed:
                return super().addPart(part)
            self.crc = combine[self.checksum_algorithm][0](part, self.crc)
            self.part_count += 1
            return None

        def build(self) -> tuple[str, str, int] | None:
            if not self.streamed:
                return super().build()
            size = combine[self.checksum_algorithm][1]
            return self.checksum_type, base64.b64encode(self.crc.to_bytes(size, "big")).decode(), 1

    models.MultipartChecksumBuilder = StreamingChecksumBuilder  # type: ignore[misc]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalAws:
    """Context manager: a moto server for the duration of the block. ``environment()`` points clients at it."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        # "localhost", not 127.0.0.1: the CDK CLI's S3 client then addresses buckets in path style that moto serves.
        self.endpoint_url = f"http://localhost:{self.port}"
        self._server: Any = None

    def __enter__(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        accept_lmi_instance_types()
        accept_kms_key_tags_from_cloudformation()
        stream_full_object_checksums()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto keeps its state per process: an earlier emulator's retained bucket would make this one's deploy fail
        reset = urllib.request.Request(f"http://127.0.0.1:{self.port}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=30).close()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def environment(self) -> dict[str, str]:
        """Environment variables that send the AWS CLI/SDKs (boto3, the CDK CLI) to the emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
        }

    def client(self, service: str) -> Any:
        import boto3

        env = self.environment()
        factory: Any = boto3.client  # typed per service by boto3-stubs when installed; one factory here
        return factory(
            service,
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env["AWS_SESSION_TOKEN"],
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    with LocalAws(args.port) as aws:
        print(f"local AWS emulator on {aws.endpoint_url} (account {LOCAL_ACCOUNT}); to use it:")
        for key, value in aws.environment().items():
            print(f"  export {key}={value}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping the emulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
