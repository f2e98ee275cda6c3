"""The GitHub source: the only module that talks to the GitHub REST API.

One client per repository. For each pipeline watching it, a poll reads the recent commits on
the branch that touch the pipeline's path, the recent runs of its build and tag workflows, and
the statuses on the newest such commit and on the newest build's commit. Every request is
conditional (ETag), and a URL that two pipelines share is sent once per poll, so an unchanged
poll costs nothing of the primary rate limit; once GitHub says the budget is spent no request
leaves until it resets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx

from exporter import __version__
from exporter.bounds import LIST_LIMIT, MAX_RETRY_AFTER, Deadline, read_limited, retry_after_seconds
from exporter.config import GitHubConfig
from exporter.snapshot import (
    Commit,
    CommitStatus,
    ErrorReason,
    GitHubData,
    RateLimit,
    SourceError,
    WorkflowRun,
    parse_timestamp,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RUNS_PER_PAGE = 20  # the promote workflow fires about every 10 minutes: 20 runs is hours
COMMITS_PER_PAGE = 20  # enough to see past a burst of merges since the last build
STATUSES_PER_PAGE = 100  # GitHub's maximum; statuses accumulate, one per update per context
SECONDARY_LIMIT_PAUSE = 60.0  # GitHub: without retry-after or a spent budget, wait a minute
MAX_REDIRECTS = 5  # a renamed repository redirects once; more is a loop
_STATIC_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": f"promotion-exporter/{__version__}",
}


@dataclass(frozen=True)
class _Cached:
    etag: str
    value: Any  # the parsed result, reused as is on a 304


class _NotFoundError(SourceError):
    """GitHub answered 404."""


@dataclass(frozen=True)
class _Reply:
    """A response whose body was read within its size limit and deadline."""

    response: httpx.Response
    body: bytes

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers


@dataclass
class _PollContext:
    now: float
    headers: dict[str, str]
    deadline: Deadline
    # Each URL's result this poll (a value or the 404): pipelines sharing a URL share its request.
    results: dict[str, Any] = field(default_factory=dict)


class GitHubClient:
    """Polls one repository for the pipelines watching it. Not thread-safe: one poll at a time.

    `watches` maps each pipeline's name to its effective GitHub config; they must all name the
    same repository, URL, token and branch, which only the pipeline-level keys never change.
    """

    def __init__(self, watches: Mapping[str, GitHubConfig], timeout: float) -> None:
        if not watches:
            raise ValueError("a GitHub client needs at least one pipeline to poll for")
        config = next(iter(watches.values()))
        connections = {(w.url, w.repository, w.token, w.branch) for w in watches.values()}
        if len(connections) > 1:
            raise ValueError("one GitHub client polls one repository through one connection")
        self._watches = dict(watches)
        self._config = config
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=config.url,
            timeout=timeout,
            headers=_STATIC_HEADERS,
            follow_redirects=True,  # GitHub answers 301 for a renamed repository
            max_redirects=MAX_REDIRECTS,
        )
        self._cache: dict[str, _Cached] = {}
        self._rate_limit: RateLimit | None = None
        self._blocked_until = 0.0
        self.requests_made = 0
        self.requests_charged = 0  # responses that spent primary budget: all but authorized 304s

    @property
    def rate_limit(self) -> RateLimit | None:
        """The budget GitHub last reported, kept across failed polls."""
        return self._rate_limit

    def close(self) -> None:
        self._http.close()

    def poll(self, deadline: Deadline) -> dict[str, GitHubData]:
        """Each pipeline's data, by name; raises SourceError. The deadline's start is `now`."""
        token = self._read_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._fetch(_PollContext(deadline.started_at, headers, deadline))

    def _read_token(self) -> str | None:
        if self._config.token is None:
            return None
        try:
            return self._config.token.read()
        except OSError as error:
            message = f"cannot read the GitHub token from {self._config.token.describe()}: "
            raise SourceError(ErrorReason.UNAUTHORIZED, message + str(error.strerror)) from None

    def _fetch(self, context: _PollContext) -> dict[str, GitHubData]:
        # Commits first, for every pipeline: a 404 there is a wrong repository or a token that
        # cannot see it, and only once the repository answered does a 404 on a workflow's runs
        # mean that the workflow does not exist.
        commits = {name: self._commits(context, watch) for name, watch in self._watches.items()}
        data = {
            name: self._watch(context, watch, commits[name])
            for name, watch in self._watches.items()
        }
        self._cache = {url: self._cache[url] for url in context.results if url in self._cache}
        return data

    def _watch(
        self, context: _PollContext, watch: GitHubConfig, commits: tuple[Commit, ...]
    ) -> GitHubData:
        # Builds run on pushes to the watched branch; other branches' runs would crowd it.
        build_runs = self._runs(context, watch.build_workflow, {"branch": watch.branch})
        promote_runs: tuple[WorkflowRun, ...] | None = ()
        if watch.promote_workflow is not None:
            # Not filtered by branch: repository_dispatch and workflow_dispatch run on the
            # default branch with its HEAD as head_sha, whatever branch or artifact is watched.
            promote_runs = self._runs(context, watch.promote_workflow, {})
        head = commits[0] if commits else None
        shas = [head.sha] if head is not None else []
        if build_runs:
            shas.append(build_runs[0].head_sha)
        return GitHubData(
            head_commit=head,
            commits=commits,
            build_runs=build_runs or (),
            build_workflow_found=build_runs is not None,
            promote_runs=promote_runs or (),
            promote_workflow_found=(
                None if watch.promote_workflow is None else promote_runs is not None
            ),
            statuses={sha: self._statuses(context, sha) for sha in dict.fromkeys(shas)},
            rate_limit=self._rate_limit,
        )

    def _commits(self, context: _PollContext, watch: GitHubConfig) -> tuple[Commit, ...]:
        params: dict[str, str | int] = {"sha": watch.branch, "per_page": COMMITS_PER_PAGE}
        watched = watch.watch_path.strip("/")
        if watched:
            params["path"] = watched
        return self._get(context, f"{self._repo_path}/commits", params, _parse_commits)

    def _runs(
        self, context: _PollContext, workflow_file: str, params: dict[str, str | int]
    ) -> tuple[WorkflowRun, ...] | None:
        """The newest runs of a workflow; None when GitHub does not know the workflow."""
        path = f"{self._repo_path}/actions/workflows/{quote(workflow_file, safe='')}/runs"
        try:
            return self._get(context, path, {**params, "per_page": RUNS_PER_PAGE}, _parse_runs)
        except _NotFoundError:
            return None

    def _statuses(self, context: _PollContext, sha: str) -> tuple[CommitStatus, ...]:
        path = f"{self._repo_path}/commits/{sha}/statuses"
        return self._get(context, path, {"per_page": STATUSES_PER_PAGE}, _parse_statuses)

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self._config.repository}"

    def _get(
        self,
        context: _PollContext,
        path: str,
        params: dict[str, str | int],
        parse: Callable[[Any], T],
    ) -> T:
        self._refuse_while_limited(context.now)
        seconds = context.deadline.for_request(f"GET {path}", self._timeout)
        request = self._http.build_request(
            "GET",
            path,
            params=params,
            headers=context.headers,
            extensions={"timeout": httpx.Timeout(seconds).as_dict()},
        )
        key = str(request.url)
        if key in context.results:
            result = context.results[key]
            if isinstance(result, _NotFoundError):
                raise result
            # One URL is always parsed by the same function, so its result has that type.
            return cast(T, result)
        try:
            value = self._request(context, request, key, path, parse)
        except _NotFoundError as error:
            context.results[key] = error
            raise
        context.results[key] = value
        return value

    def _request(
        self,
        context: _PollContext,
        request: httpx.Request,
        key: str,
        path: str,
        parse: Callable[[Any], T],
    ) -> T:
        cached = self._cache.get(key)
        if cached is not None:
            request.headers["If-None-Match"] = cached.etag
        reply = self._send(request, path)
        self._note_rate_limit(reply.headers, context.now)
        if reply.status_code == 304 and cached is not None:
            return cast(T, cached.value)
        if reply.status_code != 200:
            raise self._error(reply, path, context.now)
        value = _parse_body(reply.body, path, parse)
        etag = reply.headers.get("etag")
        if etag:
            self._cache[key] = _Cached(etag, value)
        return value

    def _send(self, request: httpx.Request, path: str) -> _Reply:
        """One request, connect to last byte within its share of the poll's deadline."""
        self.requests_made += 1
        seconds = httpx.Timeout(**request.extensions["timeout"]).read or self._timeout
        try:
            response = self._http.send(request, stream=True)
            try:
                expires = time.monotonic() + seconds
                body = read_limited(response.iter_bytes(), LIST_LIMIT, expires, f"GET {path}")
            finally:
                response.close()
        except httpx.TimeoutException:
            message = f"GitHub did not answer GET {path} within {seconds:g}s"
            raise SourceError(ErrorReason.TIMEOUT, message) from None
        except httpx.TooManyRedirects:
            message = f"GET {path}: more than {MAX_REDIRECTS} redirects (a redirect loop?)"
            raise SourceError(ErrorReason.BAD_RESPONSE, message) from None
        except httpx.TransportError as error:
            message = f"cannot reach GitHub at {self._config.url}: {error}"
            raise SourceError(ErrorReason.UNREACHABLE, message) from None
        except httpx.HTTPError as error:  # e.g. an undecodable gzip body
            message = f"GET {path}: {type(error).__name__}"
            raise SourceError(ErrorReason.BAD_RESPONSE, message) from None
        # GitHub only waives the charge for a 304 to an authorized request.
        if response.status_code != 304 or "Authorization" not in request.headers:
            self.requests_charged += 1
        return _Reply(response, body)

    def _refuse_while_limited(self, now: float) -> None:
        if now < self._blocked_until:
            message = (
                f"GitHub rate limit: no request before {_iso(self._blocked_until)} "
                f"({self._blocked_until - now:.0f}s from now)"
            )
            raise SourceError(ErrorReason.RATE_LIMITED, message)

    def _note_rate_limit(self, headers: httpx.Headers, now: float) -> None:
        limit = _rate_limit_from(headers)
        if limit is not None:
            self._rate_limit = limit
        retry_after = retry_after_seconds(headers.get("retry-after"), now)
        if retry_after is not None:
            self._block_until(now + retry_after, now)
        elif limit is not None and limit.remaining == 0:
            self._block_until(limit.reset, now)

    def _block_until(self, until: float, now: float) -> None:
        if until > now + MAX_RETRY_AFTER:
            log.warning(
                "GitHub asks to wait %.0f seconds; waiting the cap, %.0f seconds",
                until - now,
                MAX_RETRY_AFTER,
            )
            until = now + MAX_RETRY_AFTER
        if until > self._blocked_until:
            log.warning("GitHub rate limit reached: no request before %s", _iso(until))
            self._blocked_until = until

    def _error(self, reply: _Reply, path: str, now: float) -> SourceError:
        status = reply.status_code
        detail = _github_message(reply.body)
        where = f"GET {path}: HTTP {status} {detail}".rstrip()
        if status in (403, 429) and _is_rate_limited(reply, detail):
            if self._blocked_until <= now:
                self._block_until(now + SECONDARY_LIMIT_PAUSE, now)
            message = f"{where}; no request before {_iso(self._blocked_until)}"
            return SourceError(ErrorReason.RATE_LIMITED, message)
        if status == 401:
            source = self._config.token.describe() if self._config.token else "no token set"
            return SourceError(ErrorReason.UNAUTHORIZED, f"{where} (token from {source})")
        if status == 403:
            return SourceError(ErrorReason.FORBIDDEN, f"{where} (token lacks a permission?)")
        if status == 404:
            # GitHub answers 404, not 403, for a private repository the token cannot see, so a
            # 404 is a wrong repository or a missing permission: a config or access problem
            # that retrying won't fix, which FORBIDDEN says and BAD_RESPONSE (a server speaking
            # nonsense) would not. A workflow's runs catch it: there it is a finding.
            hint = "check github.repository and the token's access to it"
            return _NotFoundError(ErrorReason.FORBIDDEN, f"{where} ({hint})")
        if status >= 500:
            return SourceError(ErrorReason.SERVER_ERROR, where)
        return SourceError(ErrorReason.BAD_RESPONSE, f"{where} (unexpected status)")


def _parse_body(body: bytes, path: str, parse: Callable[[Any], T]) -> T:
    try:
        return parse(json.loads(body))
    except ValueError as error:  # json.JSONDecodeError and bad values alike
        message = f"GET {path}: malformed body: {error}"
    except (KeyError, TypeError, AttributeError) as error:
        message = f"GET {path}: unexpected JSON shape: {type(error).__name__} {error}"
    raise SourceError(ErrorReason.BAD_RESPONSE, message)


def _parse_commits(body: Any) -> tuple[Commit, ...]:
    """GitHub lists a branch's commits newest first; the order is kept as GitHub gives it."""
    if not isinstance(body, list):
        raise TypeError("expected a list of commits")
    return tuple(_parse_commit(raw) for raw in body)


def _parse_commit(raw: dict[str, Any]) -> Commit:
    committer = raw["commit"].get("committer") or {}
    return Commit(
        sha=_text(raw, "sha"),
        date=parse_timestamp(committer.get("date")),
        message=_text(raw["commit"], "message"),
    )


def _parse_runs(body: Any) -> tuple[WorkflowRun, ...]:
    runs = [_parse_run(raw) for raw in body["workflow_runs"]]
    return tuple(sorted(runs, key=lambda r: (r.created_at or 0.0, r.id), reverse=True))


def _parse_run(raw: dict[str, Any]) -> WorkflowRun:
    conclusion = raw.get("conclusion")
    if conclusion is not None and not isinstance(conclusion, str):
        raise TypeError(f"run conclusion is {type(conclusion).__name__}")
    run_id = raw["id"]
    if not isinstance(run_id, int) or isinstance(run_id, bool):
        raise TypeError("run id is not an integer")
    return WorkflowRun(
        id=run_id,
        head_sha=_text(raw, "head_sha"),
        event=_text(raw, "event"),
        status=_text(raw, "status"),
        conclusion=conclusion,
        created_at=parse_timestamp(raw.get("created_at")),
        updated_at=parse_timestamp(raw.get("updated_at")),
        display_title=raw.get("display_title") or "",
    )


def _parse_statuses(body: Any) -> tuple[CommitStatus, ...]:
    if not isinstance(body, list):
        raise TypeError("expected a list of statuses")
    statuses = [
        CommitStatus(
            context=_text(raw, "context"),
            state=_text(raw, "state"),
            created_at=parse_timestamp(raw.get("created_at")),
        )
        for raw in body
    ]
    return tuple(sorted(statuses, key=lambda s: s.created_at or 0.0, reverse=True))


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is {type(value).__name__}, not a string")
    return value


def _rate_limit_from(headers: httpx.Headers) -> RateLimit | None:
    try:
        return RateLimit(
            limit=int(headers["x-ratelimit-limit"]),
            remaining=int(headers["x-ratelimit-remaining"]),
            reset=float(headers["x-ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None


def _is_rate_limited(response: _Reply, detail: str) -> bool:
    """GitHub's rule: 429, or 403 with retry-after, a spent budget or a rate-limit message."""
    return (
        response.status_code == 429
        or "retry-after" in response.headers
        or response.headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in detail.lower()
    )


def _github_message(body: bytes) -> str:
    """The `message` of GitHub's error body, short; empty when the body is not GitHub's."""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return str(message)[:200]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
