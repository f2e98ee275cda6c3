"""Command-line arguments, and nothing else: each command hands off to its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from exporter import __version__, demo, diagnose, docs, generate, rules, server
from exporter.config import Config, ConfigError, load_config

DEFAULT_LISTEN = ":9883"
DEFAULT_CONFIG = "promotion-exporter.yml"
EXIT_CONFIG_INVALID = 3


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG,
        help=f"path to the YAML config (default {DEFAULT_CONFIG})",
    )


def _rules_flags(parser: argparse.ArgumentParser) -> None:
    defaults = rules.RuleOptions()
    parser.add_argument("--out", type=Path, default=Path("rules"), help="output directory")
    parser.add_argument(
        "--lag-threshold",
        default=defaults.lag_threshold,
        help="PromotionLagHigh fires above this lag (default %(default)s)",
    )
    parser.add_argument(
        "--staleness-threshold",
        default=defaults.staleness_threshold,
        help="PromotionValidationStale threshold (default %(default)s)",
    )
    parser.add_argument(
        "--canary-failure-ratio",
        type=float,
        default=defaults.canary_failure_ratio,
        help="PromotionCanaryFailureRateHigh threshold (default %(default)s)",
    )
    parser.add_argument(
        "--canary-window",
        default=defaults.canary_window,
        help="window of the canary failure rate (default %(default)s)",
    )
    parser.add_argument(
        "--canary-for",
        default=defaults.canary_for,
        help="for: of PromotionCanaryCheckFailing (default %(default)s)",
    )
    parser.add_argument(
        "--source-down-for",
        default=defaults.source_down_for,
        help="for: of PromotionSourceDown (default %(default)s)",
    )
    parser.add_argument(
        "--job", default=defaults.job, help="the exporter's scrape job, for PromotionExporterDown"
    )
    parser.add_argument("--runbook-url", default=defaults.runbook_url)
    parser.add_argument("--dashboard-url", default=defaults.dashboard_url)
    parser.add_argument(
        "--node-for",
        action="append",
        default=[],
        metavar="ALERT=DURATION",
        help="override one tree alert's for:, e.g. PromotionArtifactMissing=1h",
    )
    parser.add_argument(
        "--for-override",
        default=None,
        metavar="DURATION",
        help="replace every for: (for tests, e.g. 0s)",
    )
    parser.add_argument(
        "--suppression-window",
        default=defaults.suppression_window,
        metavar="DURATION",
        help="how long an earlier tree node must stay failing or unknown before it silences "
        "later ones; shorter than every tree for:, 0s at once (default %(default)s)",
    )
    parser.add_argument(
        "--dora-failure-window",
        default=defaults.dora_failure_window,
        metavar="DURATION",
        help="how long after a live deployment a failing check or a rollback counts it as a "
        "failed change, for the change failure rate (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promotion-exporter",
        description="Prometheus exporter for Flux OCI promotion pipelines.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _config_flag(parser)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN,
        help=f"address to serve /metrics on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"]
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", help="the config file")

    demo = commands.add_parser(
        "demo",
        help="run the simulator-backed demo: a healthy "
        "promotion, then a stuck one, with live /metrics",
    )
    demo.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default="127.0.0.1:9883",
        help="address to serve /metrics on",
    )
    demo.add_argument(
        "--step-seconds",
        type=float,
        default=3.0,
        help="pause between pipeline steps (default %(default)s)",
    )
    demo.add_argument(
        "--registry",
        choices=["auto", "builtin", "distribution"],
        default="auto",
        help="docker-registry when installed (auto), or the built-in one",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="write the demo's config file here instead of a temp dir",
    )
    demo.add_argument(
        "--exit-when-stuck",
        action="store_true",
        help="exit after the story (exit code as diagnose) instead of serving on",
    )

    walk = commands.add_parser(
        "diagnose",
        help="poll once and walk both debugging trees; "
        "exit 0 healthy, 1 stuck, 2 undetermined, 3 bad config",
    )
    _config_flag(walk)

    generate = commands.add_parser("generate", help="regenerate shipped files")
    targets = generate.add_subparsers(dest="target", metavar="TARGET", required=True)
    _rules_flags(targets.add_parser("rules", help="the alert rules (both formats)"))
    targets.add_parser("docs", help="docs/runbook.md and docs/metrics.md").add_argument(
        "--out", type=Path, default=Path("docs"), help="output directory"
    )
    targets.add_parser(
        "dashboards", help="the Grafana dashboards and their ConfigMap"
    ).add_argument("--out", type=Path, default=Path("dashboards"), help="output directory")
    return parser


def _rule_options(args: argparse.Namespace) -> rules.RuleOptions:
    node_for = {}
    for item in args.node_for:
        alert, sep, duration = item.partition("=")
        if not sep:
            raise ValueError(f"--node-for {item!r} is not ALERT=DURATION")
        node_for[alert] = duration
    return rules.RuleOptions(
        lag_threshold=args.lag_threshold,
        staleness_threshold=args.staleness_threshold,
        canary_failure_ratio=args.canary_failure_ratio,
        canary_window=args.canary_window,
        canary_for=args.canary_for,
        source_down_for=args.source_down_for,
        job=args.job,
        runbook_url=args.runbook_url,
        dashboard_url=args.dashboard_url,
        node_for=node_for,
        for_override=args.for_override,
        suppression_window=args.suppression_window,
        dora_failure_window=args.dora_failure_window,
    )


def _generate(args: argparse.Namespace) -> int:
    if args.target == "rules":
        try:
            files = rules.render_files(_rule_options(args))
        except ValueError as error:
            print(f"generate rules: {error}", file=sys.stderr)
            return 2
    elif args.target == "dashboards":
        # grafana-foundation-sdk is a development dependency: only regenerating needs it.
        from exporter import dashboards

        files = dashboards.render_files()
    else:
        files = docs.render_files()
    for path in generate.write_files(args.out, files):
        print(f"wrote {path}")
    return 0


def _with_config(path: str, action: Callable[[Config], int]) -> int:
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return EXIT_CONFIG_INVALID
    return action(config)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper().replace("WARN", "WARNING"),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
    )
    # Per-request lines from the HTTP libraries would drown the exporter's own log.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "check-config":
        return _with_config(args.file, lambda _config: print(f"{args.file}: ok") or 0)
    if args.command == "diagnose":
        return _with_config(args.config_file, diagnose.run)
    if args.command == "generate":
        return _generate(args)
    if args.command == "demo":
        return demo.run(
            demo.DemoOptions(
                listen_address=args.listen_address,
                step_seconds=args.step_seconds,
                registry=args.registry,
                workdir=args.workdir,
                exit_when_stuck=args.exit_when_stuck,
            )
        )
    try:
        server.parse_listen_address(args.listen_address)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    return _with_config(
        args.config_file, lambda config: server.serve(config, args.listen_address) or 0
    )
