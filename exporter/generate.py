"""Writes the files that `promotion-exporter generate` renders (rules, docs, dashboards)."""

from __future__ import annotations

from pathlib import Path


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Each rendered file into directory, created if needed; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
