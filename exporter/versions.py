"""Versions and constraints with the semantics of Go's Masterminds semver v3.4.

Flux's source-controller picks an OCIRepository tag for `spec.ref.semver` with that library,
whose rules differ from the semver spec and from the Python `semver` package (ranges skip
pre-releases, wildcards, "^0.0.x"), so they are reimplemented here rule for rule.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import total_ordering

# Go's \s, which unlike Python's excludes \v.
_WS_CHARS = "\t\n\f\r "
_WS = r"[\t\n\f\r ]"
# Upstream's order matters: the empty alternative is the bare "1.2" (equal-or-tilde) operator.
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"
# Upstream's constraint version pattern, quirks included ('|' in a number is accepted here and
# rejected later), so the same expressions are accepted and rejected.
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_VERSION = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
# Upstream validates each "||" group with one regex and then splits it with another; matching
# one comparator at a time is equivalent because neither an operator nor a version can contain
# a separator. Possessive whitespace keeps Python's backtracking linear where Go's RE2 is.
_FIRST_COMPARATOR = re.compile(rf"{_WS}*+({_OPS}){_WS}*+({_CV})")
_NEXT_COMPARATOR = re.compile(rf"(?:{_WS}++|{_WS}*+,{_WS}*+)({_OPS}){_WS}*+({_CV})")
_TRAILING_WS = re.compile(rf"{_WS}*+")
_RANGE_DASH = re.compile(rf"(?<!{_WS}){_WS}++-{_WS}++")
_RANGE_END = re.compile(rf"({_CV}){_WS}*+")
_NUMBER_CHARS = frozenset("0123456789|xX*")
_IDENTIFIER_CHARS = frozenset(string.digits + string.ascii_letters + "-")
# _CV read backwards (last character first: "+metadata", "-prerelease", up to three dotted
# numbers, an optional "v"), so that the first version of a hyphen range can be found from its
# " - " in one pass. Each state lists (characters, next states).
_CV_BACKWARDS: dict[str, tuple[tuple[frozenset[str], tuple[str, ...]], ...]] = {
    "meta?": ((_IDENTIFIER_CHARS, ("meta",)),),
    "meta": (
        (_IDENTIFIER_CHARS, ("meta",)),
        (frozenset("."), ("meta.",)),
        (frozenset("+"), ("pre?", "number?")),
    ),
    "meta.": ((_IDENTIFIER_CHARS, ("meta",)),),
    "pre?": ((_IDENTIFIER_CHARS, ("pre",)),),
    "pre": (
        (_IDENTIFIER_CHARS, ("pre",)),
        (frozenset("."), ("pre.",)),
        (frozenset("-"), ("number?",)),
    ),
    "pre.": ((_IDENTIFIER_CHARS, ("pre",)),),
    "number?": ((_NUMBER_CHARS, ("number0",)),),
    "number0": (
        (_NUMBER_CHARS, ("number0",)),
        (frozenset("."), ("dot0",)),
        (frozenset("v"), ("v",)),
    ),
    "dot0": ((_NUMBER_CHARS, ("number1",)),),
    "number1": (
        (_NUMBER_CHARS, ("number1",)),
        (frozenset("."), ("dot1",)),
        (frozenset("v"), ("v",)),
    ),
    "dot1": ((_NUMBER_CHARS, ("number2",)),),
    "number2": ((_NUMBER_CHARS, ("number2",)), (frozenset("v"), ("v",))),
}
_CV_BACKWARDS_START = frozenset({"meta?", "pre?", "number?"})
_CV_BACKWARDS_DONE = frozenset({"number0", "number1", "number2", "v"})
_UINT64_LIMIT = 1 << 64


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed version. Equality and order are Masterminds precedence (see `compare`), so
    "1.0.0", "v1.0.0" and "1.0.0+build" are equal; `original` keeps the text as written."""

    major: int
    minor: int
    patch: int
    prerelease: str = ""
    metadata: str = ""
    original: str = ""

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """Masterminds NewVersion: "v" prefix, missing minor/patch and leading zeros allowed."""
        match = _VERSION.fullmatch(text)
        if match is None:
            return None
        major, minor, patch = (
            _uint64(part.lstrip(".")) if part else 0 for part in match.group(1, 2, 3)
        )
        prerelease = match[5] or ""
        if major is None or minor is None or patch is None or _has_leading_zero(prerelease):
            return None
        return cls(major, minor, patch, prerelease, match[8] or "", text)

    @property
    def is_prerelease(self) -> bool:
        return self.prerelease != ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return compare(self, other) == 0

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return compare(self, other) < 0

    def __hash__(self) -> int:
        # Pre-releases compare equal only when identical, so this agrees with __eq__.
        return hash((self.major, self.minor, self.patch, self.prerelease))


def _has_leading_zero(prerelease: str) -> bool:
    return any(
        part.isdigit() and len(part) > 1 and part[0] == "0" for part in prerelease.split(".")
    )


def compare(a: Version, b: Version) -> int:
    """-1, 0 or 1 as `a` sorts before, with or after `b`; build metadata is ignored."""
    for x, y in ((a.major, b.major), (a.minor, b.minor), (a.patch, b.patch)):
        if x != y:
            return 1 if x > y else -1
    if a.prerelease == b.prerelease:
        return 0
    if not a.prerelease:
        return 1
    if not b.prerelease:
        return -1
    return _compare_prerelease(a.prerelease, b.prerelease)


def _compare_prerelease(a: str, b: str) -> int:
    a_parts, b_parts = a.split("."), b.split(".")
    for i in range(max(len(a_parts), len(b_parts))):
        a_part = a_parts[i] if i < len(a_parts) else ""
        b_part = b_parts[i] if i < len(b_parts) else ""
        result = _compare_identifier(a_part, b_part)
        if result:
            return result
    return 0


def _compare_identifier(a: str, b: str) -> int:
    if a == b:
        return 0
    # An absent identifier sorts first: 1.0.0-rc < 1.0.0-rc.1.
    if not a:
        return -1
    if not b:
        return 1
    a_number, b_number = _uint64(a), _uint64(b)
    if a_number is None and b_number is None:
        return 1 if a > b else -1
    if b_number is None:
        return -1
    if a_number is None:
        return 1
    return 1 if a_number > b_number else -1


def _uint64(digits: str) -> int | None:
    # Go's strconv.ParseUint(digits, 10, 64), which upstream uses for version numbers and to
    # tell numeric pre-release identifiers apart: beyond 64 bits the text is not a number.
    if not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0")
    if len(significant) > len(str(_UINT64_LIMIT)):
        return None
    number = int(significant or "0")
    return number if number < _UINT64_LIMIT else None


class ConstraintError(ValueError):
    """A semver constraint expression that Masterminds NewConstraint would reject."""


@dataclass(frozen=True)
class _Comparator:
    operator: str
    version: Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def admits(self, version: Version) -> bool:
        return _CHECKS[self.operator](version, self)


@dataclass(frozen=True)
class Constraint:
    """An "||" of AND groups of comparators, e.g. ">= 1.2, < 2 || ~3.1"."""

    text: str
    _groups: tuple[tuple[_Comparator, ...], ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Masterminds NewConstraint; raises ConstraintError."""
        if not text.strip():
            raise ConstraintError("empty constraint")
        groups = _rewrite_hyphen_ranges(text).split("||")
        return cls(text, tuple(_parse_group(group, text) for group in groups))

    def admits(self, version: Version) -> bool:
        """Masterminds Constraints.Check: whether any AND group admits the version."""
        return any(_group_admits(group, version) for group in self._groups)


def _group_admits(group: tuple[_Comparator, ...], version: Version) -> bool:
    # Upstream's pre-release rule: an AND group admits pre-releases only when one of its own
    # comparators names one, which is why ">= 0.0.0" skips them and ">= 0.0.0-0" does not.
    if version.is_prerelease and not any(c.version.is_prerelease for c in group):
        return False
    return all(comparator.admits(version) for comparator in group)


def _rewrite_hyphen_ranges(text: str) -> str:
    # Upstream's rewriteRange: every "A - B" becomes ">= A, <= B ", replacing the first
    # occurrence of the matched text (leading whitespace included) in the string so far. Go's
    # regexp finds the matches in linear time; scanning from each " - " keeps that here.
    rewritten, previous_end = text, 0
    for dash in _RANGE_DASH.finditer(text):
        run_start = dash.start()
        while run_start > previous_end and text[run_start - 1] not in _WS_CHARS:
            run_start -= 1
        first = _leftmost_cv_start(text, run_start, dash.start())
        last = _RANGE_END.match(text, dash.end())
        if first is None or last is None:
            continue
        start = first
        while start > previous_end and text[start - 1] in _WS_CHARS:
            start -= 1
        replacement = f">= {text[first : dash.start()]}, <= {last[1]} "
        rewritten = rewritten.replace(text[start : last.end()], replacement, 1)
        previous_end = last.end()
    return rewritten


def _leftmost_cv_start(text: str, low: int, high: int) -> int | None:
    """The smallest p in [low, high) for which text[p:high] is a whole _CV."""
    states, leftmost = _CV_BACKWARDS_START, None
    for position in range(high - 1, low - 1, -1):
        char = text[position]
        states = frozenset(
            state
            for current in states
            for chars, next_states in _CV_BACKWARDS.get(current, ())
            if char in chars
            for state in next_states
        )
        if not states:
            break
        if states & _CV_BACKWARDS_DONE:
            leftmost = position
    return leftmost


def _parse_group(group: str, text: str) -> tuple[_Comparator, ...]:
    comparators, position = [], 0
    pattern = _FIRST_COMPARATOR
    while match := pattern.match(group, position):
        comparators.append(_parse_comparator(match, text))
        position, pattern = match.end(), _NEXT_COMPARATOR
    if not comparators or not _TRAILING_WS.fullmatch(group, position):
        if not group.strip():
            raise ConstraintError(f"empty alternative between '||' in {text!r}")
        raise ConstraintError(f"improper constraint {group.strip()!r} in {text!r}")
    return tuple(comparators)


def _parse_comparator(match: re.Match[str], text: str) -> _Comparator:
    operator, written, major = match[1], match[2], match[3]
    minor, patch, prerelease = match[4] or "", match[5] or "", match[6] or ""
    # A wildcard or missing part makes the comparator "dirty": it compares a range of
    # versions, and each operator treats the range its own way (">1.2" means ">=1.3.0").
    minor_dirty = patch_dirty = False
    if _is_wildcard(major):
        written = f"0.0.0{prerelease}"
    elif not minor or _is_wildcard(minor[1:]):
        minor_dirty, written = True, f"{major}.0.0{prerelease}"
    elif not patch or _is_wildcard(patch[1:]):
        patch_dirty, written = True, f"{major}{minor}.0{prerelease}"
    version = Version.parse(written)
    if version is None:
        raise ConstraintError(f"invalid version {match[2]!r} in constraint {text!r}")
    dirty = minor_dirty or patch_dirty or _is_wildcard(major)
    return _Comparator(operator, version, dirty, minor_dirty, patch_dirty)


def _is_wildcard(part: str) -> bool:
    return part in ("x", "X", "*")


def _not_equal(v: Version, c: _Comparator) -> bool:
    con = c.version
    if c.dirty:
        if v.major != con.major:
            return True
        if c.minor_dirty:
            return False
        if v.minor != con.minor:
            return True
        if c.patch_dirty:
            return v.prerelease != con.prerelease
        if v.patch != con.patch:
            return True
    return compare(v, con) != 0


def _greater_than(v: Version, c: _Comparator) -> bool:
    con = c.version
    if c.dirty and v.major != con.major:
        return v.major > con.major
    if c.minor_dirty:
        return False
    if c.patch_dirty:
        return v.minor > con.minor
    return compare(v, con) > 0


def _less_than(v: Version, c: _Comparator) -> bool:
    return compare(v, c.version) < 0


def _greater_or_equal(v: Version, c: _Comparator) -> bool:
    return compare(v, c.version) >= 0


def _less_or_equal(v: Version, c: _Comparator) -> bool:
    con = c.version
    if not c.dirty:
        return compare(v, con) <= 0
    if v.major != con.major:
        return v.major < con.major
    return c.minor_dirty or v.minor <= con.minor


def _tilde(v: Version, c: _Comparator) -> bool:
    con = c.version
    if compare(v, con) < 0:
        return False
    # "~*" and "~0.0.0" admit everything from 0.0.0 up.
    if (con.major, con.minor, con.patch) == (0, 0, 0) and not (c.minor_dirty or c.patch_dirty):
        return True
    return v.major == con.major and (c.minor_dirty or v.minor == con.minor)


def _tilde_or_equal(v: Version, c: _Comparator) -> bool:
    return _tilde(v, c) if c.dirty else compare(v, c.version) == 0


def _caret(v: Version, c: _Comparator) -> bool:
    con = c.version
    if compare(v, con) < 0:
        return False
    if con.major > 0 or c.minor_dirty:
        return v.major == con.major
    # Below 1.0.0 the leftmost non-zero part is fixed. "^*" lands here too and so admits only
    # 0.0.0: that is upstream's code, although its comment says "any".
    if v.major > 0:
        return False
    if con.minor > 0 or c.patch_dirty:
        return v.minor == con.minor
    return v.minor == 0 and v.patch == con.patch


_CHECKS: dict[str, Callable[[Version, _Comparator], bool]] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater_than,
    "<": _less_than,
    ">=": _greater_or_equal,
    "=>": _greater_or_equal,
    "<=": _less_or_equal,
    "=<": _less_or_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


def select_highest(
    tags: Iterable[str], constraint: Constraint, tag_filter: str | None = None
) -> str | None:
    """The tag Flux's source-controller picks for an OCIRepository semver ref, or None.

    `tag_filter` is `semverFilter`: a regex searched for anywhere in each tag (re.error if it
    does not compile). Tags that are not versions are skipped. Among tags of equal precedence
    ("1.0.0", "v1.0.0", "1.0.0+b1") Flux's unstable sort picks arbitrarily; here the smallest
    tag string wins, whatever the order of `tags`.
    """
    pattern = re.compile(tag_filter) if tag_filter else None
    best: Version | None = None
    for tag in tags:
        if pattern is not None and not pattern.search(tag):
            continue
        version = parse_tag(tag)
        if version is None or not constraint.admits(version):
            continue
        if best is None or version > best or (version == best and tag < best.original):
            best = version
    return best.original if best is not None else None


def parse_tag(tag: str) -> Version | None:
    """A tag as Flux reads it for semver selection: None for a tag Flux skips."""
    # fluxcd/pkg's version.ParseVersion: at least two dots, then NewVersion.
    return Version.parse(tag) if tag.count(".") >= 2 else None
