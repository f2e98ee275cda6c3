"""Writes the files `promotion-exporter generate` renders, and every generated file of a checkout.

`make generate` (`promotion-exporter generate all`) writes them all at once: the rules and their
deploy/base copy, docs/, the dashboards and their deploy/base copy, and the README's blocks
between `<!-- name:begin -->` and `<!-- name:end -->`. `--check` writes nothing and names the
files that differ, which is how `make test` fails on a stale copy.
"""

from __future__ import annotations

from pathlib import Path

from exporter import docs, rules

README = "README.md"


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Each rendered file into directory, created if needed; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def replace_block(text: str, name: str, block: str) -> str:
    """text with the lines between the named markers replaced by block."""
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    head, found, rest = text.partition(begin)
    _old, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"{README} lacks the markers {begin.strip()} ... {end}")
    return head + begin + block + end + tail


def checkout_files(root: Path, options: rules.RuleOptions) -> dict[str, str]:
    """Every generated file of the checkout at root, by path relative to it."""
    # grafana-foundation-sdk is a development dependency: only regenerating needs it.
    from exporter import dashboards

    rule_files = rules.render_files(options)
    dashboard_files = dashboards.render_files()
    readme = (root / README).read_text()
    for name, block in docs.readme_blocks(options).items():
        readme = replace_block(readme, name, block)
    return {
        **{f"rules/{name}": text for name, text in rule_files.items()},
        "deploy/base/prometheusrule.yaml": rule_files[rules.PROMETHEUS_RULE_FILE],
        **{f"docs/{name}": text for name, text in docs.render_files().items()},
        **{f"dashboards/{name}": text for name, text in dashboard_files.items()},
        "deploy/base/dashboards-configmap.yaml": dashboard_files[dashboards.CONFIGMAP_FILE],
        README: readme,
    }


def stale_files(root: Path, files: dict[str, str]) -> list[str]:
    """The files under root whose content is not the rendered one (missing ones included)."""
    return [
        name
        for name, text in files.items()
        if not (root / name).is_file() or (root / name).read_text() != text
    ]
