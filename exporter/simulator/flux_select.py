"""source-controller's OCIRepository tag selection, for the simulator's Flux.

Written from upstream's Go, not from `exporter.versions`, so that the fake cluster cannot
inherit a bug of the code it checks: fluxcd/source-controller v1.7.4
`internal/controller/ocirepository_controller.go` (getArtifactRef, getTagBySemver,
filterTags), fluxcd/pkg `version/version.go` (ParseVersion) and Masterminds/semver v3.4.0
`version.go` and `constraints.go` (NewVersion in its default coercing mode, Compare,
NewConstraint, Check without IncludePrerelease, as Flux calls it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

LATEST = "latest"  # go-containerregistry's name.DefaultTag, used when the ref names nothing
_MAX_UINT64 = 2**64 - 1
_DIGITS = re.compile(r"[0-9]+")
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")

# Masterminds' looseSemVerRegex, which NewVersion matches when CoerceNewVersion is on (the
# default): leading zeros and a missing minor or patch are accepted.
_LOOSE_VERSION = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)

# constraints.go's patterns, verbatim except that Go's \s (no \v) is spelled out and Go's
# end-of-text `$` becomes fullmatch. The '|' inside the number classes is upstream's quirk.
_S = r"[\t\n\f\r ]"
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_ONE_CONSTRAINT = re.compile(rf"{_S}*({_OPS}){_S}*({_CV}){_S}*")
_RANGE = re.compile(rf"{_S}*({_CV}){_S}+-{_S}+({_CV}){_S}*")
_FIND_CONSTRAINT = re.compile(rf"({_OPS}){_S}*({_CV})")
_VALID_GROUP = re.compile(
    rf"({_S}*({_OPS}){_S}*({_CV}){_S}*)((?:{_S}+|,{_S}*)({_OPS}){_S}*({_CV}){_S}*)*"
)
_RANGE_UPPER_GROUP = 11  # the second version of "A - B": after the first version's 10 groups


class ConstraintError(ValueError):
    """NewConstraint rejected the expression; Flux reports "semver '...' parse error"."""


@dataclass(frozen=True)
class SemVer:
    """A parsed version; `original` is the tag exactly as listed, which Flux selects."""

    major: int
    minor: int
    patch: int
    prerelease: str
    metadata: str
    original: str


def _uint64(text: str) -> int | None:
    # strconv.ParseUint(text, 10, 64): ASCII digits only, no sign, and no overflow.
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _MAX_UINT64 else None


def _valid_prerelease(prerelease: str) -> bool:
    for part in prerelease.split("."):
        if not _IDENTIFIER.fullmatch(part):
            return False
        if _DIGITS.fullmatch(part) and len(part) > 1 and part[0] == "0":
            return False
    return True


def _valid_metadata(metadata: str) -> bool:
    return all(_IDENTIFIER.fullmatch(part) for part in metadata.split("."))


def parse_version(text: str) -> SemVer | None:
    """Masterminds' NewVersion (coercing): "1", "v1.2" and "01.02.03" parse; None if not."""
    match = _LOOSE_VERSION.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = (_uint64((match.group(i) or "0").removeprefix(".")) for i in (1, 2, 3))
    if major is None or minor is None or patch is None:
        return None
    prerelease, metadata = match.group(5) or "", match.group(8) or ""
    if prerelease and not _valid_prerelease(prerelease):
        return None
    if metadata and not _valid_metadata(metadata):
        return None
    return SemVer(major, minor, patch, prerelease, metadata, text)


def parse_tag(tag: str) -> SemVer | None:
    """fluxcd/pkg version.ParseVersion: NewVersion, but only for text with two dots or more
    anywhere (strings.SplitN(v, ".", 3) must give three parts), so "1.2" and "v2" are skipped
    while "1-rc.1.2" is 1.0.0-rc.1.2."""
    if tag.count(".") < 2:
        return None
    return parse_version(tag)


def _compare_identifier(left: str, right: str) -> int:
    # comparePrePart: a missing identifier is lower; numbers (that fit a uint64) are compared
    # as numbers and sort below text; text is compared bytewise.
    if left == right:
        return 0
    if not left or not right:
        return -1 if not left else 1
    left_number, right_number = _uint64(left), _uint64(right)
    if left_number is None and right_number is None:
        return 1 if left > right else -1
    if left_number is None:
        return 1
    if right_number is None:
        return -1
    return 1 if left_number > right_number else -1


def _compare_prerelease(left: str, right: str) -> int:
    left_parts, right_parts = left.split("."), right.split(".")
    for i in range(max(len(left_parts), len(right_parts))):
        left_part = left_parts[i] if i < len(left_parts) else ""
        right_part = right_parts[i] if i < len(right_parts) else ""
        if order := _compare_identifier(left_part, right_part):
            return order
    return 0


def compare(left: SemVer, right: SemVer) -> int:
    """Masterminds' Compare: -1, 0 or 1; build metadata never counts."""
    left_core = (left.major, left.minor, left.patch)
    right_core = (right.major, right.minor, right.patch)
    if left_core != right_core:
        return 1 if left_core > right_core else -1
    if not left.prerelease or not right.prerelease:
        # A release ranks above its own pre-releases.
        return (not left.prerelease) - (not right.prerelease)
    return _compare_prerelease(left.prerelease, right.prerelease)


@dataclass(frozen=True)
class _Comparator:
    """One operator and version of an AND group, with which parts were wildcards."""

    operator: str
    version: SemVer
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def admits(self, candidate: SemVer, include_prerelease: bool) -> bool:
        # Every operator first drops pre-releases unless the group opted in to them.
        if candidate.prerelease and not include_prerelease:
            return False
        return _OPERATORS[self.operator](candidate, self)


def _not_equal(v: SemVer, c: _Comparator) -> bool:
    con = c.version
    if c.dirty:
        if con.major != v.major:
            return True
        if con.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if con.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            if v.prerelease or con.prerelease:
                return _compare_prerelease(v.prerelease, con.prerelease) != 0
            return False
    return compare(v, con) != 0


def _greater(v: SemVer, c: _Comparator) -> bool:
    con = c.version
    if not c.dirty:
        return compare(v, con) > 0
    if v.major != con.major:
        return v.major > con.major
    if c.minor_dirty:
        return False  # ">11" wants 12 or higher, so no 11.y.z passes
    if c.patch_dirty:
        return v.minor > con.minor
    return compare(v, con) > 0


def _less(v: SemVer, c: _Comparator) -> bool:
    return compare(v, c.version) < 0


def _greater_or_equal(v: SemVer, c: _Comparator) -> bool:
    return compare(v, c.version) >= 0


def _less_or_equal(v: SemVer, c: _Comparator) -> bool:
    con = c.version
    if not c.dirty:
        return compare(v, con) <= 0
    if v.major > con.major:
        return False
    return not (v.major == con.major and v.minor > con.minor and not c.minor_dirty)


def _tilde(v: SemVer, c: _Comparator) -> bool:
    con = c.version
    if compare(v, con) < 0:
        return False
    if (con.major, con.minor, con.patch) == (0, 0, 0) and not (c.minor_dirty or c.patch_dirty):
        return True  # "~0.0.0" and "~*" admit everything
    if v.major != con.major:
        return False
    return v.minor == con.minor or c.minor_dirty


def _tilde_or_equal(v: SemVer, c: _Comparator) -> bool:
    # A bare or "=" version with a wildcard means tilde, otherwise plain equality.
    return _tilde(v, c) if c.dirty else compare(v, c.version) == 0


def _caret(v: SemVer, c: _Comparator) -> bool:
    con = c.version
    if compare(v, con) < 0:
        return False
    if con.major > 0 or c.minor_dirty:
        return v.major == con.major
    if v.major > 0:
        return False
    if con.minor > 0 or c.patch_dirty:
        return v.minor == con.minor
    if v.minor > 0:
        return False
    return v.patch == con.patch


_OPERATORS: dict[str, Callable[[SemVer, _Comparator], bool]] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater,
    "<": _less,
    ">=": _greater_or_equal,
    "=>": _greater_or_equal,
    "<=": _less_or_equal,
    "=<": _less_or_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


def _is_wildcard(part: str) -> bool:
    return part in ("x", "X", "*")


def _comparator(text: str) -> _Comparator:
    """parseConstraint: wildcards and missing parts become zeros and mark the part dirty."""
    match = _ONE_CONSTRAINT.fullmatch(text)
    if match is None:
        raise ConstraintError(f"improper constraint: {text}")
    operator, written = match.group(1), match.group(2)
    major, minor, patch, prerelease = (match.group(i) or "" for i in (3, 4, 5, 6))
    minor_dirty = patch_dirty = False
    if _is_wildcard(major) or not major:
        normalised, dirty = f"0.0.0{prerelease}", True
    elif _is_wildcard(minor.removeprefix(".")) or not minor:
        normalised, dirty, minor_dirty = f"{major}.0.0{prerelease}", True, True
    elif _is_wildcard(patch.removeprefix(".")) or not patch:
        normalised, dirty, patch_dirty = f"{major}{minor}.0{prerelease}", True, True
    else:
        normalised, dirty = written, False
    version = parse_version(normalised)
    if version is None:
        raise ConstraintError(f"improper constraint: {text}")
    return _Comparator(operator, version, dirty, minor_dirty, patch_dirty)


def _rewrite_ranges(text: str) -> str:
    # rewriteRange: each "A - B" becomes ">= A, <= B ", replacing its first occurrence.
    rewritten = text
    for match in _RANGE.finditer(text):
        replacement = f">= {match.group(1)}, <= {match.group(_RANGE_UPPER_GROUP)} "
        rewritten = rewritten.replace(match.group(0), replacement, 1)
    return rewritten


@dataclass(frozen=True)
class Constraints:
    """NewConstraint's result: OR of AND groups of comparators."""

    groups: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Constraints:
        groups = []
        for group in _rewrite_ranges(text).split("||"):
            if not _VALID_GROUP.fullmatch(group):
                raise ConstraintError(f"improper constraint: {group}")
            found = [m.group(0) for m in _FIND_CONSTRAINT.finditer(group)]
            groups.append(tuple(_comparator(part) for part in found))
        return cls(tuple(groups))

    def check(self, version: SemVer) -> bool:
        """Check with IncludePrerelease off: a group admits pre-releases only if one of its
        own comparators names a pre-release."""
        return any(self._group_admits(group, version) for group in self.groups)

    @staticmethod
    def _group_admits(group: tuple[_Comparator, ...], version: SemVer) -> bool:
        include_prerelease = any(c.version.prerelease for c in group)
        return all(c.admits(version, include_prerelease) for c in group)


def highest_matching(
    tags: Iterable[str], constraints: Constraints, semver_filter: str | None = None
) -> str | None:
    """getTagBySemver over a tag list: filter, parse, check, take the highest.

    Among tags of equal precedence ("1.0.0" and "v1.0.0") the first listed wins: Go's
    sort.Sort is an insertion sort, so stable, for the dozen or fewer matches a pipeline has.
    """
    # regexp.MatchString is an unanchored search. Python's syntax is close to RE2's for the
    # filters Flux users write, though not identical.
    pattern = re.compile(semver_filter) if semver_filter else None
    best: SemVer | None = None
    for tag in tags:
        if pattern is not None and not pattern.search(tag):
            continue
        version = parse_tag(tag)
        if version is None or not constraints.check(version):
            continue
        if best is None or compare(version, best) > 0:
            best = version
    return None if best is None else best.original


def select_tag(
    tags: Iterable[str],
    *,
    semver: str | None,
    semver_filter: str | None = None,
    tag: str | None = None,
    digest: str | None = None,
) -> str | None:
    """What an OCIRepository's spec.ref resolves to among a repository's tags, or None when
    nothing does (Flux's "no match found for semver", or a tag the registry lacks).

    getArtifactRef's precedence: digest, then semver (with semverFilter), then tag, then
    "latest"; empty strings count as unset, as Go's `!= ""` does. A digest is returned as
    given, since a tag list cannot tell whether it exists. Tags are taken in "ASCIIbetical"
    order, one of the two orders the OCI distribution spec lets a registry list them in.
    Raises ConstraintError for a semver Flux cannot parse.
    """
    if digest:
        return digest
    listed = sorted(tags)
    if semver:
        return highest_matching(listed, Constraints.parse(semver), semver_filter)
    wanted = tag or LATEST
    return wanted if wanted in listed else None
