"""The simulator's Flux tag selection against Masterminds semver's own test tables and
source-controller's ref rules. It must stand on its own: exporter.versions is what the
simulator referees, so the two may agree only by both following upstream."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import flux_select
from exporter.simulator.flux_select import (
    ConstraintError,
    Constraints,
    SemVer,
    compare,
    parse_tag,
    parse_version,
    select_tag,
)
from tests.semver_vectors import CHECKS, COMPARISONS, PIPELINE_TAGS

DIGEST = "sha256:" + "ab" * 32
# What the seed's registry holds mid-pipeline: RCs, one stable release and the marker tags.


def _version(text: str) -> SemVer:
    version = parse_version(text)
    assert version is not None, text
    return version


def test_module_does_not_borrow_the_product_code() -> None:
    tree = ast.parse(Path(flux_select.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(name and name.startswith("exporter") for name in imported), imported


def test_vectors_are_all_there() -> None:
    assert len(CHECKS) == 244
    assert len(COMPARISONS) == 19


@pytest.mark.parametrize(
    "case", CHECKS, ids=[f"{i}:{c['constraint']!r}~{c['version']}" for i, c in enumerate(CHECKS)]
)
def test_upstream_constraint_check(case: dict[str, Any]) -> None:
    text = case["constraint"]
    if text == "":
        # TestConstraintCheck feeds its rows to the internal parseConstraint, where "" is "*";
        # NewConstraint, which Flux calls, rejects "".
        with pytest.raises(ConstraintError):
            Constraints.parse("")
        text = "*"
    # The tables parse their versions with NewVersion, not Flux's stricter ParseVersion.
    assert Constraints.parse(text).check(_version(case["version"])) is case["satisfied"]


@pytest.mark.parametrize(
    "case", COMPARISONS, ids=[f"{i}:{c['v1']}~{c['v2']}" for i, c in enumerate(COMPARISONS)]
)
def test_upstream_compare(case: dict[str, Any]) -> None:
    left, right = _version(case["v1"]), _version(case["v2"])
    assert compare(left, right) == case["compare"]
    assert compare(right, left) == -case["compare"]


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.0-alpha", "1.0.0-alpha.1"),  # the semver 2.0 spec's precedence example, in order
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-alpha.beta", "1.0.0-beta"),
        ("1.0.0-beta", "1.0.0-beta.2"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-beta.11", "1.0.0-rc.1"),
        ("1.0.0-rc.1", "1.0.0"),
        ("0.3.5-rc.9", "0.3.5-rc.10"),
        ("0.3.5-rc10", "0.3.5-rc9"),  # one alphanumeric identifier: compared as text
        ("1.0.0-1", "1.0.0-a"),
        # Beyond uint64 an identifier is text to ParseUint, so it sorts above numbers.
        ("1.0.0-99", "1.0.0-18446744073709551616"),
    ],
)
def test_prerelease_precedence(lower: str, higher: str) -> None:
    assert compare(_version(lower), _version(higher)) == -1
    assert compare(_version(higher), _version(lower)) == 1


def test_metadata_and_prefix_do_not_count() -> None:
    assert compare(_version("v1.2.3+build.1"), _version("1.2.3+build.2")) == 0


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1", (1, 0, 0, "", "")),
        ("v1.2", (1, 2, 0, "", "")),
        ("01.02.03", (1, 2, 3, "", "")),  # CoerceNewVersion, on by default, allows zeros
        ("v2025.02.03-rc.1+build.7", (2025, 2, 3, "rc.1", "build.7")),
        ("18446744073709551615.0.0", (2**64 - 1, 0, 0, "", "")),
    ],
)
def test_parse_version(text: str, parts: tuple[int, int, int, str, str]) -> None:
    version = _version(text)
    fields = (version.major, version.minor, version.patch, version.prerelease, version.metadata)
    assert fields == parts
    assert version.original == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "latest",
        "sha-abc1234",
        "V1.0.0",
        " 1.0.0",
        "1.0.0\n",
        "1.2.3.4",
        "1.0.0-",
        "1.0.0-01",
        "1.0.0-rc..1",
        "1.0.0+",
        "18446744073709551616.0.0",
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits: Go's [0-9] is ASCII only
    ],
)
def test_parse_version_rejects(text: str) -> None:
    assert parse_version(text) is None


@pytest.mark.parametrize(
    ("tag", "parsed"),
    [
        ("1.2", None),
        ("v2", None),
        ("1.2.3", (1, 2, 3, "")),
        # SplitN(v, ".", 3) only counts dots, wherever they are.
        ("1-rc.1.2", (1, 0, 0, "rc.1.2")),
        ("1.2-rc.1", (1, 2, 0, "rc.1")),
        ("1.2+b.1", (1, 2, 0, "")),
    ],
)
def test_parse_tag_wants_two_dots(tag: str, parsed: tuple[int, int, int, str] | None) -> None:
    version = parse_tag(tag)
    got = (
        None
        if version is None
        else (version.major, version.minor, version.patch, version.prerelease)
    )
    assert got == parsed


@pytest.mark.parametrize(
    ("constraint", "version", "admitted"),
    [
        (">= 0.0.0", "0.3.5-rc.1", False),
        (">= 0.0.0-0", "0.3.5-rc.1", True),
        (">= 0.0.0-0", "0.3.5", True),
        # The pre-release opt-in belongs to one AND group, not to the whole expression.
        (">= 0.0.0-0 || >= 1.0.0", "0.3.5-rc.1", True),
        (">= 1.0.0 || >= 0.0.0-0", "0.3.5-rc.1", True),
        (">= 0.3.0 < 0.4.0", "0.3.5-rc.1", False),
        (">= 0.3.0, < 0.4.0-0", "0.3.5-rc.1", True),
        ("~1.2.3", "1.2.9", True),
        ("~>1.2.3", "1.3.0", False),
        ("^0.0.x", "0.0.9", True),
        ("^0.0.x", "0.1.0", False),
        ("^0.2", "0.3.0", False),
        ("1.x", "1.9.0", True),
        ("1.x", "2.0.0", False),
        ("!=1.2.x", "1.2.9", False),
        ("!=1.2.x", "1.3.0", True),
        (">1.2", "1.2.9", False),
        ("<=1.x", "1.9.9", True),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("=>1.2, =<1.4", "1.4.9", True),
        ("v1.2.3", "1.2.3+other", True),
    ],
)
def test_constraint_semantics(constraint: str, version: str, admitted: bool) -> None:
    assert Constraints.parse(constraint).check(_version(version)) is admitted


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        ">= banana",
        "1 ||",
        "|| 1",
        ">= 1.2.3.4",
        "1.2.3,",
        "== 1.0",
        "1|2",
        ">= 1.0.0-01",
    ],
)
def test_constraint_error(text: str) -> None:
    with pytest.raises(ConstraintError):
        Constraints.parse(text)


def test_integration_semver_takes_the_highest_rc() -> None:
    assert select_tag(PIPELINE_TAGS, semver=">= 0.0.0-0") == "0.3.5-rc.10"


def test_live_semver_skips_prereleases() -> None:
    assert select_tag(PIPELINE_TAGS, semver=">= 0.0.0") == "0.3.4"


def test_a_release_outranks_its_own_rcs() -> None:
    assert select_tag([*PIPELINE_TAGS, "0.3.5"], semver=">= 0.0.0-0") == "0.3.5"


def test_no_match_is_none() -> None:
    assert select_tag(PIPELINE_TAGS, semver=">= 1.0.0") is None
    assert select_tag([], semver="*") is None
    # Flux skips what ParseVersion rejects, even if NewVersion would take it.
    assert select_tag(["1.2", "v2", "sha-abc1234"], semver="*") is None


def test_equal_precedence_goes_to_the_first_tag_listed() -> None:
    assert select_tag(["v1.0.0", "1.0.0"], semver=">= 0.0.0") == "1.0.0"
    assert select_tag(["1.0.0+b2", "1.0.0+b1"], semver=">= 0.0.0") == "1.0.0+b1"


@pytest.mark.parametrize(
    ("semver_filter", "expected"),
    [
        (None, "0.3.5-rc.10"),
        ("", "0.3.5-rc.10"),
        (r"^0\.3\.4$", "0.3.4"),
        (r"rc\.9", "0.3.5-rc.9"),
        ("rc.1", "0.3.5-rc.10"),  # unanchored: rc.10 contains rc.1
        ("abc1234", None),  # the marker tags pass the filter, then fail to parse
    ],
)
def test_semver_filter_runs_before_parsing(semver_filter: str | None, expected: str | None) -> None:
    got = select_tag(PIPELINE_TAGS, semver=">= 0.0.0-0", semver_filter=semver_filter)
    assert got == expected


def test_ref_precedence_is_digest_semver_tag_latest() -> None:
    everything = {"semver": ">= 0.0.0", "tag": "0.3.5-rc.1", "digest": DIGEST}
    assert select_tag(PIPELINE_TAGS, **everything) == DIGEST
    assert select_tag(PIPELINE_TAGS, semver=">= 0.0.0", tag="0.3.5-rc.1") == "0.3.4"
    assert select_tag(PIPELINE_TAGS, semver=None, tag="validated-abc1234") == "validated-abc1234"
    assert select_tag(PIPELINE_TAGS, semver=None) == "latest"


def test_empty_ref_fields_count_as_unset() -> None:
    assert select_tag(PIPELINE_TAGS, semver="", tag="0.3.4", digest="") == "0.3.4"
    assert select_tag(PIPELINE_TAGS, semver="", tag="") == "latest"


def test_a_tag_the_registry_lacks_resolves_to_nothing() -> None:
    assert select_tag(PIPELINE_TAGS, semver=None, tag="0.9.9") is None
    assert select_tag(["0.3.4"], semver=None) is None


def test_a_bad_semver_is_an_error_not_a_miss() -> None:
    with pytest.raises(ConstraintError, match="banana"):
        select_tag(PIPELINE_TAGS, semver=">= banana")
