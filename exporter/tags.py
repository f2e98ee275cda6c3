"""The pipeline's tag vocabulary: which tags mean what."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from exporter.versions import Version, parse_tag


class TagKind(StrEnum):
    STABLE = "stable"  # X.Y.Z, created by promotion (or by the build in the stable-only flow)
    PRERELEASE = "prerelease"  # X.Y.Z-rc.N, created by the build
    SHA = "sha"  # sha-<short>, created by the build
    INTEGRATION = "integration"  # integration-<short>, created by the build
    VALIDATED = "validated"  # validated-<short>, created by promotion


_COMMIT_TAG = re.compile(r"^(sha|integration|validated)-([0-9a-f]{7,40})$")


@dataclass(frozen=True)
class ClassifiedTag:
    name: str
    kind: TagKind
    version: Version | None  # for STABLE and PRERELEASE
    short_sha: str | None  # for SHA, INTEGRATION and VALIDATED


def classify(tag: str) -> ClassifiedTag | None:
    """What a tag means to the pipeline, or None for a tag the pipeline does not use."""
    commit_tag = _COMMIT_TAG.match(tag)
    if commit_tag:
        return ClassifiedTag(tag, TagKind(commit_tag.group(1)), None, commit_tag.group(2))
    version = parse_tag(tag)
    if version is None:
        return None
    kind = TagKind.PRERELEASE if version.is_prerelease else TagKind.STABLE
    return ClassifiedTag(tag, kind, version, None)
