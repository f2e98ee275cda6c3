"""The registry's artifacts seen through the pipeline's tag vocabulary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from exporter.snapshot import Artifact, RegistryData
from exporter.tags import ClassifiedTag, TagKind, classify
from exporter.versions import Version

_COMMIT_IN_REVISION = re.compile(r"sha1:([0-9a-f]{40})$")
_LOWEST = Version(0, 0, 0, "0", original="0.0.0-0")  # below every version Flux selects
# A build time before this is no time at all: `flux push artifact --reproducible` writes the
# Unix epoch, and no artifact of this pipeline was built in the last century.
EARLIEST_BUILD_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z


def parse_revision(revision: str) -> tuple[str | None, str]:
    """Flux's '<tag>@sha256:<hex>' (or a bare 'sha256:<hex>') as (tag, manifest digest)."""
    if "@" in revision:
        tag, digest = revision.rsplit("@", 1)
        return tag, digest
    return None, revision


@dataclass(frozen=True)
class ArtifactView:
    artifact: Artifact

    @property
    def digest(self) -> str:
        return self.artifact.digest

    @property
    def created(self) -> float | None:
        """The build time annotation, None where absent or reproducible (before 2000)."""
        created = self.artifact.created
        return created if created is not None and created >= EARLIEST_BUILD_TIME else None

    @cached_property
    def tags(self) -> tuple[ClassifiedTag, ...]:
        return tuple(t for t in map(classify, self.artifact.tags) if t is not None)

    @cached_property
    def versions(self) -> list[tuple[Version, str]]:
        """Semver tags, highest first."""
        found = [(t.version, t.name) for t in self.tags if t.version is not None]
        return sorted(found, key=lambda pair: pair[0], reverse=True)

    @property
    def rank(self) -> Version | None:
        """The highest version Flux's semver selection sees on this artifact."""
        return self.versions[0][0] if self.versions else None

    @property
    def version_label(self) -> str:
        return self.versions[0][1] if self.versions else (self.artifact.tags or ("",))[0]

    @property
    def stable(self) -> str | None:
        return next((name for v, name in self.versions if not v.is_prerelease), None)

    @property
    def stable_version(self) -> Version | None:
        return next((v for v, _name in self.versions if not v.is_prerelease), None)

    @property
    def validated(self) -> bool:
        return any(t.kind is TagKind.VALIDATED for t in self.tags)

    @cached_property
    def commit(self) -> str | None:
        """The git commit: the full sha from the revision annotation, else a tag's short sha."""
        match = _COMMIT_IN_REVISION.search(self.artifact.revision or "")
        if match:
            return match.group(1)
        return next((t.short_sha for t in self.tags if t.short_sha), None)

    @property
    def short_sha(self) -> str | None:
        return self.commit[:7] if self.commit else None

    @property
    def revision_label(self) -> str:
        return self.artifact.revision or ""

    @cached_property
    def order_key(self) -> tuple[float, Version]:
        """Build order: the created annotation, then the version for ties or missing times."""
        created = self.created if self.created is not None else float("-inf")
        return created, self.versions[0][0] if self.versions else _LOWEST

    def matches_commit(self, sha: str) -> bool:
        commit = self.commit
        return commit is not None and (sha.startswith(commit) or commit.startswith(sha))


class ArtifactIndex:
    """Look-ups over one poll's artifacts."""

    def __init__(self, registry: RegistryData) -> None:
        self.views = sorted(
            (ArtifactView(a) for a in registry.artifacts), key=lambda view: view.order_key
        )
        self._by_tag = {tag: view for view in self.views for tag in view.artifact.tags}
        self._by_digest = {view.digest: view for view in self.views}
        self.version_tags = [t.name for view in self.views for t in view.tags if t.version]

    def by_tag(self, tag: str | None) -> ArtifactView | None:
        return self._by_tag.get(tag) if tag else None

    def by_digest(self, digest: str) -> ArtifactView | None:
        return self._by_digest.get(digest)

    def by_commit(self, sha: str) -> ArtifactView | None:
        return next((v for v in reversed(self.views) if v.matches_commit(sha)), None)

    @property
    def newest(self) -> ArtifactView | None:
        return self.views[-1] if self.views else None

    @property
    def newest_validated(self) -> ArtifactView | None:
        return next((v for v in reversed(self.views) if v.validated), None)

    @property
    def highest_stable(self) -> ArtifactView | None:
        """The artifact with the highest stable version: what `>= 0.0.0` selects."""
        stable = [(version, v) for v in self.views if (version := v.stable_version)]
        return max(stable, key=lambda pair: pair[0])[1] if stable else None

    def newer_than(self, reached: ArtifactView | None) -> list[ArtifactView]:
        if reached is None:
            return list(self.views)
        return [view for view in self.views if view.order_key > reached.order_key]
