"""The Kubernetes manifests under deploy/kubernetes/: every overlay renders with
`kubectl kustomize`, every rendered document validates against the Kubernetes
schemas (kubernetes-validate, strict: unknown fields fail), and the pieces that
schemas cannot see fit together (probes, Secret references, volumes, selectors,
autoscaler targets).

Validated against the oldest and the newest Kubernetes release the manifests are
meant for: 1.27 (autoscaling/v2 and policy/v1 are GA well before it) and the newest
schema kubernetes-validate ships.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not a dependency

ROOT = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
OVERLAYS = sorted(path.name for path in (ROOT / "overlays").iterdir() if path.is_dir())
OLDEST_SUPPORTED = "1.27.0"
KUBERNETES_VERSIONS = (OLDEST_SUPPORTED, kubernetes_validate.latest_version())
SECRET_SETTINGS = {"DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEY"}

Manifest = dict[str, Any]

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl not found: install Debian's kubernetes-client (.ci/install-system-packages)",
)


def render(overlay: str) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    completed = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def pod_specs(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Pod specs of the Deployments and Jobs, by workload name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in manifests
        if doc["kind"] in ("Deployment", "Job")
    }


def container(pod: Manifest, name: str) -> Manifest:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return dict(found)


def secret_keys(container: Manifest) -> set[str]:
    return {
        entry["name"]
        for entry in container.get("env", [])
        if entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mailsvc"
    }


def test_there_is_an_overlay_per_deployment_shape() -> None:
    assert OVERLAYS == ["multi-host", "multi-host-autoscaled", "single-host"]


def test_strict_validation_rejects_what_the_api_server_would() -> None:
    # Guards the guard: a misspelt field must fail, or the test below proves nothing.
    misspelt = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"prots": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, OLDEST_SUPPORTED, strict=True)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_document_validates(overlay: str) -> None:
    manifests = render(overlay)
    assert manifests
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{manifest['kind']}/{manifest['metadata']['name']}"
                pytest.fail(f"{overlay}: {name} invalid for Kubernetes {version}: {exc}")


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workloads_fit_together(overlay: str) -> None:
    manifests = render(overlay)
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {"mailsvc-api", "mailsvc-worker"}
    assert set(by_kind(manifests, "Job")) == {"mailsvc-migrate"}
    pods = pod_specs(manifests)

    api = container(pods["mailsvc-api"], "api")
    assert api["args"] == ["serve"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": 5000, "protocol": "TCP"} in api["ports"]
    assert container(pods["mailsvc-worker"], "worker")["args"] == ["worker"]
    assert container(pods["mailsvc-migrate"], "migrate")["args"] == ["migrate"]

    config_maps = set(by_kind(manifests, "ConfigMap"))
    claims = set(by_kind(manifests, "PersistentVolumeClaim"))
    for workload, pod in pods.items():
        for each in pod["containers"] + pod.get("initContainers", []):
            where = f"{overlay}: {workload}/{each['name']}"
            assert SECRET_SETTINGS <= secret_keys(each), where
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]), where
            assert "memory" in each["resources"]["limits"], where
            for source in each.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, where
        for volume in pod.get("volumes", []):
            # One source per volume: an overlay that adds a claim must drop the emptyDir.
            assert len(volume) == 2, f"{overlay}: {workload} volume {volume}"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims

    for name, budget in by_kind(manifests, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name

    service = by_kind(manifests, "Service")["mailsvc-api"]
    api_labels = deployments["mailsvc-api"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()


@needs_kubectl
def test_each_overlay_sets_its_search_backend_and_data_volume() -> None:
    for overlay, backend, claimed in (
        ("single-host", "tantivy", True),
        ("multi-host", "postgres", False),
        ("multi-host-autoscaled", "postgres", False),
    ):
        manifests = render(overlay)
        (config,) = by_kind(manifests, "ConfigMap").values()
        assert config["data"]["SEARCH_BACKEND"] == backend, overlay
        assert config["data"]["DATA_DIR"] == "/data", overlay
        # Tantivy's index directory is unset (then DATA_DIR/search) or under DATA_DIR.
        index_dir = config["data"].get("SEARCH_INDEX_DIR", "/data/search")
        assert index_dir.startswith("/data/"), overlay
        for workload in ("mailsvc-api", "mailsvc-worker"):
            pod = pod_specs(manifests)[workload]
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert ("persistentVolumeClaim" in volumes["data"]) is claimed, overlay
            # The api reads the index the worker writes: both mount the one volume there.
            mounts = {
                m["mountPath"]: m["name"] for m in container(pod, workload[8:])["volumeMounts"]
            }
            assert mounts["/data"] == "data", (overlay, workload)


@needs_kubectl
def test_autoscalers_own_the_replica_counts() -> None:
    manifests = render("multi-host-autoscaled")
    deployments = by_kind(manifests, "Deployment")
    autoscalers = by_kind(manifests, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers.values()} == set(
        deployments
    )
    for name, deployment in deployments.items():
        # A `replicas` in the manifest would reset the autoscaler on every apply.
        assert "replicas" not in deployment["spec"], name
        assert autoscalers[name]["metadata"]["namespace"] == deployment["metadata"]["namespace"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_connection_budget_counts_the_pods_that_run(overlay: str) -> None:
    manifests = render(overlay)
    (config,) = by_kind(manifests, "ConfigMap").values()
    # One api process per pod: a count per core would follow the node, not the pod.
    assert config["data"]["API_WORKERS"] == "1", overlay
    deployments = by_kind(manifests, "Deployment")
    autoscalers = by_kind(manifests, "HorizontalPodAutoscaler")
    for name, setting in (("mailsvc-api", "API_REPLICAS"), ("mailsvc-worker", "WORKER_REPLICAS")):
        most = (
            autoscalers[name]["spec"]["maxReplicas"]
            if name in autoscalers
            else deployments[name]["spec"]["replicas"]
        )
        assert config["data"][setting] == str(most), (overlay, setting)
    assert "DATABASE_POOL_SIZE" not in config["data"], "derived from the counts above"
