"""Pushes and tags OCI artifacts shaped exactly like `flux push artifact` / `flux tag artifact`."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import ssl
import tarfile

import httpx

from exporter.registry import MANIFEST_ACCEPT, ChallengeAuth

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
FLUX_CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
_DEFAULT_CONTENT = {
    "kustomization.yaml": b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
}


def push_flux_artifact(
    registry_url: str,
    repository: str,
    tag: str,
    *,
    revision: str,
    source: str,
    created: str,
    content: dict[str, bytes] | None = None,
    auth: tuple[str, str] | None = None,
) -> str:
    """Upload a Flux artifact (content layer, config, manifest) under tag; its digest."""
    layer, diff_id = _tar_gzip(content if content is not None else _DEFAULT_CONTENT)
    config = _config(diff_id)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": _descriptor(FLUX_CONFIG_MEDIA_TYPE, config),
        "layers": [_descriptor(FLUX_CONTENT_MEDIA_TYPE, layer)],
        "annotations": {
            "org.opencontainers.image.created": created,
            "org.opencontainers.image.revision": revision,
            "org.opencontainers.image.source": source,
        },
    }
    with _client(registry_url, auth) as client:
        for blob in (config, layer):
            _upload_blob(client, repository, blob)
        body = json.dumps(manifest, separators=(",", ":")).encode()
        return _put_manifest(client, repository, tag, OCI_MANIFEST_MEDIA_TYPE, body)


def tag_artifact(
    registry_url: str,
    repository: str,
    existing_ref: str,
    new_tag: str,
    auth: tuple[str, str] | None = None,
) -> str:
    """Put the manifest at existing_ref (tag or digest) under new_tag too, as crane.Tag does."""
    with _client(registry_url, auth) as client:
        response = client.get(
            f"/v2/{repository}/manifests/{existing_ref}", headers={"Accept": MANIFEST_ACCEPT}
        )
        response.raise_for_status()
        media_type = response.headers["content-type"]
        return _put_manifest(client, repository, new_tag, media_type, response.content)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Shared because building one per call costs ~20 ms, and tests tag hundreds of times."""
    return httpx.create_ssl_context()


def _client(registry_url: str, auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(
        base_url=registry_url,
        auth=ChallengeAuth(registry_url, auth),
        timeout=10,
        verify=_tls_context(),
    )


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _tar_gzip(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible tar.gz of files and the digest of the uncompressed tar (its diff ID)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    uncompressed = tar_bytes.getvalue()
    return gzip.compress(uncompressed, mtime=0), _digest(uncompressed)


def _config(diff_id: str) -> bytes:
    """The image config go-containerregistry writes for an empty image plus one layer."""
    config = {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {},
    }
    return json.dumps(config, separators=(",", ":")).encode()


def _upload_blob(client: httpx.Client, repository: str, blob: bytes) -> None:
    digest = _digest(blob)
    if client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = started.url.join(started.headers["location"]).copy_merge_params({"digest": digest})
    finished = client.put(
        location, content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    finished.raise_for_status()


def _put_manifest(
    client: httpx.Client, repository: str, tag: str, media_type: str, body: bytes
) -> str:
    response = client.put(
        f"/v2/{repository}/manifests/{tag}", content=body, headers={"Content-Type": media_type}
    )
    response.raise_for_status()
    return _digest(body)
