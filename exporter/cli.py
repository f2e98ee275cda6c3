"""Command-line arguments, and nothing else: each command hands off to its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from exporter import __version__, demo, diagnose, docs, generate, redact, rules, server
from exporter.config import Config, ConfigError, load_config

DEFAULT_LISTEN = ":9883"
DEFAULT_CONFIG = "promotion-exporter.yml"
EXIT_CONFIG_INVALID = 3
REMOTE_TIMEOUT_SECONDS = 10.0


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG,
        help=f"path to the YAML config (default {DEFAULT_CONFIG})",
    )


def _rules_flags(parser: argparse.ArgumentParser) -> None:
    defaults = rules.RuleOptions()
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
    demo.add_argument(
        "--no-alerting",
        dest="alerting",
        action="store_false",
        help="do not start Prometheus and Alertmanager even when they are installed",
    )
    demo.add_argument(
        "--prometheus.listen-address",
        dest="prometheus_address",
        default="127.0.0.1:9090",
        help="where the demo's Prometheus listens (default %(default)s)",
    )
    demo.add_argument(
        "--alertmanager.listen-address",
        dest="alertmanager_address",
        default="127.0.0.1:9093",
        help="where the demo's Alertmanager listens (default %(default)s)",
    )

    walk = commands.add_parser(
        "diagnose",
        help="poll once and walk both debugging trees; "
        "exit 0 healthy, 1 stuck, 2 undetermined, 3 bad config",
    )
    _config_flag(walk)
    walk.add_argument(
        "--url",
        default=None,
        help="diagnose from a running exporter's /api/v1/state (e.g. http://exporter:9883) "
        "instead of polling with the config",
    )

    generate = commands.add_parser("generate", help="regenerate shipped files")
    targets = generate.add_subparsers(dest="target", metavar="TARGET", required=True)
    rules_target = targets.add_parser("rules", help="the alert rules (both formats)")
    rules_target.add_argument("--out", type=Path, default=Path("rules"), help="output directory")
    _rules_flags(rules_target)
    targets.add_parser("docs", help="docs/runbook.md and docs/metrics.md").add_argument(
        "--out", type=Path, default=Path("docs"), help="output directory"
    )
    targets.add_parser(
        "dashboards", help="the Grafana dashboards and their ConfigMap"
    ).add_argument("--out", type=Path, default=Path("dashboards"), help="output directory")
    everything = targets.add_parser(
        "all",
        help="every generated file of a checkout (make generate): rules, docs, dashboards, "
        "their deploy/base copies and the README's blocks",
    )
    everything.add_argument("--root", type=Path, default=Path(), help="the checkout")
    everything.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the stale files"
    )
    _rules_flags(everything)
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
    if args.target in ("rules", "all"):
        try:
            options = _rule_options(args)
            options.validate()
        except ValueError as error:
            print(f"generate {args.target}: {error}", file=sys.stderr)
            return 2
    if args.target == "all":
        return _generate_checkout(args.root, options, check=args.check)
    if args.target == "rules":
        files = rules.render_files(options)
    elif args.target == "dashboards":
        # grafana-foundation-sdk is a development dependency: only regenerating needs it.
        from exporter import dashboards

        files = dashboards.render_files()
    else:
        files = docs.render_files()
    for path in generate.write_files(args.out, files):
        print(f"wrote {path}")
    return 0


def _generate_checkout(root: Path, options: rules.RuleOptions, check: bool) -> int:
    files = generate.checkout_files(root, options)
    stale = generate.stale_files(root, files)
    if check:
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        if stale:
            print("run: make generate", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(files[name])
        print(f"wrote {name}")
    return 0


def _with_config(path: str, action: Callable[[Config], int]) -> int:
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return EXIT_CONFIG_INVALID
    return action(config)


def _config_ok(path: str, _config: Config) -> int:
    print(f"{path}: ok")
    return 0


def _serve(listen_address: str, config: Config) -> int:
    server.serve(config, listen_address)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper().replace("WARN", "WARNING"),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
    )
    redact.install()
    # Per-request lines from the HTTP libraries would drown the exporter's own log.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "check-config":
        return _with_config(args.file, partial(_config_ok, args.file))
    if args.command == "diagnose":
        if args.url:
            return diagnose.run_remote(args.url, REMOTE_TIMEOUT_SECONDS)
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
                alerting=args.alerting,
                prometheus_address=args.prometheus_address,
                alertmanager_address=args.alertmanager_address,
            )
        )
    try:
        server.parse_listen_address(args.listen_address)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    return _with_config(args.config_file, partial(_serve, args.listen_address))
