"""Stage a model's files in S3: select, checksum, upload in parallel, verify, and write a manifest last.

S3 is the state. Every object is sent with its CRC64NVME checksum, computed here over the whole file by the AWS CRT
(a few GB/s a core, files checksummed in parallel threads: the CRT releases the GIL); S3 checks the bytes it receives
against it (a single PUT) or computes the full-object CRC64NVME of the assembled parts and checks it against ours
(multipart, ChecksumType FULL_OBJECT), and stores it. An object already there with the right size and that stored
checksum is intact and is not sent again, whatever the part size and under SSE-S3 or SSE-KMS alike (unlike an ETag,
a checksum does not depend on the encryption). So a re-run uploads nothing, an interrupted run resumes where it
stopped, and a corrupted or missing object is found and sent again. Then what an earlier staging left under the
prefix that this one does not hold is deleted (s3_prefix), so the prefix holds exactly the model. The manifest (size
and CRC64NVME of every file) is deleted before the first change and written only after every object verified and the
prefix holds exactly the set, so there is never a half-written one nor one left claiming the previous set. The model
folder is read by model_folder: no link out of it, nothing unreadable skipped. boto3 clients are passed in; nothing
here reads the environment.
"""

from lmi_deploy.staging.convert import convert_bin_to_safetensors
from lmi_deploy.staging.driver import MANIFEST, StageResult, stage
from lmi_deploy.staging.errors import StagingError, explain
from lmi_deploy.staging.hub import download_from_hub, hub_allow_patterns, token_from
from lmi_deploy.staging.local import (
    BIN_PATTERNS,
    CHUNK,
    HASH_THREADS,
    SAFETENSORS_PATTERNS,
    SUPPORT_PATTERNS,
    LocalFile,
    MiB,
    hash_file,
    select_files,
)
from lmi_deploy.staging.upload import MAX_OBJECT, PART_SIZE

__all__ = [
    "BIN_PATTERNS",
    "CHUNK",
    "HASH_THREADS",
    "MANIFEST",
    "MAX_OBJECT",
    "PART_SIZE",
    "SAFETENSORS_PATTERNS",
    "SUPPORT_PATTERNS",
    "LocalFile",
    "MiB",
    "StageResult",
    "StagingError",
    "convert_bin_to_safetensors",
    "download_from_hub",
    "explain",
    "hash_file",
    "hub_allow_patterns",
    "select_files",
    "stage",
    "token_from",
]
