"""One fault world per test module: the cases of a module share its exporter process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.world import FaultWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    world = FaultWorld(tmp_path_factory.mktemp("faults"))
    yield world
    world.close()
