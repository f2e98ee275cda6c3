"""The one YAML style of every generated file: keys in the order written, and block scalars
for multi-line strings so PromQL and embedded JSON read as themselves in review."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(*documents: Any) -> str:
    """One document as YAML, or several separated by `---`."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)
