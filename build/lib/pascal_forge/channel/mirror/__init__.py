"""Copy a conda channel (http(s)://, file://, s3://) to a directory or an S3 bucket, trusting nothing.

model: entries, reports, settings, progress; endpoints: where files come from and go to;
checks: what a source must pass; closure: only what an install needs; transfer: the run.
"""

from .checks import parse_repodata, unsafe_name_reason
from .model import (
    REPODATA,
    ClosureRequest,
    MirrorError,
    MirrorInterrupted,
    MirrorReport,
    RichProgress,
    S3Settings,
    SilentProgress,
    split_s3_url,
)
from .transfer import mirror_channel

__all__ = [
    "REPODATA",
    "ClosureRequest",
    "MirrorError",
    "MirrorInterrupted",
    "MirrorReport",
    "RichProgress",
    "S3Settings",
    "SilentProgress",
    "mirror_channel",
    "parse_repodata",
    "split_s3_url",
    "unsafe_name_reason",
]
