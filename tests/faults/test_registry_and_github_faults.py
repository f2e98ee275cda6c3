"""Faults of the registry and of GitHub, against the real exporter process (one per module)."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.faults import proxy as p
from tests.faults.matrix import Case, Fault, run
from tests.faults.world import INTERVAL, FaultWorld, Scrape

TAGS = r"/tags/list"
FAKE_DIGEST = "sha256:" + hashlib.sha256(b"a manifest that weighs 50 MB").hexdigest()
INJECTED_TAGS = [f"sha-{i:07x}" for i in range(0xA000000, 0xA000000 + 500)]


def _with_tags(*tags: str) -> p.Action:
    return p.rewrite_json(lambda body: {**body, "tags": [*body["tags"], *tags]})


def _tag_count_grew(baseline: Scrape, scrape: Scrape) -> bool:
    before = sum(baseline.matching("promotion_registry_tags").values())
    return sum(scrape.matching("promotion_registry_tags").values()) == before + len(INJECTED_TAGS)


def _each_absent_tag_asked_once(world: FaultWorld, _baseline: Scrape, _seen: Scrape) -> None:
    proxy = world.proxies["registry"]
    heads = proxy.requests(r"/manifests/sha-a0", "HEAD")
    time.sleep(3 * INTERVAL)  # three more polls of an unchanged tag list
    assert proxy.requests(r"/manifests/sha-a0", "HEAD") == heads == len(INJECTED_TAGS)


def _retry_after_honoured(world: FaultWorld, _baseline: Scrape, _seen: Scrape) -> None:
    proxy = world.proxies["registry"]
    since = time.monotonic()
    time.sleep(2.0)  # two intervals inside the 3s Retry-After: nothing may be sent
    assert proxy.requests(TAGS, since=since) == 0


def _cap_logged(world: FaultWorld, _baseline: Scrape, _seen: Scrape) -> None:
    assert "redirects (a redirect loop?)" in world.log()


CASES = [
    Case(
        "registry tag list drips a byte every 0.25s",
        "registry",
        (Fault(TAGS, p.drip_body),),
        "timeout",
    ),
    Case(
        "registry tag list answers {}",
        "registry",
        (Fault(TAGS, p.respond(200, b"{}")),),
        "bad_response",
    ),
    Case(
        "registry tag list is not JSON",
        "registry",
        (Fault(TAGS, p.respond(200, b"<html>")),),
        "bad_response",
    ),
    Case(
        "registry serves a 50 MB manifest",
        "registry",
        (
            Fault(TAGS, _with_tags("sha-abcdef1")),
            Fault(
                r"/manifests/sha-abcdef1",
                p.respond(200, headers=[("Docker-Content-Digest", FAKE_DIGEST)]),
                {"HEAD"},
            ),
            Fault(r"/manifests/sha256:", p.huge(50 * 1024 * 1024), {"GET"}),
        ),
        "too_large",
    ),
    Case(
        "registry lists 500 sha- tags whose manifests answer 404",
        "registry",
        (Fault(TAGS, _with_tags(*INJECTED_TAGS)),),
        None,
        down=False,
        ready_when=_tag_count_grew,
        check=_each_absent_tag_asked_once,
    ),
    Case(
        "registry answers 429 with Retry-After: 3",
        "registry",
        (Fault(TAGS, p.respond(429, b"{}", [("Retry-After", "3")])),),
        "rate_limited",
        check=_retry_after_honoured,
    ),
    Case("GitHub drips its body", "github", (Fault(r"/repos/", p.drip_body),), "timeout"),
    Case("GitHub drips its headers", "github", (Fault(r"/repos/", p.drip_headers),), "timeout"),
    Case("GitHub holds the connection", "github", (Fault(r"/repos/", p.hold),), "timeout"),
    Case(
        "GitHub redirects in a loop",
        "github",
        (Fault(r"/repos/", lambda x: x.answer(302, [("Location", x.path)], b"")),),
        "bad_response",
        check=_cap_logged,
    ),
    Case(
        "GitHub answers 500", "github", (Fault(r"/repos/", p.respond(500, b"{}")),), "server_error"
    ),
    Case("GitHub resets the connection", "github", (Fault(r"/repos/", p.reset),), "unreachable"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_fault(world: FaultWorld, case: Case) -> None:
    run(world, case)
