"""Faults of the two clusters' API servers, and signals, against the real exporter process."""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.faults import proxy as p
from tests.faults.matrix import Case, Fault, run
from tests.faults.world import INTERVAL, FaultWorld, Scrape

HELM_RELEASES = r"/apis/helm.toolkit.fluxcd.io/v2/helmreleases"
SOURCE = r"/ocirepositories/flux-system"
KUSTOMIZATION = r"/kustomizations/platform"
MANY_RELEASES = 100_000
PAGED_RELEASES = 20_000


def _unknown(node: str) -> Any:
    def check(_world: FaultWorld, _baseline: Scrape, seen: Scrape) -> None:
        status = {
            dict(k)["status"]: v
            for k, v in seen.matching("promotion_tree_node_status", node=node).items()
        }
        assert status["unknown"] == 1, status

    return check


def _edit(change: Any) -> p.Action:
    def apply(body: Any) -> Any:
        change(body)
        return body

    return p.rewrite_json(apply)


def _repeat_continue(exchange: p.Exchange) -> None:
    """Every page is the first page again, with the same continue token."""
    exchange.path = re.sub(r"&?continue=[^&]*", "", exchange.path)
    upstream = exchange.forward(fresh=True)
    body = json.loads(upstream.body)
    body.setdefault("metadata", {})["continue"] = "again"
    exchange.answer(200, [("Content-Type", "application/json")], json.dumps(body).encode())


def _paged_releases(exchange: p.Exchange) -> None:
    """PAGED_RELEASES more HelmReleases, served the way an apiserver pages them: `limit` per
    page, the offset as the continue token."""
    query = parse_qs(urlsplit(exchange.path).query)
    limit, offset = int(query["limit"][0]), int(query.get("continue", ["0"])[0])
    items = [_released(i) for i in range(offset, min(offset + limit, PAGED_RELEASES))]
    following = offset + limit
    metadata = {"continue": str(following)} if following < PAGED_RELEASES else {}
    body = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmReleaseList"}
    body.update(metadata=metadata, items=items)
    exchange.answer(200, [("Content-Type", "application/json")], json.dumps(body).encode())


def _released(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"namespace": f"team-{index % 100}", "name": f"release-{index}"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded"}]},
    }


def _many_releases(body: Any) -> None:
    body["items"] = body["items"] + [_released(i) for i in range(MANY_RELEASES)]


def _counted(count: int) -> Any:
    def ready(_baseline: Scrape, scrape: Scrape) -> bool:
        return (scrape.value("promotion_helmreleases", cluster="live") or 0) >= count

    return ready


CASES = [
    Case(
        "live HelmRelease list repeats its continue token",
        "live",
        (Fault(HELM_RELEASES, _repeat_continue),),
        "bad_response",
    ),
    Case(
        "live HelmRelease list drips its body",
        "live",
        (Fault(HELM_RELEASES, p.drip_body),),
        "timeout",
    ),
    Case(
        "integration OCIRepository GET is held", "integration", (Fault(SOURCE, p.hold),), "timeout"
    ),
    Case(
        "integration apiserver resets the connection",
        "integration",
        (Fault(SOURCE, p.reset),),
        "unreachable",
    ),
    Case(
        "integration OCIRepository conditions is a string",
        "integration",
        (Fault(SOURCE, _edit(lambda body: body["status"].update(conditions="Ready"))),),
        "bad_response",
        down=False,
        check=_unknown("integration_source_ready"),
    ),
    Case(
        "integration Kustomization has no status",
        "integration",
        (Fault(KUSTOMIZATION, _edit(lambda body: body.pop("status"))),),
        "bad_response",
        down=False,
        check=_unknown("integration_applied"),
    ),
    Case(
        "live OCIRepository revision has no @",
        "live",
        (Fault(SOURCE, _edit(lambda body: body["status"]["artifact"].update(revision="0.3.4"))),),
        "bad_response",
        down=False,
        check=_unknown("live_source_current"),
    ),
    Case(
        "live apiserver's 403 echoes the bearer token",
        "live",
        (Fault(SOURCE, p.echo_authorization(403)),),
        "forbidden",
    ),
    Case(
        "live lists 100,000 HelmReleases in one page",
        "live",
        (Fault(HELM_RELEASES, p.rewrite_json(lambda body: (_many_releases(body), body)[1])),),
        None,
        down=False,
        rss_exempt=True,  # documented: the list is held parsed whole (see the closing note)
        ready_when=_counted(MANY_RELEASES),
    ),
    Case(
        "live pages 20,000 HelmReleases, 500 a page",
        "live",
        (Fault(HELM_RELEASES, _paged_releases),),
        None,
        down=False,
        ready_when=_counted(PAGED_RELEASES),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_fault(world: FaultWorld, case: Case) -> None:
    run(world, case)


def test_sighup_is_logged_and_ignored(world: FaultWorld) -> None:
    polls = world.scrape().value("promotion_polls_total") or 0
    world.process.send_signal(signal.SIGHUP)
    time.sleep(2 * INTERVAL)
    assert world.process.poll() is None
    assert "SIGHUP received" in world.log()
    assert (world.scrape().value("promotion_polls_total") or 0) > polls


def test_sigterm_during_a_dripping_request_stops_within_2s(world: FaultWorld) -> None:
    # Last in the module: it ends the module's exporter.
    world.proxies["github"].fault(r"/repos/", p.drip_body)
    world.proxies["live"].fault(HELM_RELEASES, p.hold)
    time.sleep(2 * INTERVAL)  # requests are in flight, dripping and held
    started = time.monotonic()
    world.process.send_signal(signal.SIGTERM)
    code = world.process.wait(10)
    seconds = time.monotonic() - started
    assert code == 0, world.log()
    assert seconds < 2.0, f"SIGTERM took {seconds:.2f}s"
