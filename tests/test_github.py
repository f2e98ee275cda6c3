"""The real httpx GitHub client against the fake GitHub REST server."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.bounds import Deadline
from exporter.config import GitHubConfig, SecretRef
from exporter.github import GitHubClient
from exporter.snapshot import (
    Commit,
    CommitStatus,
    ErrorReason,
    GitHubData,
    RateLimit,
    SourceError,
    WorkflowRun,
)
from tests.fixtures.github import (
    BUILD_WORKFLOW,
    GITHUB_TOKEN_ENV,
    PROMOTE_WORKFLOW,
    GitHubApi,
)

OLD_SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
HEAD_SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"
DOCS_SHA = "2b66fd261ee5c6cfc8de7fa466bab600bcfe4f69"
PR_SHA = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"
T0 = 1_749_990_000.0
MERGE_SHA = "5d41402abc4b2a76b9719d911017c592ae0b5c3a"
FLUX_CONTEXT = "kustomization/platform/0c1b2a39"


def at(now: float) -> Deadline:
    """A poll starting at `now` on the fake's clock, with the poller's deadline."""
    return Deadline.after(6.0, now)


def single(config: GitHubConfig, timeout: float = 2.0) -> GitHubClient:
    """A client for one pipeline, 'platform'."""
    return GitHubClient({"platform": config}, timeout=timeout)


def platform(client: GitHubClient, now: float) -> GitHubData:
    data = client.poll(at(now))
    assert set(data) == {"platform"}
    return data["platform"]


@pytest.fixture
def client(github_api: GitHubApi) -> Iterator[GitHubClient]:
    client = single(github_api.config)
    yield client
    client.close()


def seed_pipeline(github_api: GitHubApi) -> dict[str, int]:
    """Two builds on main, one PR build, one promotion dispatched after a docs-only commit."""
    server = github_api.server
    server.add_commit(OLD_SHA, T0)
    server.add_commit(HEAD_SHA, T0 + 600)
    server.add_commit(DOCS_SHA, T0 + 1200, files=("README.md",))
    runs = {
        "old": server.add_run(
            BUILD_WORKFLOW,
            OLD_SHA,
            event="push",
            status="completed",
            conclusion="failure",
            created_at=T0 + 5,
            updated_at=T0 + 65,
        ),
        "head": server.add_run(
            BUILD_WORKFLOW,
            HEAD_SHA,
            event="push",
            status="completed",
            conclusion="success",
            created_at=T0 + 605,
            updated_at=T0 + 700,
        ),
        "pr": server.add_run(
            BUILD_WORKFLOW,
            PR_SHA,
            event="pull_request",
            status="completed",
            conclusion="success",
            created_at=T0 + 800,
            head_branch="feature",
        ),
        "promote": server.add_run(
            PROMOTE_WORKFLOW,
            DOCS_SHA,
            event="repository_dispatch",
            status="in_progress",
            conclusion=None,
            created_at=T0 + 1300,
        ),
    }
    server.add_status(OLD_SHA, FLUX_CONTEXT, "failure", created_at=T0 + 100)
    server.add_status(HEAD_SHA, FLUX_CONTEXT, "pending", created_at=T0 + 720)
    server.add_status(HEAD_SHA, FLUX_CONTEXT, "success", created_at=T0 + 760)
    return runs


def poll_error(client: GitHubClient, now: float) -> SourceError:
    with pytest.raises(SourceError) as caught:
        client.poll(at(now))
    return caught.value


# --- parsing ------------------------------------------------------------------------------


def test_poll_reads_head_commit_runs_and_statuses(github_api: GitHubApi, client: GitHubClient):
    runs = seed_pipeline(github_api)

    data = platform(client, github_api.clock.now)

    head = Commit(HEAD_SHA, T0 + 600, f"change {HEAD_SHA[:7]}")
    assert data == GitHubData(
        head_commit=head,
        commits=(head, Commit(OLD_SHA, T0, f"change {OLD_SHA[:7]}")),
        build_workflow_found=True,
        promote_workflow_found=True,
        build_runs=(
            WorkflowRun(
                runs["head"],
                HEAD_SHA,
                "push",
                "completed",
                "success",
                T0 + 605,
                T0 + 700,
                f"change {HEAD_SHA[:7]}",
            ),
            WorkflowRun(
                runs["old"],
                OLD_SHA,
                "push",
                "completed",
                "failure",
                T0 + 5,
                T0 + 65,
                f"change {OLD_SHA[:7]}",
            ),
        ),
        promote_runs=(
            WorkflowRun(
                runs["promote"],
                DOCS_SHA,
                "repository_dispatch",
                "in_progress",
                None,
                T0 + 1300,
                T0 + 1300,
                "tag-validated-artifact",
            ),
        ),
        statuses={
            HEAD_SHA: (
                CommitStatus(FLUX_CONTEXT, "success", T0 + 760),
                CommitStatus(FLUX_CONTEXT, "pending", T0 + 720),
            )
        },
        rate_limit=RateLimit(5000, 4996, github_api.clock.now + 3600),
    )


def test_requests_carry_github_headers_and_the_token(github_api: GitHubApi, client: GitHubClient):
    seed_pipeline(github_api)

    client.poll(at(github_api.clock.now))

    requests = github_api.server.requests
    assert len(requests) == 4
    for request in requests:
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
        assert request.headers["user-agent"].startswith("promotion-exporter/")
        assert request.headers["authorization"] == "Bearer"  # the fake logs only the scheme
        assert request.status == 200


def test_no_commit_touching_the_path_means_no_head_and_no_status_request(
    github_api: GitHubApi, client: GitHubClient
):
    github_api.server.add_commit(DOCS_SHA, T0, files=("README.md",))

    data = platform(client, github_api.clock.now)

    assert data.head_commit is None
    assert data.commits == ()
    assert data.statuses == {}
    assert not any("statuses" in r.path for r in github_api.server.requests)


def test_promote_runs_on_the_default_branch_count_when_another_branch_is_watched(
    github_api: GitHubApi,
):
    server = github_api.server
    server.add_commit(HEAD_SHA, T0, branch="release")
    server.add_run(
        BUILD_WORKFLOW,
        HEAD_SHA,
        event="push",
        status="queued",
        conclusion=None,
        created_at=T0 + 5,
        head_branch="release",
    )
    server.add_run(
        BUILD_WORKFLOW,
        OLD_SHA,
        event="push",
        status="queued",
        conclusion=None,
        created_at=T0 + 6,
        head_branch="main",
    )
    server.add_run(
        PROMOTE_WORKFLOW,
        DOCS_SHA,
        event="workflow_dispatch",
        status="completed",
        conclusion="success",
        created_at=T0 + 60,
        head_branch="main",
    )
    client = single(dataclasses.replace(github_api.config, branch="release"))

    data = platform(client, github_api.clock.now)
    client.close()

    assert data.head_commit is not None and data.head_commit.sha == HEAD_SHA
    assert [r.head_sha for r in data.build_runs] == [HEAD_SHA]
    assert [r.head_sha for r in data.promote_runs] == [DOCS_SHA]


# --- conditional requests -----------------------------------------------------------------


def test_unchanged_second_poll_is_all_304_and_charges_nothing(
    github_api: GitHubApi, client: GitHubClient
):
    seed_pipeline(github_api)
    first = client.poll(at(github_api.clock.now))
    remaining = github_api.server.remaining()
    github_api.server.clear_requests()

    second = client.poll(at(github_api.clock.now))

    assert [r.status for r in github_api.server.requests] == [304, 304, 304, 304]
    assert all("if-none-match" in r.headers for r in github_api.server.requests)
    assert second == first
    assert (client.requests_made, client.requests_charged) == (8, 4)
    assert github_api.server.remaining() == remaining


def test_new_and_updated_runs_are_seen_on_the_next_poll(
    github_api: GitHubApi, client: GitHubClient
):
    runs = seed_pipeline(github_api)
    client.poll(at(github_api.clock.now))
    new_sha = "0123456789abcdef0123456789abcdef01234567"
    new_run = github_api.server.add_run(
        BUILD_WORKFLOW,
        new_sha,
        event="push",
        status="queued",
        conclusion=None,
        created_at=T0 + 2000,
    )
    github_api.server.update_run(
        runs["promote"], status="completed", conclusion="success", updated_at=T0 + 1400
    )

    data = platform(client, github_api.clock.now)

    assert (data.build_runs[0].id, data.build_runs[0].status) == (new_run, "queued")
    assert data.build_runs[0].conclusion is None
    assert (data.promote_runs[0].status, data.promote_runs[0].conclusion) == (
        "completed",
        "success",
    )
    assert data.promote_runs[0].updated_at == T0 + 1400
    # The two runs lists changed, and the newest build's commit brings its statuses request.
    assert client.requests_charged == 4 + 3
    assert set(data.statuses) == {HEAD_SHA, new_sha}


def test_a_new_head_commit_brings_its_own_statuses(github_api: GitHubApi, client: GitHubClient):
    seed_pipeline(github_api)
    client.poll(at(github_api.clock.now))
    new_sha = "0123456789abcdef0123456789abcdef01234567"
    github_api.server.add_commit(new_sha, T0 + 3000)
    github_api.server.add_status(new_sha, FLUX_CONTEXT, "error", created_at=T0 + 3100)

    data = platform(client, github_api.clock.now)

    assert data.head_commit == Commit(new_sha, T0 + 3000, f"change {new_sha[:7]}")
    assert data.statuses[new_sha] == (CommitStatus(FLUX_CONTEXT, "error", T0 + 3100),)
    assert set(data.statuses) == {new_sha, HEAD_SHA}  # HEAD_SHA: the newest build's commit


# --- rate limit ---------------------------------------------------------------------------


def test_spent_budget_sends_nothing_until_reset(github_api: GitHubApi, client: GitHubClient):
    seed_pipeline(github_api)
    clock, server = github_api.clock, github_api.server
    reset = clock.now + 600
    server.set_remaining(0, reset=reset)

    error = poll_error(client, clock.now)

    assert error.reason is ErrorReason.RATE_LIMITED
    assert [r.status for r in server.requests] == [403]
    assert client.rate_limit == RateLimit(5000, 0, reset)
    server.clear_requests()
    assert poll_error(client, clock.advance(599)).reason is ErrorReason.RATE_LIMITED
    assert server.request_count == 0
    assert client.rate_limit == RateLimit(5000, 0, reset)

    data = platform(client, clock.advance(1))

    assert data.head_commit is not None and data.head_commit.sha == HEAD_SHA
    assert client.rate_limit == RateLimit(5000, 4996, reset + 3600)


def test_budget_spent_mid_poll_stops_the_remaining_requests(
    github_api: GitHubApi, client: GitHubClient
):
    seed_pipeline(github_api)
    github_api.server.set_remaining(2)

    error = poll_error(client, github_api.clock.now)

    assert error.reason is ErrorReason.RATE_LIMITED
    assert [r.status for r in github_api.server.requests] == [200, 200]
    assert client.rate_limit is not None and client.rate_limit.remaining == 0


@pytest.mark.parametrize(
    ("status", "headers", "pause"),
    [
        (429, {"retry-after": "30"}, 30),
        (403, {"retry-after": "45"}, 45),
        (403, {}, 60),  # secondary limit without retry-after: GitHub says wait a minute
    ],
)
def test_secondary_rate_limit_pauses_requests(
    github_api: GitHubApi, client: GitHubClient, status: int, headers: dict[str, str], pause: int
):
    seed_pipeline(github_api)
    clock, server = github_api.clock, github_api.server
    message = "You have exceeded a secondary rate limit. Please wait a few minutes."
    server.fail_with(status, message, headers)
    start = clock.now

    assert poll_error(client, start).reason is ErrorReason.RATE_LIMITED
    server.clear_faults()
    server.clear_requests()
    assert poll_error(client, start + pause - 1).reason is ErrorReason.RATE_LIMITED
    assert server.request_count == 0

    assert platform(client, start + pause).head_commit is not None


def test_rate_limit_is_kept_after_a_failed_poll(github_api: GitHubApi, client: GitHubClient):
    seed_pipeline(github_api)
    client.poll(at(github_api.clock.now))
    seen = client.rate_limit
    github_api.server.fail_with(502, "Server Error")

    assert poll_error(client, github_api.clock.now).reason is ErrorReason.SERVER_ERROR
    assert seen is not None
    assert client.rate_limit == seen


def test_without_a_token_requests_are_anonymous_and_304s_are_charged(github_api: GitHubApi):
    seed_pipeline(github_api)
    client = single(dataclasses.replace(github_api.config, token=None))

    client.poll(at(github_api.clock.now))
    data = platform(client, github_api.clock.now)
    client.close()

    assert all("authorization" not in r.headers for r in github_api.server.requests)
    assert [r.status for r in github_api.server.requests][4:] == [304, 304, 304, 304]
    assert data.rate_limit == RateLimit(60, 52, github_api.clock.now + 3600)
    assert client.requests_charged == 8


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (403, "Resource not accessible by personal access token", ErrorReason.FORBIDDEN),
        (500, "Internal Server Error", ErrorReason.SERVER_ERROR),
        (503, "Service Unavailable", ErrorReason.SERVER_ERROR),
        (422, "Validation Failed", ErrorReason.BAD_RESPONSE),
    ],
)
def test_http_errors_map_to_reasons(
    github_api: GitHubApi, client: GitHubClient, status: int, message: str, reason: ErrorReason
):
    github_api.server.fail_with(status, message)

    error = poll_error(client, github_api.clock.now)

    assert error.reason is reason
    assert str(status) in str(error)
    assert message in str(error)


def test_wrong_token_is_unauthorized(
    github_api: GitHubApi, client: GitHubClient, monkeypatch: pytest.MonkeyPatch
):
    wrong = "ghp_thisIsNotTheRightTokenButStillSecret0"
    monkeypatch.setenv(GITHUB_TOKEN_ENV, wrong)

    error = poll_error(client, github_api.clock.now)

    assert error.reason is ErrorReason.UNAUTHORIZED
    assert "Bad credentials" in str(error)
    assert GITHUB_TOKEN_ENV in str(error)
    assert wrong not in str(error) and wrong not in repr(error)


def test_an_unknown_repository_is_a_failure_not_a_finding(github_api: GitHubApi):
    client = single(dataclasses.replace(github_api.config, repository="owner/typo"))

    error = poll_error(client, github_api.clock.now)
    client.close()

    assert error.reason is ErrorReason.FORBIDDEN
    assert "owner/typo" in str(error) and "404" in str(error)
    assert [r.status for r in github_api.server.requests] == [404]


def test_malformed_body_is_bad_response(github_api: GitHubApi, client: GitHubClient):
    github_api.server.serve_garbage()

    assert poll_error(client, github_api.clock.now).reason is ErrorReason.BAD_RESPONSE


def test_server_down_is_unreachable_and_recovers(github_api: GitHubApi, client: GitHubClient):
    seed_pipeline(github_api)
    github_api.server.stop()

    assert poll_error(client, github_api.clock.now).reason is ErrorReason.UNREACHABLE

    github_api.server.start()
    head = platform(client, github_api.clock.now).head_commit
    assert head is not None and head.sha == HEAD_SHA


def test_slow_server_is_timeout(github_api: GitHubApi):
    github_api.server.response_delay = 0.3
    client = single(github_api.config, timeout=0.05)

    error = poll_error(client, github_api.clock.now)
    client.close()

    assert error.reason is ErrorReason.TIMEOUT


# --- secrets ------------------------------------------------------------------------------


def test_token_never_in_messages_reprs_or_logs(
    github_api: GitHubApi, client: GitHubClient, caplog: pytest.LogCaptureFixture
):
    token = github_api.token
    caplog.set_level(logging.DEBUG)
    seed_pipeline(github_api)
    client.poll(at(github_api.clock.now))
    github_api.server.fail_with(500, f"proxy saw Authorization: Bearer {token}")

    error = poll_error(client, github_api.clock.now)

    assert "<redacted>" in str(error)
    for text in (str(error), repr(error), repr(error.args), repr(client), caplog.text):
        assert token not in text


def test_token_file_is_read_and_a_missing_one_is_unauthorized(
    github_api: GitHubApi, tmp_path: Path
):
    seed_pipeline(github_api)
    token_file = tmp_path / "github-token"
    token_file.write_text(github_api.token + "\n")
    config = dataclasses.replace(github_api.config, token=SecretRef(file=token_file))
    client = single(config)

    assert platform(client, github_api.clock.now).head_commit is not None
    token_file.unlink()
    error = poll_error(client, github_api.clock.now)
    client.close()

    assert error.reason is ErrorReason.UNAUTHORIZED
    assert str(token_file) in str(error)


# --- findings: absent workflows, the stable-only flow -------------------------------------


@pytest.mark.parametrize("absent", ["build_workflow", "promote_workflow"])
def test_an_absent_workflow_is_a_finding_not_a_failure(github_api: GitHubApi, absent: str):
    seed_pipeline(github_api)
    client = single(dataclasses.replace(github_api.config, **{absent: "renamed.yaml"}))

    data = platform(client, github_api.clock.now)
    client.close()

    missing = [r for r in github_api.server.requests if "renamed.yaml" in r.path]
    assert [r.status for r in missing] == [404]
    assert data.build_workflow_found is (absent != "build_workflow")
    assert data.promote_workflow_found is (absent != "promote_workflow")
    assert (len(data.build_runs), len(data.promote_runs)) == (
        (0, 1) if absent == "build_workflow" else (2, 0)
    )
    assert data.head_commit is not None and set(data.statuses) == {HEAD_SHA}


def test_without_a_tag_workflow_it_is_never_asked_for(github_api: GitHubApi):
    seed_pipeline(github_api)
    client = single(dataclasses.replace(github_api.config, promote_workflow=None))

    data = platform(client, github_api.clock.now)
    client.close()

    assert data.promote_workflow_found is None
    assert data.promote_runs == ()
    assert data.build_workflow_found is True and len(data.build_runs) == 2
    assert not any(PROMOTE_WORKFLOW in r.path for r in github_api.server.requests)
    assert len(github_api.server.requests) == 3  # commits, build runs, statuses


# --- commits, messages and statuses -------------------------------------------------------


def test_commits_carry_their_messages_newest_first(github_api: GitHubApi, client: GitHubClient):
    server = github_api.server
    skip = "chore: bump chart\n\n[skip ci]\nSigned-off-by: Dev <dev@example.com>"
    server.add_commit(OLD_SHA, T0, message="feat: add the platform")
    server.add_commit(DOCS_SHA, T0 + 60, files=("README.md",), message="docs: readme")
    server.add_commit(HEAD_SHA, T0 + 120, message=skip)

    data = platform(client, github_api.clock.now)

    assert data.commits == (
        Commit(HEAD_SHA, T0 + 120, skip),
        Commit(OLD_SHA, T0, "feat: add the platform"),
    )
    assert data.head_commit == data.commits[0]
    (commits_request,) = [r for r in server.requests if r.path.endswith("/commits")]
    assert commits_request.query == {"sha": "main", "per_page": "20", "path": "kubernetes"}


def test_statuses_are_read_for_the_head_and_the_newest_builds_commit(
    github_api: GitHubApi, client: GitHubClient
):
    server = github_api.server
    server.add_commit(HEAD_SHA, T0)
    # A merge the path filter does not list (see the report on history simplification):
    # the push build runs on the merge commit, the newest path commit is the PR's.
    server.add_run(
        BUILD_WORKFLOW,
        MERGE_SHA,
        event="push",
        status="completed",
        conclusion="success",
        created_at=T0 + 60,
    )
    server.add_status(HEAD_SHA, FLUX_CONTEXT, "pending", created_at=T0 + 30)
    server.add_status(MERGE_SHA, FLUX_CONTEXT, "success", created_at=T0 + 90)

    data = platform(client, github_api.clock.now)

    assert data.statuses == {
        HEAD_SHA: (CommitStatus(FLUX_CONTEXT, "pending", T0 + 30),),
        MERGE_SHA: (CommitStatus(FLUX_CONTEXT, "success", T0 + 90),),
    }
    assert data.build_runs[0].display_title == BUILD_WORKFLOW.rsplit(".", 1)[0]


# --- several pipelines on one repository --------------------------------------------------


def test_pipelines_sharing_a_repository_share_identical_requests(github_api: GitHubApi):
    seed_pipeline(github_api)
    github_api.server.add_commit(PR_SHA, T0 + 1800, files=("apps/podinfo/release.yaml",))
    apps = dataclasses.replace(github_api.config, watch_path="apps/", promote_workflow=None)
    client = GitHubClient(
        {"platform": github_api.config, "mirror": github_api.config, "apps": apps}, timeout=2.0
    )

    data = client.poll(at(github_api.clock.now))
    client.close()

    assert set(data) == {"platform", "mirror", "apps"}
    assert data["mirror"] == data["platform"]
    paths = [(r.path, r.query.get("path")) for r in github_api.server.requests]
    assert len(paths) == len(set(paths)) == 6  # 2 commit lists, 2 runs lists, 2 heads' statuses
    assert data["apps"].head_commit is not None and data["apps"].head_commit.sha == PR_SHA
    assert data["platform"].head_commit is not None
    assert data["platform"].head_commit.sha == HEAD_SHA
    assert data["apps"].promote_workflow_found is None
    assert data["apps"].build_runs == data["platform"].build_runs


def test_a_second_pipeline_adds_only_its_own_commit_list_to_an_unchanged_poll(
    github_api: GitHubApi,
):
    seed_pipeline(github_api)
    apps = dataclasses.replace(github_api.config, watch_path="apps/")
    client = GitHubClient({"platform": github_api.config, "apps": apps}, timeout=2.0)
    client.poll(at(github_api.clock.now))
    github_api.server.clear_requests()

    client.poll(at(github_api.clock.now))
    client.close()

    assert [r.status for r in github_api.server.requests] == [304] * 5


def test_a_404_shared_by_two_pipelines_is_asked_once(github_api: GitHubApi):
    config = dataclasses.replace(github_api.config, promote_workflow="tag-validated.yml")
    apps = dataclasses.replace(config, watch_path="apps/")
    client = GitHubClient({"platform": config, "apps": apps}, timeout=2.0)

    data = client.poll(at(github_api.clock.now))
    client.close()

    assert [d.promote_workflow_found for d in data.values()] == [False, False]
    missing = [r for r in github_api.server.requests if "tag-validated.yml" in r.path]
    assert [r.status for r in missing] == [404]


@pytest.mark.parametrize(
    "change",
    [{"repository": "owner/other"}, {"branch": "release"}, {"url": "http://127.0.0.1:1"}],
)
def test_one_client_polls_one_repository_through_one_connection(
    github_api: GitHubApi, change: dict[str, str]
):
    other = dataclasses.replace(github_api.config, **change)
    with pytest.raises(ValueError, match="one repository"):
        GitHubClient({"platform": github_api.config, "apps": other}, timeout=2.0)
    with pytest.raises(ValueError, match="at least one"):
        GitHubClient({}, timeout=2.0)
