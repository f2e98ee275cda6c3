"""The seed's facts, written once: its names, workflow files, stages and symptom catalogue.

The seed runbook names its objects (`flux-system`, `platform`, `validation-success`, ...) and its
workflows; the config loader takes them as defaults, the runbook and `diagnose` print them, and
the rules and dashboards quote them. Change a fact here and `make generate` carries it into every
shipped file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# --- Names the config defaults to -------------------------------------------------------------

FLUX_NAMESPACE = "flux-system"
SOURCE_NAME = "flux-system"  # the OCIRepository Flux bootstraps
KUSTOMIZATION_NAME = "platform"
CANARY_NAMESPACE = "monitoring"
CANARY_NAME = "platform-validation"
ALERT_NAME = "validation-success"
PROVIDER_NAME = "github-dispatch"

GITHUB_URL = "https://api.github.com"
BRANCH = "main"
WATCH_PATH = "kubernetes/"
BUILD_WORKFLOW = "build-platform-artifact.yaml"
PROMOTE_WORKFLOW = "tag-validated-artifact.yaml"

# What each stage's OCIRepository should select: integration takes release candidates.
STAGE_SEMVER = {"integration": ">= 0.0.0-0", "live": ">= 0.0.0"}
ARTIFACT = "oci://ghcr.io/<owner>/homelab/platform"


def kubeconfig(cluster: str) -> str:
    return f"~/.kube/{cluster}.yaml"


# --- Stages -----------------------------------------------------------------------------------

# Per tree: the stage it promotes from and the stage it promotes to.
STAGE_PAIRS = {"integration": ("build", "integration"), "live": ("release", "live")}

# Per stage of promotion_version_info: what its version is, and the alerts that explain it.
STAGE_TEXT: dict[str, tuple[str, tuple[str, ...]]] = {
    "build": (
        "Newest artifact built (X.Y.Z-rc.N).",
        ("PromotionBuildFailing", "PromotionArtifactMissing"),
    ),
    "integration": (
        "Version the integration cluster has applied.",
        ("PromotionIntegrationSourceStale", "PromotionIntegrationReconcileFailing"),
    ),
    "validated": (
        "Newest artifact tagged validated-<sha>.",
        ("PromotionValidationNotDispatched", "PromotionValidationWorkflowFailing"),
    ),
    "release": (
        "Newest stable X.Y.Z tag, the version live should run.",
        ("PromotionStableTagMissing", "PromotionStableNotHigher"),
    ),
    "live": (
        "Version the live cluster has applied; red when it is a pre-release.",
        ("PromotionLivePrerelease", "PromotionLiveSourceStale", "PromotionLiveReconcileFailing"),
    ),
}


# --- Placeholders of the tree nodes' commands -------------------------------------------------


@dataclass(frozen=True)
class Placeholders:
    """The {fields} a node's commands use: the seed's names in the runbook, the config's in
    `diagnose`, which replaces the ones it knows."""

    kubeconfig: str
    namespace: str = FLUX_NAMESPACE
    source: str = SOURCE_NAME
    kustomization: str = KUSTOMIZATION_NAME
    artifact: str = ARTIFACT
    sha: str = "<sha>"
    version: str = "<version>"
    alert: str = ALERT_NAME
    provider: str = PROVIDER_NAME
    build_workflow: str = BUILD_WORKFLOW
    promote_workflow: str = PROMOTE_WORKFLOW

    def fill(self, command: str) -> str:
        return command.format(**asdict(self))


def placeholders(cluster: str) -> Placeholders:
    """The seed's names for the cluster of a tree."""
    return Placeholders(kubeconfig=kubeconfig(cluster))


# --- The symptom catalogue --------------------------------------------------------------------

# PromotionCanaryStale: a Canary is stale past the longer of these.
CANARY_STALE_MINIMUM_SECONDS = 900
CANARY_STALE_RUNS = 3

_LIVE = f"KUBECONFIG={kubeconfig('live')}"
_ANY = f"KUBECONFIG={kubeconfig('<cluster>')}"


@dataclass(frozen=True)
class SymptomText:
    """A non-tree alert's runbook text. `fires_when` is filled from the rule options
    ({lag_threshold}, {canary_window}, ...) for the README's alert catalogue."""

    alert: str
    severity: str
    summary: str
    fires_when: str
    meaning: str
    commands: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    health: bool = False  # the exporter's own health, not the pipeline's


SYMPTOMS = (
    SymptomText(
        "PromotionLagHigh",
        "critical",
        "A build has waited too long to reach the end of the pipeline.",
        "a build has waited more than `{lag_threshold}` to reach a stage (`promotion_lag_seconds`)",
        "The oldest build that has not reached a stage is older than the threshold. This is "
        "the page: the cause alert of the tree that is stuck says where.",
        ("promotion-exporter diagnose --config.file <config>",),
        ("Any node of either tree; look for the Promotion* cause alert of the pipeline.",),
    ),
    SymptomText(
        "PromotionValidationStale",
        "warning",
        "Integration runs an artifact that has not been validated for too long.",
        "integration has run an unvalidated artifact for more than `{staleness_threshold}`",
        "Integration applied its current artifact long ago, and it still has no "
        "validated-<sha> tag: the validation dispatch or the tag workflow is not working.",
        (f"gh run list --workflow={PROMOTE_WORKFLOW} --limit=5",),
        (
            "repository_dispatch not received by GHA: the token lacks repo scope.",
            "fluxcd/flux2#3933: githubdispatch dropped success events.",
        ),
    ),
    SymptomText(
        "PromotionLivePrerelease",
        "critical",
        "Live runs a pre-release version.",
        "live has applied a pre-release version",
        "The live cluster has applied a pre-release (X.Y.Z-rc.N): its semver constraint "
        "admits pre-releases.",
        (f"{_LIVE} kubectl get ocirepository -n {FLUX_NAMESPACE} -o yaml | grep semver",),
        (
            f"Live picks up wrong version: the constraint must be {STAGE_SEMVER['live']}, not "
            f"{STAGE_SEMVER['integration']}.",
        ),
    ),
    SymptomText(
        "PromotionCanaryCheckFailing",
        "critical",
        "A canary-checker health check is failing.",
        "a canary-checker check's last result failed",
        f"The seed's CanaryCheckFailure: a {CANARY_NAME} check failed for the whole for: window.",
        (
            f"{_ANY} kubectl get canaries -n {CANARY_NAMESPACE}",
            f"{_ANY} kubectl describe canary {CANARY_NAME} -n {CANARY_NAMESPACE}",
        ),
        (
            "kubernetes-api: the Kubernetes API does not answer 200 or 401.",
            "flux-pods-healthy: a Flux pod is not Running and Ready.",
        ),
    ),
    SymptomText(
        "PromotionCanaryFailureRateHigh",
        "warning",
        "A canary-checker health check fails often.",
        "a check failed more than `{canary_failure_ratio:.0%}` of the time over `{canary_window}`",
        "The seed's CanaryCheckHighFailureRate: a check flaps.",
        (f"{_ANY} kubectl describe canary {CANARY_NAME} -n {CANARY_NAMESPACE}",),
        ("An intermittently failing Flux pod or API endpoint.",),
    ),
    SymptomText(
        "PromotionCanaryStale",
        "warning",
        "A configured Canary has stopped running, or is missing.",
        f"a configured Canary has not run for `{CANARY_STALE_MINIMUM_SECONDS // 60}m` or "
        f"{CANARY_STALE_RUNS} runs of its schedule, whichever is longer, or is missing",
        "canary-checker keeps a Canary's last status when it stops running it, so its checks "
        "would read healthy forever. This fires when status.lastCheck is older than "
        f"{CANARY_STALE_MINIMUM_SECONDS // 60}m or {CANARY_STALE_RUNS} runs of its schedule, "
        "whichever is longer, or when the configured Canary (or the Canary CRD) is gone, "
        "while the exporter can read its cluster. A cluster that is down fires "
        "PromotionSourceDown instead.",
        (
            f"{_ANY} kubectl get canaries -A",
            f"{_ANY} kubectl -n canary-checker get pods",
            f"{_ANY} kubectl -n canary-checker logs deploy/canary-checker",
        ),
        (
            "canary-checker is not running, or cannot patch Canary status (RBAC).",
            "The Canary was deleted or renamed, or canary-checker was uninstalled.",
            "The Canary has no spec.schedule or spec.interval, so it never runs.",
        ),
    ),
    SymptomText(
        "PromotionExporterDown",
        "warning",
        "The promotion exporter is not being scraped.",
        'Prometheus cannot scrape `up{{job="{job}"}}`',
        "Prometheus has no data from the exporter, so no pipeline alert can fire. This is how "
        "a broken pipeline goes unnoticed for months.",
        (
            "kubectl -n monitoring get pods -l app.kubernetes.io/name=promotion-exporter",
            "kubectl -n monitoring logs deploy/promotion-exporter",
        ),
        ("The exporter crashed or cannot start: look for a config error in its log.",),
        health=True,
    ),
    SymptomText(
        "PromotionSourceDown",
        "warning",
        "The exporter cannot poll one of a pipeline's sources.",
        "a source the pipeline reads cannot be polled (`promotion_source_up == 0`)",
        "The last poll of the source failed (unreachable, 5xx, 401/403 or rate-limited). Tree "
        "nodes that need it are unknown and fire nothing until it is back.",
        ("kubectl -n monitoring logs deploy/promotion-exporter | grep '<name>'",),
        (
            "Token scopes: read:packages for GHCR; repo or actions read for GitHub.",
            "RBAC: the exporter's ClusterRole must allow get/list on Flux objects.",
        ),
        health=True,
    ),
    SymptomText(
        "PromotionExporterStale",
        "warning",
        "The exporter has not refreshed one of its sources for a long time.",
        "no poll of a source ran to completion (up or down) for 5 poll intervals or 10m, "
        "whichever is longer",
        'A poll hangs past its deadline (promotion_source_errors_total{reason="timeout"} '
        "grows) or the exporter's polling stopped; `up` and promotion_source_up do not show it.",
        (
            "kubectl -n monitoring logs deploy/promotion-exporter | grep timeout",
            "curl -s http://<exporter>:9883/readyz",
        ),
        (
            "An upstream that accepts the connection and then drips or holds its answer.",
            "A bug in the exporter: look for reason=internal in promotion_source_errors_total.",
        ),
        health=True,
    ),
)
