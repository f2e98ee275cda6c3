"""A fake GitHub REST API: the few endpoints the exporter reads, with GitHub's shapes and rules.

It serves real paths and real-shaped JSON, strong ETags with 304s, and a primary rate limit
per token in which authorized 304s are free, as on github.com. Tests and the simulator drive
its in-memory state through methods and can force failures (5xx, 403, garbage, slowness, down).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator.loopback import LoopbackServer, QuietRequestHandler

Timestamp = float | str  # epoch seconds or RFC 3339, as the caller prefers
ANONYMOUS = "anonymous"
_DOCS = "https://docs.github.com/rest"


def _rfc3339(value: Timestamp) -> str:
    if isinstance(value, str):
        return value
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Commit:
    sha: str
    date: str
    branch: str
    files: tuple[str, ...]
    message: str

    def touches(self, path: str) -> bool:
        """GitHub's `path=` keeps commits that change that file or a file under that folder."""
        folder = path.rstrip("/") + "/"
        return any(name == path or name.startswith(folder) for name in self.files)


@dataclass
class _Run:
    id: int
    workflow_file: str
    head_sha: str
    head_branch: str
    event: str
    status: str
    conclusion: str | None
    created_at: str
    updated_at: str
    run_started_at: str
    run_number: int
    run_name: str | None  # the workflow's evaluated `run-name:`, if it sets one


@dataclass
class _Status:
    id: int
    sha: str
    context: str
    state: str
    description: str
    target_url: str | None
    created_at: str


@dataclass
class _Budget:
    limit: int
    used: int = 0
    reset: float = 0.0

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it. Holds whether a token was sent, never the token."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; Authorization replaced by its scheme only
    status: int


@dataclass(frozen=True)
class _Fault:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: dict[str, str]


class FakeGitHub(LoopbackServer[LoggedRequest]):
    """A threaded HTTP server on 127.0.0.1 that behaves like api.github.com for one repository."""

    def __init__(
        self,
        repository: str = "owner/homelab",
        *,
        token: str | None = None,
        limit: int = 5000,
        anonymous_limit: int = 60,
        window_seconds: float = 3600.0,
        default_branch: str = "main",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.repository = repository
        self.default_branch = default_branch
        self.response_delay = 0.0
        self._token = token
        self._limits = {ANONYMOUS: anonymous_limit}
        self._token_limit = limit
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._commits: list[_Commit] = []
        self._runs: dict[int, _Run] = {}
        self._statuses: list[_Status] = []
        self._workflows: set[str] = set()
        self._budgets: dict[str, _Budget] = {}
        self._fault: _Fault | None = None
        self._next_id = 1000

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    # --- state -------------------------------------------------------------------------

    def add_workflow(self, workflow_file: str) -> None:
        """A workflow never added (nor given a run) is absent: its runs list is a 404."""
        with self._lock:
            self._workflows.add(workflow_file)

    def add_commit(
        self,
        sha: str,
        date: Timestamp,
        files: tuple[str, ...] = ("kubernetes/platform/kustomization.yaml",),
        branch: str | None = None,
        message: str | None = None,
    ) -> None:
        """A new head of the branch, changing `files`."""
        with self._lock:
            commit = _Commit(
                sha,
                _rfc3339(date),
                branch or self.default_branch,
                files,
                f"change {sha[:7]}" if message is None else message,
            )
            self._commits.append(commit)

    def add_run(
        self,
        workflow_file: str,
        head_sha: str,
        *,
        event: str,
        status: str,
        conclusion: str | None,
        created_at: Timestamp,
        head_branch: str | None = None,
        updated_at: Timestamp | None = None,
        run_name: str | None = None,
    ) -> int:
        with self._lock:
            self._workflows.add(workflow_file)
            run_id = self._new_id()
            created = _rfc3339(created_at)
            self._runs[run_id] = _Run(
                id=run_id,
                workflow_file=workflow_file,
                head_sha=head_sha,
                head_branch=head_branch or self.default_branch,
                event=event,
                status=status,
                conclusion=conclusion,
                created_at=created,
                updated_at=_rfc3339(updated_at) if updated_at is not None else created,
                run_started_at=created,
                run_number=sum(r.workflow_file == workflow_file for r in self._runs.values()) + 1,
                run_name=run_name,
            )
            return run_id

    def update_run(
        self,
        run_id: int,
        status: str,
        conclusion: str | None = None,
        updated_at: Timestamp | None = None,
    ) -> None:
        """Move a run on; conclusion stays None until status is 'completed', as on GitHub."""
        with self._lock:
            run = self._runs[run_id]
            run.status = status
            run.conclusion = conclusion
            run.updated_at = _rfc3339(updated_at if updated_at is not None else self._clock())

    def add_status(
        self,
        sha: str,
        context: str,
        state: str,
        *,
        created_at: Timestamp | None = None,
        description: str = "",
        target_url: str | None = None,
    ) -> None:
        with self._lock:
            created = _rfc3339(created_at if created_at is not None else self._clock())
            status = _Status(self._new_id(), sha, context, state, description, target_url, created)
            self._statuses.append(status)

    # --- rate limit and faults ---------------------------------------------------------

    def set_remaining(
        self, remaining: int, token: str | None = None, reset: float | None = None
    ) -> None:
        """Spend the budget of a token (the configured one by default) down to `remaining`."""
        with self._lock:
            budget = self._budget(self._budget_key(token or self._token))
            budget.used = budget.limit - remaining
            if reset is not None:
                budget.reset = reset

    def remaining(self, token: str | None = None) -> int:
        with self._lock:
            return self._budget(self._budget_key(token or self._token)).remaining

    def fail_with(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer every request with this status and a GitHub-shaped error body."""
        body = json.dumps({"message": message, "documentation_url": _DOCS, "status": str(status)})
        self._fault = _Fault(status, body.encode(), headers or {})

    def serve_garbage(self) -> None:
        """Answer every request 200 with a body that is not JSON, like a broken proxy."""
        self._fault = _Fault(200, b"<html>upstream error</html>", {"content-type": "text/html"})

    def clear_faults(self) -> None:
        self._fault = None
        self.response_delay = 0.0

    # --- serving -----------------------------------------------------------------------

    def handle(self, path: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if self.response_delay:
            time.sleep(self.response_delay)
        with self._lock:
            response = self._respond(path, query, headers)
            self._record(LoggedRequest("GET", path, query, _loggable(headers), response.status))
            return response

    def _respond(self, path: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if self._fault is not None:
            return _Response(self._fault.status, self._fault.body, dict(self._fault.headers))
        token = _bearer(headers.get("authorization", ""))
        if token is not None and token != self._token:
            return _error(401, "Bad credentials", {})
        budget = self._budget(self._budget_key(token))
        limit_headers = self._limit_headers(budget)
        if path == "/rate_limit":
            return _json_response(200, self._rate_limit_body(budget), limit_headers)
        if budget.remaining == 0:
            message = "API rate limit exceeded. Check the documentation for more details."
            return _error(403, message, self._limit_headers(budget))
        status, payload = self._route(path, query)
        response = _json_response(status, payload, {})
        authorized = token is not None
        if status == 200 and _etag_matches(headers.get("if-none-match"), response.headers["etag"]):
            response = _Response(304, b"", {"etag": response.headers["etag"]})
            if authorized:
                response.headers.update(limit_headers)
                return response
        budget.used += 1
        response.headers.update(self._limit_headers(budget))
        return response

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        prefix = f"/repos/{self.repository}/"
        if not path.lower().startswith(prefix.lower()):
            return 404, _not_found()
        parts = [unquote(p) for p in path[len(prefix) :].split("/")]
        if parts == ["commits"]:
            return 200, self._commit_list(query)
        if len(parts) == 3 and parts[0] == "commits" and parts[2] == "statuses":
            return 200, self._status_list(parts[1], query)
        if len(parts) == 4 and parts[:2] == ["actions", "workflows"] and parts[3] == "runs":
            if parts[2] not in self._workflows:
                return 404, _not_found()
            return 200, self._run_list(parts[2], query)
        return 404, _not_found()

    def _commit_list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        branch = query.get("sha", self.default_branch)
        commits = [c for c in reversed(self._commits) if c.branch == branch]
        if query.get("path"):
            commits = [c for c in commits if c.touches(query["path"])]
        return [self._commit_json(c) for c in commits[: _per_page(query)]]

    def _status_list(self, sha: str, query: dict[str, str]) -> list[dict[str, Any]]:
        statuses = [s for s in reversed(self._statuses) if s.sha == sha]
        return [self._status_json(s) for s in statuses[: _per_page(query)]]

    def _run_list(self, workflow_file: str, query: dict[str, str]) -> dict[str, Any]:
        runs = sorted(
            (r for r in self._runs.values() if r.workflow_file == workflow_file),
            key=lambda r: r.id,
            reverse=True,
        )
        for name, attribute in (
            ("branch", "head_branch"),
            ("event", "event"),
            ("head_sha", "head_sha"),
        ):
            if name in query:
                runs = [r for r in runs if getattr(r, attribute) == query[name]]
        if "status" in query:
            runs = [r for r in runs if query["status"] in (r.status, r.conclusion)]
        page = [self._run_json(r) for r in runs[: _per_page(query)]]
        return {"total_count": len(runs), "workflow_runs": page}

    def _commit_json(self, commit: _Commit) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{self.repository}"
        person = {"name": "Dev", "email": "dev@example.com", "date": commit.date}
        return {
            "sha": commit.sha,
            "node_id": f"C_{commit.sha[:16]}",
            "commit": {
                "author": person,
                "committer": person,
                "message": commit.message,
                "tree": {"sha": hashlib.sha1(commit.sha.encode()).hexdigest(), "url": api},
                "url": f"{api}/git/commits/{commit.sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned"},
            },
            "url": f"{api}/commits/{commit.sha}",
            "html_url": f"https://github.com/{self.repository}/commit/{commit.sha}",
            "comments_url": f"{api}/commits/{commit.sha}/comments",
            "author": None,
            "committer": None,
            "parents": [],
        }

    def _run_json(self, run: _Run) -> dict[str, Any]:
        return {
            "id": run.id,
            "name": run.workflow_file.rsplit(".", 1)[0],
            "node_id": f"WFR_{run.id}",
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": f".github/workflows/{run.workflow_file}",
            "display_title": self._display_title(run),
            "run_number": run.run_number,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": int(hashlib.sha1(run.workflow_file.encode()).hexdigest()[:7], 16),
            "url": f"https://api.github.com/repos/{self.repository}/actions/runs/{run.id}",
            "html_url": f"https://github.com/{self.repository}/actions/runs/{run.id}",
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "run_attempt": 1,
            "run_started_at": run.run_started_at,
        }

    def _display_title(self, run: _Run) -> str:
        """A workflow's `run-name:` wins; else GitHub titles a push run with its head commit's
        subject, and others here by workflow."""
        if run.run_name:
            return run.run_name
        if run.event == "push":
            for commit in self._commits:
                if commit.sha == run.head_sha:
                    return commit.message.split("\n", 1)[0]
        return run.workflow_file.rsplit(".", 1)[0]

    def _status_json(self, status: _Status) -> dict[str, Any]:
        return {
            "url": f"https://api.github.com/repos/{self.repository}/statuses/{status.sha}",
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": status.created_at,
            "updated_at": status.created_at,
            "creator": None,
        }

    def _budget_key(self, token: str | None) -> str:
        return f"token:{token}" if token else ANONYMOUS

    def _budget(self, key: str) -> _Budget:
        now = self._clock()
        budget = self._budgets.get(key)
        if budget is None:
            limit = self._limits.get(key, self._token_limit)
            budget = self._budgets[key] = _Budget(limit, reset=now + self._window)
        elif now >= budget.reset:
            budget.used = 0
            budget.reset = now + self._window
        return budget

    def _limit_headers(self, budget: _Budget) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(budget.limit),
            "x-ratelimit-remaining": str(budget.remaining),
            "x-ratelimit-used": str(budget.used),
            "x-ratelimit-reset": str(int(budget.reset)),
            "x-ratelimit-resource": "core",
        }

    def _rate_limit_body(self, budget: _Budget) -> dict[str, Any]:
        core = {
            "limit": budget.limit,
            "used": budget.used,
            "remaining": budget.remaining,
            "reset": int(budget.reset),
        }
        return {"resources": {"core": core}, "rate": core}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


class _Handler(QuietRequestHandler):
    """HTTP/1.0, one request per connection, so that stop() leaves no live connection behind."""

    fake: FakeGitHub

    # http.server dispatches on this name.
    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.fake.handle(url.path, query, headers)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        try:
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test); nothing to answer to


def _json_response(status: int, payload: Any, headers: dict[str, str]) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
    base = {"content-type": "application/json; charset=utf-8", "etag": etag}
    return _Response(status, body, {**base, **headers})


def _error(status: int, message: str, headers: dict[str, str]) -> _Response:
    payload = {"message": message, "documentation_url": _DOCS, "status": str(status)}
    response = _json_response(status, payload, headers)
    del response.headers["etag"]
    return response


def _not_found() -> dict[str, str]:
    return {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}


def _per_page(query: dict[str, str]) -> int:
    try:
        return min(max(int(query.get("per_page", "30")), 1), 100)
    except ValueError:
        return 30


def _bearer(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return None
    return credentials.strip() or None


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as RFC 9110 asks for If-None-Match."""
    if not if_none_match:
        return False
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return "*" in candidates or etag.removeprefix("W/") in candidates


def _loggable(headers: dict[str, str]) -> dict[str, str]:
    logged = dict(headers)
    if "authorization" in logged:
        logged["authorization"] = logged["authorization"].partition(" ")[0]
    return logged
