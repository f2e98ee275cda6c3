"""`make generate` writes every generated file, and `--check` names the stale ones.

Each test runs the real command on a copy of the checkout's generated files, never on the
checkout itself; `make test` runs the check on the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporter import cli, generate
from exporter.rules import RuleOptions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return generate.checkout_files(ROOT, RuleOptions())


@pytest.fixture
def copy(tmp_path: Path, rendered: dict[str, str]) -> Path:
    for name in rendered:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    return tmp_path


def test_one_command_covers_every_copy(rendered: dict[str, str]) -> None:
    assert set(rendered) == {
        "rules/promotion.rules.yml",
        "rules/promotion-prometheusrule.yaml",
        "deploy/base/prometheusrule.yaml",
        "docs/runbook.md",
        "docs/metrics.md",
        "dashboards/promotion-overview.json",
        "dashboards/promotion-dashboards-configmap.yaml",
        "deploy/base/dashboards-configmap.yaml",
        "README.md",
    }
    rule = rendered["rules/promotion-prometheusrule.yaml"]
    assert rendered["deploy/base/prometheusrule.yaml"] == rule


def test_check_names_each_stale_file_and_generate_rewrites_it(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["generate", "all", "--root", str(copy), "--check"]) == 0
    (copy / "deploy/base/prometheusrule.yaml").write_text("# edited by hand\n")
    (copy / "docs/metrics.md").unlink()
    capsys.readouterr()

    assert cli.main(["generate", "all", "--root", str(copy), "--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "stale: deploy/base/prometheusrule.yaml",
        "stale: docs/metrics.md",
        "run: make generate",
    ]
    assert (copy / "deploy/base/prometheusrule.yaml").read_text() == "# edited by hand\n"

    assert cli.main(["generate", "all", "--root", str(copy)]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "wrote deploy/base/prometheusrule.yaml",
        "wrote docs/metrics.md",
    ]
    assert cli.main(["generate", "all", "--root", str(copy), "--check"]) == 0


def test_readme_blocks_are_rewritten_between_their_markers_only(copy: Path) -> None:
    readme = copy / "README.md"
    original = readme.read_text()
    begin = "<!-- alerts:begin -->\n"
    readme.write_text(original.replace(begin, begin + "| a stale row |\n"))
    assert cli.main(["generate", "all", "--root", str(copy)]) == 0
    assert readme.read_text() == original


def test_rule_flags_reach_every_copy_of_the_rules(copy: Path) -> None:
    flags = ["--lag-threshold", "2h"]
    assert cli.main(["generate", "all", "--root", str(copy), *flags]) == 0
    for name in ("rules/promotion.rules.yml", "deploy/base/prometheusrule.yaml"):
        assert "max by (pipeline) (promotion_lag_seconds) > 7200" in (copy / name).read_text()
    assert "more than `2h` to reach a stage" in (copy / "README.md").read_text()
    assert cli.main(["generate", "all", "--root", str(copy), "--check", *flags]) == 0
    assert cli.main(["generate", "all", "--root", str(copy), "--check"]) == 1


def test_a_readme_without_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="alerts:begin"):
        generate.replace_block("# no markers\n", "alerts", "| row |\n")


def test_bad_rule_flags_write_nothing(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    assert cli.main(["generate", "all", "--root", str(copy), "--canary-failure-ratio", "2"]) == 2
    assert "generate all: --canary-failure-ratio" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()} == before
