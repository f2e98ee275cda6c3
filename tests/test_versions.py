"""exporter.versions against Masterminds semver v3's own test tables and Flux's tag selection."""

from __future__ import annotations

import random

import pytest

from exporter.versions import Constraint, ConstraintError, Version, compare, select_highest
from tests.semver_vectors import CHECKS, COMPARISONS, PIPELINE_TAGS


def _version(text: str) -> Version:
    version = Version.parse(text)
    assert version is not None, text
    return version


def test_vectors_file_is_complete():
    assert len(CHECKS) == 244
    assert len(COMPARISONS) == 19


@pytest.mark.parametrize(
    "case", CHECKS, ids=[f"{i}:{c['constraint']!r}~{c['version']}" for i, c in enumerate(CHECKS)]
)
def test_upstream_constraint_check(case):
    version = _version(case["version"])
    if case["constraint"] == "":
        # These rows come from TestConstraintCheck, which calls the internal parseConstraint,
        # where "" means "*". NewConstraint, which Flux calls, rejects "".
        with pytest.raises(ConstraintError):
            Constraint.parse("")
        constraint = Constraint.parse("*")
    else:
        constraint = Constraint.parse(case["constraint"])
    assert constraint.admits(version) is case["satisfied"]


@pytest.mark.parametrize(
    "case", COMPARISONS, ids=[f"{i}:{c['v1']}~{c['v2']}" for i, c in enumerate(COMPARISONS)]
)
def test_upstream_compare(case):
    a, b, expected = _version(case["v1"]), _version(case["v2"]), case["compare"]
    assert compare(a, b) == expected
    assert compare(b, a) == -expected
    assert (a < b, a == b, a > b) == (expected < 0, expected == 0, expected > 0)


def test_numeric_prerelease_identifiers_compare_as_numbers():
    assert _version("0.3.5-rc.10") > _version("0.3.5-rc.9")


def test_alphanumeric_prerelease_identifiers_compare_as_text():
    assert _version("0.3.5-rc10") < _version("0.3.5-rc9")


def test_release_is_above_its_prereleases():
    assert _version("0.3.5") > _version("0.3.5-rc.10")
    assert compare(_version("0.3.5"), _version("0.3.5-rc.10")) == 1


def test_range_without_prerelease_comparator_skips_prereleases():
    assert not Constraint.parse(">= 0.0.0").admits(_version("0.3.5-rc.1"))


def test_range_with_prerelease_comparator_admits_prereleases():
    assert Constraint.parse(">= 0.0.0-0").admits(_version("0.3.5-rc.1"))


# Each checked against Masterminds semver v3.4.0's code, which the brief asked to confirm.
@pytest.mark.parametrize(
    ("constraint", "version", "admitted"),
    [
        ("~1", "1.9.9", True),
        ("~1", "2.0.0", False),
        ("~1.2", "1.3.0", False),
        ("~>1.2.3", "1.2.9", True),
        ("^0.0.x", "0.0.9", True),
        ("^0.0.x", "0.1.0", False),
        ("^0.0.3", "0.0.4", False),
        ("^0.2", "0.3.0", False),
        ("^1.2", "2.0.0", False),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        (">1.2", "1.3.0-rc.1", False),
        (">1.2-0", "1.3.0-rc.1", True),
        (">1.2-0", "1.2.5-rc.1", False),
        (">1.2.3-rc.1", "1.2.3", True),
        ("1.x-0", "1.5.0-rc.1", True),
        ("1.x-0", "2.0.0-rc.1", False),
        ("1.x", "1.5.0-rc.1", False),
        ("*", "0.3.5-rc.1", False),
        ("*-0", "0.3.5-rc.1", True),
        ("!=1.2.3", "1.2.3-rc.1", False),
        ("!=1.2.x", "1.2.9", False),
        ("!=1.2.x", "1.3.0", True),
        ("!=*", "0.0.0", False),
        ("!=*", "1.0.0", True),
        ("^*", "0.0.0", True),
        ("^*", "1.2.3", False),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("1.2 - 1.4.5", "1.1.9", False),
        ("1.2 - 1.4", "1.4.9", True),
        ("=>1.2, =<1.4", "1.4.9", True),
        ("=>1.2, =<1.4", "1.5.0", False),
        ("< 1.0.0 || >= 2.0.0", "1.5.0", False),
        ("< 1.0.0 || >= 2.0.0", "2.0.0", True),
        (">= 0.0.0-0 || >= 1.0.0", "0.3.5-rc.1", True),
        (">= 0.3.0, < 0.4.0-0", "0.3.5-rc.1", True),
        (">= 0.3.0 < 0.4.0", "0.3.5-rc.1", False),
        ("v1.2.3", "1.2.3", True),
        ("1.2.3", "v1.2.3+other", True),
    ],
)
def test_upstream_semantics(constraint, version, admitted):
    assert Constraint.parse(constraint).admits(_version(version)) is admitted


@pytest.mark.parametrize(
    "text",
    [
        ">= banana",
        "",
        "   ",
        "1 ||",
        "|| 1",
        ">= 1.2.3.4",
        "1.2.3,",
        ">=1 <",
        "== 1.0",
        "1|2",
        ">= 1.0.0-01",
        "BAR >= 1.2.3",
        "12.3.34~ 1.2.3",
    ],
)
def test_constraint_error(text):
    with pytest.raises(ConstraintError):
        Constraint.parse(text)


def test_constraint_error_names_the_bad_part():
    with pytest.raises(ConstraintError, match="banana"):
        Constraint.parse(">= 1.0.0 || >= banana")
    with pytest.raises(ConstraintError, match="empty"):
        Constraint.parse("")


def test_constraint_error_is_a_value_error():
    assert issubclass(ConstraintError, ValueError)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1", (1, 0, 0, "", "")),
        ("v1.2", (1, 2, 0, "", "")),
        ("01.02.03", (1, 2, 3, "", "")),
        ("v2025.02.03-rc.1+build.7", (2025, 2, 3, "rc.1", "build.7")),
        ("18446744073709551615.0.0", (2**64 - 1, 0, 0, "", "")),
    ],
)
def test_version_parse(text, parts):
    version = _version(text)
    fields = (version.major, version.minor, version.patch, version.prerelease, version.metadata)
    assert fields == parts
    assert version.original == text


@pytest.mark.parametrize(
    "text",
    ["1.2.3.4", "1.0.0-01", "18446744073709551616.0.0", "V1.0.0", " 1.0.0", "1.0.0-", "latest"],
)
def test_version_parse_rejects(text):
    assert Version.parse(text) is None


def test_version_equality_ignores_prefix_and_metadata():
    a, b = _version("1.0.0"), _version("v1.0.0+build.1")
    assert a == b
    assert hash(a) == hash(b)
    assert a.original != b.original
    assert _version("1.0.0-rc.1").is_prerelease
    assert not a.is_prerelease


def test_select_highest_release_only():
    assert select_highest(PIPELINE_TAGS, Constraint.parse(">= 0.0.0")) == "0.3.4"


def test_select_highest_with_prereleases():
    assert select_highest(PIPELINE_TAGS, Constraint.parse(">= 0.0.0-0")) == "0.3.5-rc.10"


def test_select_highest_prefers_release_over_its_prereleases():
    tags = [*PIPELINE_TAGS, "0.3.5"]
    assert select_highest(tags, Constraint.parse(">= 0.0.0-0")) == "0.3.5"


def test_select_highest_does_not_depend_on_tag_order():
    tags = [*PIPELINE_TAGS, "v0.3.5-rc.10"]
    constraint = Constraint.parse(">= 0.0.0-0")
    for seed in range(20):
        shuffled = tags[:]
        random.Random(seed).shuffle(shuffled)
        assert select_highest(shuffled, constraint) == "0.3.5-rc.10"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["v1.0.0", "1.0.0"], "1.0.0"),
        (["1.0.0", "v1.0.0"], "1.0.0"),
        (["1.0.0+b2", "1.0.0+b1"], "1.0.0+b1"),
    ],
)
def test_select_highest_breaks_ties_by_smallest_tag(tags, expected):
    assert select_highest(tags, Constraint.parse(">= 0.0.0")) == expected


def test_select_highest_skips_tags_flux_cannot_parse():
    # Flux's version.ParseVersion wants two dots even though NewVersion accepts "1.2" and "v2".
    tags = ["1.2", "v2", "0.1.0"]
    assert select_highest(tags, Constraint.parse(">= 0.0.0")) == "0.1.0"
    assert select_highest(["1.2", "v2", "sha-abc1234"], Constraint.parse("*")) is None


@pytest.mark.parametrize(
    ("tag_filter", "expected"),
    [
        (None, "0.3.5-rc.10"),
        ("", "0.3.5-rc.10"),
        (r"^0\.3\.4$", "0.3.4"),
        (r"rc\.9", "0.3.5-rc.9"),
        ("rc.1", "0.3.5-rc.10"),
        ("abc1234", None),
        ("^v", None),
    ],
)
def test_select_highest_semver_filter(tag_filter, expected):
    constraint = Constraint.parse(">= 0.0.0-0")
    assert select_highest(PIPELINE_TAGS, constraint, tag_filter) == expected


def test_select_highest_filter_is_unanchored_and_applied_before_the_constraint():
    constraint = Constraint.parse(">= 0.0.0")
    # The filter keeps only pre-releases, which the constraint then rejects.
    assert select_highest(PIPELINE_TAGS, constraint, "-rc") is None
    assert select_highest(PIPELINE_TAGS, constraint, r"\.4") == "0.3.4"


def test_select_highest_nothing_matches():
    assert select_highest(PIPELINE_TAGS, Constraint.parse(">= 1.0.0")) is None
    assert select_highest([], Constraint.parse("*")) is None
