"""The benchmark's world: registry, clusters and GitHub in a process of their own.

poll_bench.py starts this script so that the 10,000 tags and their manifests live outside the
exporter's process and its peak RSS measures the exporter alone. The world seeds a long
release history (older, lower versions than the scenario's), plays the `healthy` scenario on
top, writes an ordinary exporter config, and then answers one command per stdin line with one
JSON line on stdout:

    requests   what each server was asked since the previous `requests` (then forgets it)
    release    one more change end to end: a merge, a build with its 5 tags, both clusters
EOF on stdin stops every server and ends the process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from exporter.simulator import flux_objects as flux
from exporter.simulator.lab import ARTIFACT_REPOSITORY, Lab
from exporter.simulator.oci import push_flux_artifact, tag_artifact
from exporter.simulator.scenarios import HISTORY_RELEASES, SCENARIOS_BY_NAME, play

TAGS_PER_ARTIFACT = 5  # X.Y.Z-rc.1, sha-, integration-, validated-, X.Y.Z: as the pipeline tags
SEED_PROCESSES = 2
SEED_THREADS_PER_PROCESS = 4
SEED_CHUNKS = 40
HOUR = 3600.0
# The healthy scenario's releases (history plus the change under test) carry the same 5 tags.
SCENARIO_TAGS = (HISTORY_RELEASES + 1) * TAGS_PER_ARTIFACT


def seeded_tags(index: int) -> tuple[str, ...]:
    """The tags of history artifact `index`: version first, then the 4 tags added to it."""
    version = f"0.{index // 100}.{index % 100 + 1}"
    short = _commit_sha(index)[:7]
    return (
        f"{version}-rc.1",
        f"sha-{short}",
        f"integration-{short}",
        f"validated-{short}",
        version,
    )


def _commit_sha(index: int) -> str:
    return hashlib.sha1(f"seed:{index}".encode()).hexdigest()


def _seed_one(registry_url: str, index: int, created: float) -> dict[str, str]:
    first, *others = seeded_tags(index)
    digest = push_flux_artifact(
        registry_url,
        ARTIFACT_REPOSITORY,
        first,
        revision=flux.git_revision(_commit_sha(index)),
        source=flux.DEFAULT_SOURCE_REPOSITORY,
        created=flux.rfc3339(created),
    )
    for tag in others:
        tag_artifact(registry_url, ARTIFACT_REPOSITORY, digest, tag)
    return dict.fromkeys((first, *others), digest)


def _seed_chunk(registry_url: str, indexes: list[int], oldest: float) -> dict[str, str]:
    """Runs in a worker process: a thread pool keeps several uploads in flight."""
    tags: dict[str, str] = {}
    with ThreadPoolExecutor(SEED_THREADS_PER_PROCESS) as pool:
        for pushed in pool.map(lambda i: _seed_one(registry_url, i, oldest + i * HOUR), indexes):
            tags.update(pushed)
    return tags


def seed_history(registry_url: str, artifacts: int, before: float) -> dict[str, str]:
    """Push `artifacts` history artifacts, one an hour up to `before`; their tag: digest map.

    Each push and tag makes its own HTTP client, so uploading is CPU-bound on the client side:
    two processes (with a few threads each) keep the registry busy where one GIL could not.
    """
    oldest = before - artifacts * HOUR
    chunks = [list(range(start, artifacts, SEED_CHUNKS)) for start in range(SEED_CHUNKS)]
    tags: dict[str, str] = {}
    spawn = multiprocessing.get_context("spawn")  # the registry's threads must not be forked
    with ProcessPoolExecutor(SEED_PROCESSES, mp_context=spawn) as pool:
        futures = [pool.submit(_seed_chunk, registry_url, chunk, oldest) for chunk in chunks]
        for future in futures:
            tags.update(future.result())
    return tags


def _registry_requests(lab: Lab) -> dict[str, Any]:
    requests = lab.registry.requests
    lab.registry.clear_requests()
    kinds: Counter[str] = Counter()
    head_refs: list[str] = []
    for request in requests:
        if request.path.endswith("/tags/list"):
            kinds["tag_pages"] += 1
        elif "/manifests/" in request.path:
            kinds[f"manifest_{request.method.lower()}"] += 1
            if request.method == "HEAD":
                head_refs.append(request.path.rsplit("/", 1)[1])
        else:
            kinds["other"] += 1
    return {"total": len(requests), **kinds, "head_refs": head_refs}


def _github_requests(lab: Lab) -> dict[str, Any]:
    requests = lab.github.requests
    lab.github.clear_requests()
    urls = {(r.path, tuple(sorted(r.query.items()))) for r in requests}
    return {
        "total": len(requests),
        "not_modified": sum(r.status == 304 for r in requests),
        "distinct_urls": len(urls),
    }


def _cluster_requests(lab: Lab) -> dict[str, dict[str, int]]:
    counts = {}
    for name, api in lab.clusters.items():
        requests = api.requests
        api.clear_requests()
        kinds: Counter[str] = Counter()
        for request in requests:
            # /apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]
            depth = len(request.path.strip("/").split("/"))
            kinds[{3: "discovery", 4: "list", 7: "get"}.get(depth, "other")] += 1
        counts[name] = {"total": len(requests), **kinds}
    return counts


def _release(lab: Lab) -> dict[str, Any]:
    assert lab.sim is not None
    before = set(lab.sim.tags)
    # A release takes about 21 simulated minutes; end it at the wall clock, not in the future.
    lab.sim.now = time.time() - 21 * 60
    lab.sim.release()
    lab.registry.clear_requests()  # the simulated build's own pushes are not the exporter's
    return {"new_tags": sorted(set(lab.sim.tags) - before)}


def serve_commands(lab: Lab) -> None:
    commands = {
        "requests": lambda: {
            "registry": _registry_requests(lab),
            "github": _github_requests(lab),
            "clusters": _cluster_requests(lab),
        },
        "release": lambda: _release(lab),
    }
    for line in sys.stdin:
        command = commands.get(line.strip())
        reply = command() if command else {"error": f"unknown command {line.strip()!r}"}
        print(json.dumps(reply), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000, help="tags in the repository")
    args = parser.parse_args()
    artifacts = math.ceil(max(args.tags - SCENARIO_TAGS, 0) / TAGS_PER_ARTIFACT)
    end = time.time()
    with Lab(start=end - 3 * 86400) as lab:
        assert lab.sim is not None
        started = time.perf_counter()
        history = seed_history(lab.registry.url, artifacts, before=lab.sim.now)
        seed_seconds = time.perf_counter() - started
        # The simulator numbers its builds after the highest stable tag it knows.
        lab.sim.tags.update(history)
        play(lab.sim, SCENARIOS_BY_NAME["healthy"], end)
        config = lab.write_config()
        tags = len(lab.registry.tags(ARTIFACT_REPOSITORY))
        for api in lab.clusters.values():
            api.clear_requests()
        lab.registry.clear_requests()
        lab.github.clear_requests()
        ready = {
            "config": str(config),
            "tags": tags,
            "artifacts": artifacts + HISTORY_RELEASES + 1,
            "seed_seconds": round(seed_seconds, 1),
        }
        print(json.dumps(ready), flush=True)
        serve_commands(lab)


if __name__ == "__main__":
    main()
