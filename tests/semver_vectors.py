"""Masterminds' own semver test vectors (vendored, see tests/vendor/README.md) and the seed's
tag set, shared by the tests of the product's versions and of the simulator's Flux."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vendor" / "masterminds-vectors.json").read_text()
)
CHECKS: list[dict[str, Any]] = VECTORS["constraint_checks"]
COMPARISONS: list[dict[str, Any]] = VECTORS["compare"]
# What the seed's registry holds mid-pipeline: RCs, one stable release and the marker tags.
PIPELINE_TAGS = [
    "0.3.4",
    "0.3.5-rc.1",
    "0.3.5-rc.10",
    "0.3.5-rc.9",
    "sha-abc1234",
    "integration-abc1234",
    "validated-abc1234",
    "latest",
]
