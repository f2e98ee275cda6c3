"""Config that must never load, as a table with the exact message of each (blackbox_exporter
style). Every one exits 3 with the file's path or the key path, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.cli import EXIT_CONFIG_INVALID, main

BASE = """interval: 30s
clusters:
  live: {kubeconfig: /etc/kube/live.yaml}
pipelines:
  - name: platform
    artifact: oci://ghcr.io/owner/homelab/platform
    stages:
      live: {cluster: live}
"""
INVALID = "{file}: invalid config:\n"


def _bomb() -> bytes:
    """600 bytes that expand to 9**9 strings, aliased into interval."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return ("\n".join(lines) + "\ninterval: *i\n" + BASE.replace("interval: 30s\n", "")).encode()


CASES = [
    (
        "alias bomb in interval",
        _bomb(),
        "  - {file}: not valid YAML: aliases expand to more than 100000 nodes, or refer to "
        "themselves at line 1, column 1\n",
    ),
    (
        "recursive alias",
        b"loop: &a [*a]\n" + BASE.encode(),
        "  - {file}: not valid YAML: aliases expand to more than 100000 nodes, or refer to "
        "themselves at line 1, column 1\n",
    ),
    ("UTF-16", BASE.encode("utf-16"), "  - {file}: not UTF-8 text (byte 0)\n"),
    ("binary", bytes(range(256)) * 4, "  - {file}: not UTF-8 text (byte 128)\n"),
    (
        "5,000 levels deep",
        ("x: " + "[" * 5000 + "]" * 5000 + "\n" + BASE).encode(),
        "  - {file}: not valid YAML: nested deeper than 64 levels at line 1, column 67\n",
    ),
    (
        "duplicate top-level key",
        (BASE + "interval: 1m\n").encode(),
        "  - {file}: not valid YAML: duplicate key 'interval' at line 9, column 1\n",
    ),
    (
        "duplicate nested key",
        BASE.replace(
            "  live: {kubeconfig: /etc/kube/live.yaml}\n",
            "  live: {kubeconfig: /etc/kube/live.yaml}\n  live: {in_cluster: true}\n",
        ).encode(),
        "  - {file}: not valid YAML: duplicate key 'live' at line 4, column 3\n",
    ),
    (
        "interval: 300000000y",
        BASE.replace("30s", "300000000y").encode(),
        "  - interval: must be from 1s to 1h\n",
    ),
    (
        "interval: 500ms",
        BASE.replace("30s", "500ms").encode(),
        "  - interval: must be from 1s to 1h\n",
    ),
    (
        "timeout: 300000000y",
        (BASE + "timeout: 300000000y\n").encode(),
        "  - timeout: must be from 1s to 5m\n",
    ),
    ("timeout: 6m", (BASE + "timeout: 6m\n").encode(), "  - timeout: must be from 1s to 5m\n"),
    (
        "grace_polls: 0",
        (BASE + "grace_polls: 0\n").encode(),
        "  - grace_polls: must be a whole number from 1 to 100\n",
    ),
    (
        "grace_polls: 101",
        (BASE + "grace_polls: 101\n").encode(),
        "  - grace_polls: must be a whole number from 1 to 100\n",
    ),
    (
        "a 2 MB file",
        (BASE + "#" + "x" * (2 * 1024 * 1024) + "\n").encode(),
        "  - {file}: larger than 1024 KiB: not a config\n",
    ),
    (
        "an inline token",
        (BASE + "github: {repository: owner/homelab, token: ghp_0123456789abcdef}\n").encode(),
        "  - github.token: inline secrets are refused: use token_env or token_file\n",
    ),
    (
        "unclosed flow sequence",
        b"interval: [30s\n",
        "  - {file}: not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, "
        "column 1\n",
    ),
    (
        "two pipelines on the same Flux objects",
        (
            BASE
            + "  - name: apps\n    artifact: oci://ghcr.io/owner/homelab/apps\n"
            + "    stages:\n      live: {cluster: live}\n"
        ).encode(),
        "  - pipelines[1].stages.live.source: OCIRepository flux-system/flux-system in cluster "
        "live is also watched by pipelines[0].stages.live.source\n"
        "  - pipelines[1].stages.live.kustomization: Kustomization flux-system/platform in "
        "cluster live is also watched by pipelines[0].stages.live.kustomization\n",
    ),
]


@pytest.mark.parametrize(("content", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_refused_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(content)

    assert main(["check-config", str(path)]) == EXIT_CONFIG_INVALID
    assert capsys.readouterr().err == (INVALID + message).format(file=path)


def test_the_alias_bomb_is_cheap_for_the_real_process(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_bytes(_bomb())
    # A fresh interpreter runs the CLI and reports its own peak RSS: the children of this test
    # process include other tests' servers, so their shared maximum would say nothing.
    script = (
        "import resource, sys\n"
        "from exporter.cli import main\n"
        f"code = main(['--config.file={path}'])\n"
        "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    seconds = time.monotonic() - started
    peak_mb = int(result.stderr.rsplit("peak_kb ", 1)[1]) / 1024

    assert result.returncode == EXIT_CONFIG_INVALID, result.stderr
    assert "aliases expand to more than 100000 nodes" in result.stderr
    assert "Traceback" not in result.stderr
    # Against 3.1 GB and 52 s before: about a Python start-up's worth.
    assert peak_mb < 200 and seconds < 10, (peak_mb, seconds)
