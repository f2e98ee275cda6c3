"""The runbook's two debugging trees, defined once.

The model computes one fact per node, the rules pack turns each node into a cause alert, the
runbook gets one section per node, and `diagnose` walks the same nodes in the same order.
Commands use the {placeholders} of `exporter.seed.Placeholders`, which `diagnose` fills from the
config and the model:
{kubeconfig} {namespace} {source} {kustomization} {artifact} {sha} {version} {alert} {provider}
{build_workflow} {promote_workflow}.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exporter import seed

INTEGRATION_TREE = "integration"
LIVE_TREE = "live"


class Source(StrEnum):
    """A source a node reads: while it is down the node is unknown."""

    GITHUB = "github"
    REGISTRY = "registry"
    INTEGRATION = "integration"  # the integration stage's cluster
    LIVE = "live"  # the live stage's cluster


class Wiring(StrEnum):
    """Configuration a node needs: without it the pipeline does not have the node at all."""

    GITHUB = "github"  # a github section
    PROMOTE_WORKFLOW = "promote_workflow"  # a tag workflow (not the stable-only flow)
    DISPATCH = "dispatch"  # an Alert and Provider that trigger it


@dataclass(frozen=True)
class Node:
    id: str  # label value of promotion_tree_node_status{node=...}
    alert: str
    question: str  # the tree's question; the node passes when the answer is yes
    severity: str
    for_: str  # how long the node must fail before its alert fires
    summary: str
    meaning: str
    commands: tuple[str, ...]
    causes: tuple[str, ...]
    reads: frozenset[Source] = frozenset()
    requires: frozenset[Wiring] = frozenset()


@dataclass(frozen=True)
class Tree:
    id: str
    title: str
    nodes: tuple[Node, ...]
    healthy: str  # what it means when every node passes


_GET_SOURCE = (
    "KUBECONFIG={kubeconfig} kubectl get ocirepository {source} -n {namespace} -o yaml",
    "KUBECONFIG={kubeconfig} kubectl get ocirepository -n {namespace} -o yaml | grep semver",
)
_FORCE_POLL = "KUBECONFIG={kubeconfig} flux reconcile source oci {source} -n {namespace}"
_DESCRIBE_KS = (
    "KUBECONFIG={kubeconfig} kubectl describe kustomization {kustomization} -n {namespace}"
)

INTEGRATION = Tree(
    id=INTEGRATION_TREE,
    title="Artifact Stuck in Integration",
    healthy="The newest build is applied in integration and tagged validated-<sha>.",
    nodes=(
        Node(
            id="build_succeeded",
            reads=frozenset({Source.GITHUB}),
            requires=frozenset({Wiring.GITHUB}),
            alert="PromotionBuildFailing",
            question="Did the build workflow succeed for the newest commit under the watched path?",
            severity="warning",
            for_="5m",
            summary="The build workflow failed for the newest commit.",
            meaning="The newest run of the build workflow for the newest commit touching the "
            "watched path concluded without success, so no artifact was pushed for it.",
            commands=(
                "gh run list --workflow={build_workflow} --limit=5",
                "gh run view <run-id> --log",
            ),
            causes=(
                "Artifact push fails in build workflow: GHCR auth issue. Check GITHUB_TOKEN has "
                "packages:write permission.",
                'Check workflow logs for "flux push artifact" errors.',
            ),
        ),
        Node(
            id="artifact_in_registry",
            reads=frozenset({Source.REGISTRY, Source.GITHUB}),
            alert="PromotionArtifactMissing",
            question="Is the OCI artifact in GHCR?",
            severity="warning",
            for_="30m",
            summary="The newest commit has no OCI artifact in the registry.",
            meaning="No artifact in the registry carries the newest watched commit (or the "
            "repository is empty), and no build for it is running.",
            commands=(
                "gh run list --workflow={build_workflow} --limit=5",
                "flux list artifact {artifact} | grep {sha}",
            ),
            causes=(
                "The workflow did not trigger: it runs on push to main with changes under the "
                "watched path only.",
                "GHCR auth: GITHUB_TOKEN must have packages:write.",
            ),
        ),
        Node(
            id="integration_source_selects_candidate",
            reads=frozenset({Source.REGISTRY, Source.INTEGRATION}),
            alert="PromotionIntegrationSemverMismatch",
            question="Does the integration OCIRepository's URL and semver select the newest build?",
            severity="warning",
            for_="5m",
            summary="The integration OCIRepository cannot select the newest build.",
            meaning="By Flux's own selection rules, the integration OCIRepository's spec.url and "
            "spec.ref would not pick the newest build: usually a constraint that skips "
            "pre-releases (it must be >= 0.0.0-0), a wrong URL, or a pin.",
            commands=(*_GET_SOURCE, _FORCE_POLL),
            causes=(
                "Build succeeds, integration does not update: OCIRepository semver does not match "
                "RC tags. Verify >= 0.0.0-0 in the OCIRepository spec.",
                'Integration shows "no matching artifact": OCIRepository URL or semver '
                "misconfigured. Check oci_url and oci_semver in the cluster bootstrap config.",
            ),
        ),
        Node(
            id="integration_source_ready",
            reads=frozenset({Source.INTEGRATION}),
            alert="PromotionIntegrationSourceFailing",
            question="Is the integration OCIRepository Ready?",
            severity="warning",
            for_="10m",
            summary="The integration OCIRepository is not Ready.",
            meaning="The integration OCIRepository reports Ready=False (or does not exist): Flux "
            "cannot list or pull the artifact.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get ocirepository -n {namespace} -o wide",
                "KUBECONFIG={kubeconfig} kubectl describe ocirepository {source} -n {namespace}",
            ),
            causes=(
                "Registry authentication (AuthenticationFailed) or pull errors "
                "(OCIArtifactPullFailed); check .status.conditions.",
                'Integration shows "no matching artifact": OCIRepository URL or semver '
                "misconfigured.",
            ),
        ),
        Node(
            id="integration_source_current",
            reads=frozenset({Source.REGISTRY, Source.INTEGRATION}),
            alert="PromotionIntegrationSourceStale",
            question="Is the integration OCIRepository seeing the newest build?",
            severity="warning",
            for_="15m",
            summary="The integration OCIRepository has not picked up the newest build.",
            meaning="The OCIRepository is Ready but its artifact is not the newest build: it is "
            "suspended, or has not polled since the build.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get ocirepository {source} -n {namespace} "
                "-o jsonpath='{{.status.artifact.revision}}'",
                _FORCE_POLL,
            ),
            causes=("The OCIRepository is suspended or its interval is long.",),
        ),
        Node(
            id="integration_applied",
            reads=frozenset({Source.REGISTRY, Source.INTEGRATION}),
            alert="PromotionIntegrationReconcileFailing",
            question="Is the platform Kustomization reconciling?",
            severity="warning",
            for_="15m",
            summary="The integration Kustomization has not applied the newest build.",
            meaning="The platform Kustomization is not Ready at the source's revision: it is "
            "failing, suspended, or waiting on a dependency.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get kustomization {kustomization} -n {namespace}",
                _DESCRIBE_KS,
            ),
            causes=("Look for dependency failures, schema errors.",),
        ),
        Node(
            id="validation_dispatched",
            reads=frozenset({Source.REGISTRY, Source.INTEGRATION, Source.GITHUB}),
            requires=frozenset({Wiring.DISPATCH}),
            alert="PromotionValidationNotDispatched",
            question="Is the Alert firing repository_dispatch?",
            severity="warning",
            for_="15m",
            summary="Integration applied the build but no validation dispatch followed.",
            meaning="The build is applied in integration, yet the Alert and Provider cannot send "
            "the dispatch, or nothing the Alert causes followed the apply: no repository_dispatch "
            "run of the tag workflow for a githubdispatch Provider; for a github (commit status) "
            "Provider, no Flux commit status kustomization/<name>/... on the artifact's commit "
            "and no run `on: status`. Manual workflow_dispatch runs and skipped runs never "
            "count. Flux's githubdispatch provider drops every success event "
            "(fluxcd/flux2#3933).",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl describe alert {alert} -n {namespace}",
                "KUBECONFIG={kubeconfig} kubectl get providers -n {namespace}",
                "KUBECONFIG={kubeconfig} kubectl get events -n {namespace} "
                "--field-selector involvedObject.name={alert}",
                "gh run list --workflow={promote_workflow} --limit=5",
            ),
            causes=(
                "repository_dispatch not received by GHA: the GitHub token in the "
                f"{seed.FLUX_NAMESPACE} secret lacks repo scope. Update the token with correct "
                "scopes.",
                f'Alert "{seed.ALERT_NAME}" must watch the {seed.KUSTOMIZATION_NAME} '
                "Kustomization.",
                f'Provider "{seed.PROVIDER_NAME}" needs the {seed.FLUX_NAMESPACE} secret with a '
                "GitHub token.",
            ),
        ),
        Node(
            id="validation_succeeded",
            reads=frozenset({Source.REGISTRY, Source.INTEGRATION, Source.GITHUB}),
            requires=frozenset({Wiring.GITHUB, Wiring.PROMOTE_WORKFLOW}),
            alert="PromotionValidationWorkflowFailing",
            question="Did the tag workflow tag the applied build validated-<sha>?",
            severity="warning",
            for_="10m",
            summary="The tag workflow ran but the build is still not validated.",
            meaning="A promote workflow run that the Alert caused completed after integration "
            "applied the build, yet the build has no validated-<sha> tag (or the tag workflow "
            "file does not exist). Skipped runs are neither success nor failure.",
            commands=(
                "gh run list --workflow={promote_workflow} --limit=5",
                "gh run view <run-id> --log",
                "gh workflow run {promote_workflow} -f artifact_sha={sha}",
            ),
            causes=(
                "Idempotency guard: does the artifact already have a validated-<sha> tag?",
                "Check workflow logs for tag errors.",
            ),
        ),
    ),
)

LIVE = Tree(
    id=LIVE_TREE,
    title="Live Not Updating",
    healthy="Live has applied the newest validated stable version.",
    nodes=(
        Node(
            id="stable_tag_present",
            reads=frozenset({Source.REGISTRY}),
            alert="PromotionStableTagMissing",
            question="Is the artifact tagged with stable semver (X.Y.Z)?",
            severity="warning",
            for_="15m",
            summary="The newest validated artifact has no stable X.Y.Z tag.",
            meaning="Promotion did not complete: the newest artifact tagged validated-<sha> has "
            "no stable semver tag, so live cannot select it.",
            commands=(
                "gh run list --workflow={promote_workflow} --limit=5",
                "flux list artifact {artifact} | grep {sha}",
                "flux tag artifact {artifact}:validated-{sha} --tag <X.Y.Z>",
            ),
            causes=(
                "Validation passes, live does not update: tag workflow did not create the stable "
                f"semver tag. Check {seed.PROMOTE_WORKFLOW.removesuffix('.yaml')} workflow logs.",
            ),
        ),
        Node(
            id="live_source_selects_release",
            reads=frozenset({Source.REGISTRY, Source.LIVE}),
            alert="PromotionLiveSemverMismatch",
            question="Does the live OCIRepository's semver select the newest stable tag?",
            severity="warning",
            for_="5m",
            summary="The live OCIRepository's semver does not select the newest stable release.",
            meaning="By Flux's selection rules the live OCIRepository's spec.url and semver "
            "constraint would pick another tag than the newest stable one (for example a "
            "pre-release, when the constraint is >= 0.0.0-0).",
            commands=(*_GET_SOURCE, _FORCE_POLL),
            causes=("The constraint must be >= 0.0.0 (excludes pre-releases).",),
        ),
        Node(
            id="live_not_pinned",
            reads=frozenset({Source.REGISTRY, Source.LIVE}),
            alert="PromotionLivePinned",
            question="Is live free of a spec.ref.tag or spec.ref.digest pin?",
            severity="warning",
            for_="5m",
            summary="The live OCIRepository is pinned to an older artifact.",
            meaning="The live OCIRepository selects by spec.ref.digest, or by spec.ref.tag "
            "without semver, and the pinned artifact is not the newest release. A rollback pin "
            "was probably not reverted.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get ocirepository {source} -n {namespace} "
                "-o jsonpath='{{.spec.ref}}'",
                "KUBECONFIG={kubeconfig} kubectl patch ocirepository {source} -n {namespace} "
                '--type=json -p \'[{{"op":"remove","path":"/spec/ref/tag"}}]\'',
            ),
            causes=(
                "Remember to revert the pin after fixing the issue, otherwise new promotions "
                "will be ignored.",
            ),
        ),
        Node(
            id="release_is_highest",
            reads=frozenset({Source.REGISTRY, Source.LIVE}),
            alert="PromotionStableNotHigher",
            question="Is the newest validated stable tag strictly higher than every other?",
            severity="warning",
            for_="5m",
            summary="The newest validated release is not the highest stable version.",
            meaning="Live picks the highest semver, but the newest validated artifact's stable "
            "tag is not the highest one, so live will never move to it.",
            commands=(
                "flux list artifact {artifact} | grep -E '^[0-9]+\\.[0-9]+\\.[0-9]+$'",
                "flux tag artifact {artifact}:validated-{sha} --tag <higher-X.Y.Z>",
            ),
            causes=(
                "Live picks up wrong version: semver ordering issue with RC numbering. Verify "
                "the stable tag is strictly higher than the current one.",
            ),
        ),
        Node(
            id="live_source_ready",
            reads=frozenset({Source.LIVE}),
            alert="PromotionLiveSourceFailing",
            question="Is the live OCIRepository Ready?",
            severity="warning",
            for_="10m",
            summary="The live OCIRepository is not Ready.",
            meaning="The live OCIRepository reports Ready=False (or does not exist).",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get ocirepository -n {namespace} -o wide",
                "KUBECONFIG={kubeconfig} kubectl describe ocirepository {source} -n {namespace}",
            ),
            causes=("Registry authentication or pull errors; check .status.conditions.",),
        ),
        Node(
            id="live_source_current",
            reads=frozenset({Source.REGISTRY, Source.LIVE}),
            alert="PromotionLiveSourceStale",
            question="Is the live OCIRepository seeing the stable tag?",
            severity="warning",
            for_="15m",
            summary="The live OCIRepository has not picked up the newest release.",
            meaning="The live OCIRepository is Ready but its artifact is not the newest release: "
            "it is suspended, or has not polled since the release was tagged.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get ocirepository {source} -n {namespace} "
                "-o jsonpath='{{.status.artifact.revision}}'",
                _FORCE_POLL,
            ),
            causes=("Verify the stable tag is higher than the current deployed version.",),
        ),
        Node(
            id="live_applied",
            reads=frozenset({Source.REGISTRY, Source.LIVE}),
            alert="PromotionLiveReconcileFailing",
            question="Is the live Kustomization reconciling?",
            severity="warning",
            for_="15m",
            summary="The live Kustomization has not applied the newest release.",
            meaning="The platform Kustomization in live is not Ready at the source's revision.",
            commands=(
                "KUBECONFIG={kubeconfig} kubectl get kustomization {kustomization} -n {namespace}",
                _DESCRIBE_KS,
                "KUBECONFIG={kubeconfig} flux get helmreleases -A",
            ),
            causes=(
                "Check Kustomization status and dependencies.",
                "Check for failing health checks blocking rollout.",
            ),
        ),
        Node(
            id="live_helm_releases_ready",
            reads=frozenset({Source.LIVE}),
            alert="PromotionLiveHelmReleaseFailing",
            question="Is every HelmRelease in live Ready?",
            severity="warning",
            for_="15m",
            summary="Live applied the release, but a HelmRelease in live is not Ready.",
            meaning="The live Kustomization applied the newest release, so the deployment should "
            "be in progress, yet a HelmRelease in the live cluster has Ready=False (an upgrade "
            "or install failed, or its health checks timed out). A HelmRelease still "
            "reconciling (Ready=Unknown) does not count. A pipeline's helm_release_namespaces "
            "narrows the HelmReleases checked to those namespaces.",
            commands=(
                "KUBECONFIG={kubeconfig} flux get helmreleases -A",
                "KUBECONFIG={kubeconfig} kubectl describe helmrelease <name> -n <namespace>",
            ),
            causes=(
                "Check HelmRelease statuses.",
                "Check for failing health checks blocking rollout.",
            ),
        ),
    ),
)

TREES: tuple[Tree, ...] = (INTEGRATION, LIVE)


def tree_nodes(tree: Tree, wired: frozenset[Wiring]) -> tuple[Node, ...]:
    """The nodes a pipeline has: a node whose wiring the pipeline lacks is absent."""
    return tuple(node for node in tree.nodes if node.requires <= wired)
