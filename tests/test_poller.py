"""The poller: one source per registry, cluster and GitHub repository, and the grace period."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exporter.bounds import Deadline
from exporter.config import Config, parse_config
from exporter.poller import Poller, _Source
from exporter.snapshot import ErrorReason, GitHubData, Snapshot, SourceError
from tests.fixtures.github import GITHUB_REPOSITORY, GITHUB_TOKEN_ENV, GitHubApi

HEAD_SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"


def raw_config(
    tmp_path: Path, grace_polls: int = 3, github_url: str | None = None
) -> dict[str, Any]:
    """Two pipelines whose registry and clusters cannot be reached: port 1, no kubeconfig."""
    platform: dict[str, Any] = {
        "name": "platform",
        "artifact": "oci://127.0.0.1:1/owner/homelab/platform",
        "plain_http": True,
        "stages": {"integration": {"cluster": "integration"}, "live": {"cluster": "live"}},
    }
    apps = copy.deepcopy(platform)
    apps.update(name="apps", artifact="oci://127.0.0.1:1/owner/homelab/apps")
    apps.update(source={"name": "apps"}, kustomization={"name": "apps"})
    raw: dict[str, Any] = {
        "timeout": "2s",
        "grace_polls": grace_polls,
        "clusters": {
            name: {"kubeconfig": str(tmp_path / f"{name}.yaml")} for name in ("integration", "live")
        },
        "pipelines": [platform, apps],
    }
    if github_url is not None:
        raw["github"] = {
            "url": github_url,
            "repository": GITHUB_REPOSITORY,
            "token_env": GITHUB_TOKEN_ENV,
        }
    return raw


def config_for(tmp_path: Path, grace_polls: int = 3, github_url: str | None = None) -> Config:
    return parse_config(raw_config(tmp_path, grace_polls, github_url))


class Script:
    """A source client that plays its outcomes in order: data, or an exception to raise."""

    def __init__(self, *outcomes: Any) -> None:
        self._outcomes: Iterator[Any] = iter(outcomes)
        self.calls = 0

    def poll(self, _deadline: Deadline) -> Any:
        self.calls += 1
        outcome = next(self._outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, threading.Event):
            outcome.wait(30)  # hangs, ignoring its deadline, until the test lets it go
            return "late"
        return outcome

    def close(self) -> None:
        pass


DOWN = SourceError(ErrorReason.UNREACHABLE, "connection refused")


def scripted(tmp_path: Path, grace_polls: int, **scripts: Script) -> Poller:
    """A poller whose only sources are these scripts, each a registry keyed by its name."""
    poller = Poller(config_for(tmp_path, grace_polls))
    poller.close()
    poller._sources = [
        _Source("registry", f"127.0.0.1:1/{key}", key, script) for key, script in scripts.items()
    ]
    return poller


def registry_view(snapshot: Snapshot, key: str) -> tuple[Any, bool]:
    (status,) = [s for s in snapshot.sources if s.name == f"127.0.0.1:1/{key}"]
    return snapshot.registries[key], status.up


def test_a_source_that_fails_once_keeps_its_last_good_data(tmp_path: Path) -> None:
    flaky = Script("first", DOWN, "third")
    poller = scripted(tmp_path, 3, flaky=flaky, steady=Script("a", "b", "c"))

    views = [
        (registry_view(s, "flaky"), registry_view(s, "steady"))
        for s in (poller.poll_snapshot() for _ in range(3))
    ]

    assert views == [
        (("first", True), ("a", True)),
        (("first", False), ("b", True)),  # down at once, but its data is still the last good
        (("third", True), ("c", True)),
    ]
    assert poller.errors == {("registry", "127.0.0.1:1/flaky", "unreachable"): 1}


def test_after_grace_polls_failures_the_data_is_unknown(tmp_path: Path) -> None:
    poller = scripted(tmp_path, 2, flaky=Script("good", DOWN, DOWN, DOWN, "back"))

    views = [registry_view(poller.poll_snapshot(), "flaky") for _ in range(5)]

    assert views == [
        ("good", True),
        ("good", False),
        ("good", False),
        (None, False),  # the third failure in a row is one more than grace_polls
        ("back", True),
    ]


def test_the_grace_count_starts_again_after_a_good_poll(tmp_path: Path) -> None:
    poller = scripted(tmp_path, 1, flaky=Script("a", DOWN, "b", DOWN, DOWN))

    views = [registry_view(poller.poll_snapshot(), "flaky")[0] for _ in range(5)]

    assert views == ["a", "a", "b", "b", None]


def test_a_source_that_never_answered_has_nothing_to_keep(tmp_path: Path) -> None:
    poller = scripted(tmp_path, 3, flaky=Script(DOWN, DOWN))

    views = [registry_view(poller.poll_snapshot(), "flaky") for _ in range(2)]

    assert views == [(None, False), (None, False)]


def test_an_unexpected_error_counts_as_an_internal_failure(tmp_path: Path) -> None:
    poller = scripted(tmp_path, 3, buggy=Script("good", RuntimeError("client bug"), "again"))

    views = [registry_view(poller.poll_snapshot(), "buggy") for _ in range(3)]

    assert views == [("good", True), ("good", False), ("again", True)]
    assert poller.errors == {("registry", "127.0.0.1:1/buggy", "internal"): 1}


def test_a_hung_source_times_out_while_the_others_publish(tmp_path: Path) -> None:
    raw = raw_config(tmp_path, grace_polls=2)
    raw["timeout"] = "1s"
    poller = Poller(parse_config(raw))
    poller.close()
    hang = threading.Event()
    stuck, steady = Script("first", hang), Script("a", "b", "c", "d")
    poller._sources = [
        _Source("registry", "127.0.0.1:1/stuck", "stuck", stuck),
        _Source("registry", "127.0.0.1:1/steady", "steady", steady),
    ]
    try:
        started = time.monotonic()
        views = [
            (registry_view(s, "stuck"), registry_view(s, "steady"))
            for s in (poller.poll_snapshot() for _ in range(4))
        ]
        elapsed = time.monotonic() - started
    finally:
        hang.set()

    assert views == [
        (("first", True), ("a", True)),
        (("first", False), ("b", True)),  # past its deadline: a timeout, last data in grace
        (("first", False), ("c", True)),  # not polled again while it hangs; grace runs out
        ((None, False), ("d", True)),
    ]
    assert stuck.calls == 2
    assert poller.errors == {("registry", "127.0.0.1:1/stuck", "timeout"): 3}
    # One deadline (3 x 1s) and its slack, not one per round.
    assert elapsed < 3 * 1.0 + 0.5 + 1.0
    # The hung poll started once and never completed: its last attempt is the first poll's.
    statuses = {s.name: s for s in poller.state.sources} if poller.state else {}
    assert statuses["127.0.0.1:1/stuck"].last_attempt < statuses["127.0.0.1:1/steady"].last_attempt


# --- Sources built from the config --------------------------------------------------------


def test_sources_one_per_registry_cluster_and_github_repository(
    tmp_path: Path, github_api: GitHubApi
) -> None:
    poller = Poller(config_for(tmp_path, github_url=github_api.server.url))
    try:
        snapshot = poller.poll_snapshot()
    finally:
        poller.close()

    assert sorted((s.kind, s.name) for s in snapshot.sources) == [
        ("cluster", "integration"),
        ("cluster", "live"),
        ("github", GITHUB_REPOSITORY),
        ("registry", "127.0.0.1:1/owner/homelab/apps"),
        ("registry", "127.0.0.1:1/owner/homelab/platform"),
    ]
    assert set(snapshot.github) == {"platform", "apps"}
    assert all(isinstance(data, GitHubData) for data in snapshot.github.values())
    assert snapshot.github_rate_limit is not None
    # One commits list for both pipelines: they watch the same path of the same repository.
    assert sum(r.path.endswith("/commits") for r in github_api.server.requests) == 1


def test_a_pipeline_on_another_repository_gets_its_own_github_source(
    tmp_path: Path, github_api: GitHubApi
) -> None:
    raw = raw_config(tmp_path, github_url=github_api.server.url)
    raw["pipelines"][1]["github"] = {"repository": "owner/apps", "promote_workflow": None}
    github_api.server.add_commit(HEAD_SHA, 1_749_990_000.0)
    poller = Poller(parse_config(raw))
    try:
        snapshot = poller.poll_snapshot()
    finally:
        poller.close()

    github = {s.name: s for s in snapshot.sources if s.kind == "github"}
    assert set(github) == {GITHUB_REPOSITORY, "owner/apps"}
    # The fake serves owner/homelab only: owner/apps answers 404, a failure of that source.
    assert (github[GITHUB_REPOSITORY].up, github["owner/apps"].up) == (True, False)
    assert github["owner/apps"].error is ErrorReason.FORBIDDEN
    platform = snapshot.github["platform"]
    assert platform is not None and platform.head_commit is not None
    assert snapshot.github["apps"] is None


def test_without_github_the_snapshot_has_no_github_entries(tmp_path: Path) -> None:
    poller = Poller(config_for(tmp_path))
    try:
        snapshot = poller.poll_snapshot()
    finally:
        poller.close()

    assert snapshot.github == {}
    assert snapshot.github_rate_limit is None
    assert {s.kind for s in snapshot.sources} == {"registry", "cluster"}
