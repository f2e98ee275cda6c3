"""Retry-After and rate-limit resets, honoured up to a cap: the real GitHub client through the
fault proxy. In-process, since the cap is 15 minutes and a process-wide case could not recover
within the suite's time."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator

import pytest

from exporter.bounds import MAX_RETRY_AFTER, Deadline
from exporter.github import GitHubClient
from exporter.snapshot import ErrorReason, SourceError
from tests.faults import proxy as p
from tests.fixtures.github import GitHubApi


@pytest.fixture
def proxied(github_api: GitHubApi) -> Iterator[tuple[p.FaultProxy, GitHubClient]]:
    proxy = p.FaultProxy(github_api.server.url).start()
    config = dataclasses.replace(github_api.config, url=proxy.url)
    client = GitHubClient({"platform": config}, timeout=1.0)
    yield proxy, client
    client.close()
    proxy.stop()


def _poll_error(client: GitHubClient, now: float) -> SourceError:
    with pytest.raises(SourceError) as caught:
        client.poll(Deadline.after(3.0, now))
    return caught.value


@pytest.mark.parametrize(
    "headers",
    [
        [("Retry-After", "99999999999")],
        [("Retry-After", "1e20")],
        [("Retry-After", "inf")],
        [
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1e20"),
        ],
    ],
    ids=["retry-after-year-5195", "retry-after-1e20", "retry-after-inf", "reset-1e20"],
)
def test_a_hint_past_the_cap_waits_the_cap_and_says_so(
    proxied: tuple[p.FaultProxy, GitHubClient],
    github_api: GitHubApi,
    caplog: pytest.LogCaptureFixture,
    headers: list[tuple[str, str]],
) -> None:
    proxy, client = proxied
    now = github_api.clock.now
    proxy.fault(r"/repos/", p.respond(403, b'{"message": "API rate limit exceeded"}', headers))

    with caplog.at_level(logging.WARNING):
        first = _poll_error(client, now)
    sent = proxy.requests()
    proxy.clear()
    later = _poll_error(client, now + MAX_RETRY_AFTER - 60)

    assert first.reason is ErrorReason.RATE_LIMITED
    assert "waiting the cap, 900 seconds" in caplog.text
    # Nothing is sent until the cap has passed, and the wait named is the cap, not the hint.
    assert later.reason is ErrorReason.RATE_LIMITED and proxy.requests() == sent
    assert re.search(r"\(60s from now\)", str(later)), later
    client.poll(Deadline.after(3.0, now + MAX_RETRY_AFTER + 1))
    assert proxy.requests() > sent
