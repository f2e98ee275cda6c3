"""The README and the examples, checked against what they describe: the config loader, the
rules, the runbook and the CLI. Its generated tables are written by `make generate`."""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Any

import yaml

from exporter import cli
from exporter.config import STAGE_NAMES, ConfigError, load_config, parse_config
from exporter.snapshot import ErrorReason

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

NO_VALUE = "—"  # the README's empty cell


# --- README and examples -------------------------------------------------------------------


def readme() -> str:
    return README.read_text()


def readme_block(name: str) -> list[str]:
    text = readme()
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    assert begin in text and end in text, f"README lacks the {name} markers"
    return text.split(begin, 1)[1].split(end, 1)[0].rstrip("\n").split("\n")


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of a Markdown table, as stripped cells."""
    assert lines[1].startswith("|---")
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines[2:]]


def test_readme_starts_with_make_demo_and_make_test() -> None:
    first_block = readme().split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_alert_catalogue_is_the_rules() -> None:
    rules = [
        rule
        for group in yaml.safe_load((ROOT / "rules" / "promotion.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    rows = table_rows(readme_block("alerts"))
    assert len(rows) == len(rules)
    headings = {
        line.removeprefix("## ")
        for line in (ROOT / "docs" / "runbook.md").read_text().splitlines()
        if line.startswith("## ")
    }
    for row, rule in zip(rows, rules, strict=True):
        alert = rule["alert"]
        assert row[0] == f"[{alert}](docs/runbook.md#{alert.lower()})"
        assert alert in headings
        assert row[1] == rule["labels"]["severity"]
        assert row[3] == rule.get("for", NO_VALUE), alert
        node = re.search(r'tree="(\w+)", node="(\w+)"', rule["expr"])
        assert row[4] == (f"`{node[1]}` / `{node[2]}`" if node else NO_VALUE), alert


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)]+)\)", readme())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert "examples/alertmanager.yml" in local
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.MULTILINE)
            assert anchor in {heading.lower() for heading in headings}, link


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )


def test_readme_names_every_command() -> None:
    commands = subcommands(cli.build_parser())
    assert {"check-config", "diagnose", "generate", "demo"} <= set(commands)
    for command in commands:
        assert f"`promotion-exporter {command}" in readme(), command
    for target in subcommands(commands["generate"]):
        assert f"`promotion-exporter generate {target}" in readme(), target


def test_readme_troubleshooting_names_every_error_reason() -> None:
    lines = readme().split("## Troubleshooting the exporter", 1)[1].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| `reason`"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    reasons = [row[0] for row in table_rows(lines[start:end])]
    assert sorted(reasons) == sorted(f"`{reason.value}`" for reason in ErrorReason)


# The config reference: every documented key is accepted by the loader, every key the loader
# accepts is documented, and every literal default is what the loader does without the key.

PLACEHOLDERS = {"<name>": "integration", "<stage>": "integration"}
REFUSED_INLINE_SECRETS = {"token", "username"}  # accepted only to be refused with a hint


def reference() -> list[tuple[list[str], str]]:
    """(key segments, default cell) of each row of the README's config reference."""
    rows = table_rows(readme_block("config-reference"))
    return [(row[0].strip("`").split("."), row[2]) for row in rows]


def navigate(raw: dict[str, Any], segments: list[str]) -> dict[str, Any]:
    """The mapping the segments lead to in raw, made on the way where it is missing."""
    node = raw
    for segment in segments:
        key = PLACEHOLDERS.get(segment, segment)
        if key.endswith("[]"):
            items = node.get(key[:-2])
            if not (isinstance(items, list) and items and isinstance(items[0], dict)):
                items = node[key[:-2]] = [{}]
            node = items[0]
        else:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
    return node


def loader_path(segments: list[str]) -> str:
    """How the loader names that mapping in its problems."""
    pieces = []
    for segment in segments:
        key = PLACEHOLDERS.get(segment, segment)
        pieces.append(f"{key[:-2]}[0]" if key.endswith("[]") else key)
    return ".".join(pieces)


def accepted_keys(base: dict[str, Any], parent: list[str]) -> set[str] | None:
    """The keys the loader accepts in that mapping, read from its unknown-key problem; None
    when the loader does not read it as a mapping of fixed keys."""
    raw = copy.deepcopy(base)
    navigate(raw, parent)["zz_probe"] = 1
    try:
        parse_config(raw)
    except ConfigError as error:
        problems = error.problems
    else:
        return None
    prefix = ".".join(filter(None, (loader_path(parent), "zz_probe: unknown key (allowed: ")))
    for problem in problems:
        if problem.startswith(prefix):
            return set(problem.removeprefix(prefix).removesuffix(")").split(", "))
    return None


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def test_every_documented_key_is_accepted_by_the_loader() -> None:
    base = example("config.yml")
    for segments, _default in reference():
        parent, leaf = segments[:-1], segments[-1]
        if leaf in PLACEHOLDERS:
            assert parent == ["clusters"]  # cluster names are free
            continue
        accepted = accepted_keys(base, parent)
        assert accepted is not None, ".".join(segments)
        assert leaf.removesuffix("[]") in accepted, ".".join(segments)


def as_documented(segments: tuple[str, ...]) -> tuple[str, ...]:
    """A stage's keys are documented once, under <stage>."""
    if len(segments) >= 2 and segments[-2] == "stages" and segments[-1] in STAGE_NAMES:
        return (*segments[:-1], "<stage>")
    return segments


def test_every_key_the_loader_accepts_is_documented() -> None:
    base = example("config.yml")
    keys = [segments for segments, _default in reference()]
    documented: dict[tuple[str, ...], set[str]] = {}
    for segments in keys:
        documented.setdefault(tuple(segments[:-1]), set()).add(segments[-1].removesuffix("[]"))
    containers = {tuple(s) for s in keys} | {(*s[:-1], f"{s[-1]}[]") for s in keys} | {()}
    probed = 0
    for container_segments in containers:
        accepted = accepted_keys(base, list(container_segments))
        if accepted is None:
            continue
        probed += 1
        listed = documented.get(as_documented(container_segments), set())
        missing = accepted - REFUSED_INLINE_SECRETS - listed
        assert not missing, f"{'.'.join(container_segments) or 'top level'}: {missing}"
    assert probed >= 12
    assert "`token:` or `username:` is refused" in readme()


def literal_defaults(segments: list[str], cell: str) -> list[tuple[list[str], Any]]:
    """The documented defaults of a row: `value`, or `value` for <stage>, ...; none when the
    default is not a literal (required, none, the pipeline's ...)."""
    per_stage = re.findall(r"`([^`]+)` for (\w+)", cell)
    if per_stage:
        return [
            ([stage if s == "<stage>" else s for s in segments], _literal(value))
            for value, stage in per_stage
        ]
    single = re.fullmatch(r"`([^`]+)`", cell)
    return [(segments, _literal(single[1]))] if single else []


def _literal(text: str) -> Any:
    # YAML for mappings, lists, whole numbers and the three keywords; anything else
    # (">= 0.0.0") is a string.
    keyword = text in {"true", "false", "null"} or text.isdigit()
    return yaml.safe_load(text) if text[:1] in "{[" or keyword else text


def test_documented_defaults_are_what_the_loader_does() -> None:
    base = example("config.minimal.yml")
    base["github"] = {"repository": "your-github-user/homelab"}
    checked = 0
    for segments, cell in reference():
        for path, value in literal_defaults(segments, cell):
            with_default, without = copy.deepcopy(base), copy.deepcopy(base)
            navigate(with_default, path[:-1])[path[-1]] = value
            navigate(without, path[:-1]).pop(path[-1], None)
            assert parse_config(with_default) == parse_config(without), ".".join(path)
            checked += 1
    assert checked >= 30


def test_examples_load_and_show_every_documented_key() -> None:
    names = (
        "config.yml",
        "config.minimal.yml",
        "config.stable-only.yml",
        "config.commit-status.yml",
    )
    for name in names:
        load_config(ROOT / "examples" / name)
    full = example("config.yml")
    text = (ROOT / "examples" / "config.yml").read_text()
    for segments, _default in reference():
        leaf = segments[-1].removesuffix("[]")
        if leaf in PLACEHOLDERS:
            continue
        holders = [
            navigate(copy.deepcopy(full), [stage if s == "<stage>" else s for s in segments[:-1]])
            for stage in STAGE_NAMES
        ]
        # Alternatives that cannot be set together (token_file, in_cluster) are comments.
        assert any(leaf in holder for holder in holders) or f"# or: {leaf}:" in text, leaf


def test_readme_minimal_config_is_the_example() -> None:
    section = readme().split("## Configuration", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == example("config.minimal.yml")
