"""deploy/kubernetes rendered with ``kubectl kustomize`` and every object validated.

Core kinds against the Kubernetes OpenAPI schemas of ``K8S_VERSION`` (kubernetes-validate, strict:
unknown fields fail); ServiceMonitor and ScaledObject against the schemas published in
``@kubernetes-models/prometheus-operator`` and ``@kubernetes-models/keda`` (tests/deploy/node/,
installed by ``make test``). Then what the schemas cannot know: probes on routes dsocr has,
``/dev/shm`` in memory and larger than the model, non-root, the autoscaler on a metric dsocr exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from supervisor.app import make_app
from supervisor.core.lifecycle import ModelLifecycle
from supervisor.core.metrics import ServiceMetrics
from supervisor.core.settings import Settings
from tests.helpers import ROOT

K8S_VERSION = "1.33.0"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("overlays/gpu", "overlays/cpu", "hpa")
NODE_DIR = Path(__file__).parent / "node"
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}
# bytes of each model's shared-memory segment: ppocr measured (README, /gpu/status);
# DeepSeek-OCR-2 is ~3.4 B parameters in bf16 (6.7 GB checkpoint)
MODEL_BYTES = {"ppocr": 31_461_376, "deepseek-ocr-2": 6_700_000_000}
SHUTDOWN_TIMEOUT_S = 30  # `dsocr serve` gives in-flight requests this long after the drain

pytestmark = pytest.mark.timeout(120)


@cache
def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: `make test` installs Debian's kubernetes-client"
    out = subprocess.run([kubectl, "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def container(docs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    return one(docs, kind)["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGT]i?)?", str(value)).groups()  # type: ignore[union-attr]
    return int(float(number) * _UNITS[unit or ""])


@cache
def get_routes() -> set[str]:
    app = make_app(Settings(device="cpu"))
    return {r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource is not None}


def kustomize_is_old() -> bool:
    """kubectl < 1.21 carries kustomize v2, which cannot delete a custom resource by patch."""
    out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=False, timeout=30)  # fmt: skip
    info = json.loads(out.stdout or "{}").get("clientVersion", {})
    return (int(info.get("major", "1")), int(re.sub(r"\D.*", "", info.get("minor", "99")))) < (1, 21)


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_overlay_has_every_object(overlay: str) -> None:
    kinds = sorted(d["kind"] for d in render(overlay))
    assert kinds == sorted(["Deployment", "Service", "PodDisruptionBudget", "PersistentVolumeClaim", "Job",
                            "ServiceMonitor", "ScaledObject", "Secret"])  # fmt: skip


def test_hpa_variant_swaps_the_scaledobject_for_an_hpa() -> None:
    if kustomize_is_old():
        pytest.skip("kubectl < 1.21 (kustomize v2) cannot delete the ScaledObject: the hpa variant needs a newer one")
    docs = render("hpa")
    kinds = {d["kind"] for d in docs}
    assert "ScaledObject" not in kinds and "HorizontalPodAutoscaler" in kinds
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "dsocr_queue_waiting_requests"
    assert container(docs)["resources"]["limits"]["nvidia.com/gpu"] == 1  # the gpu overlay underneath


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_match_the_kubernetes_schema(overlay: str) -> None:
    if overlay == "hpa" and kustomize_is_old():
        pytest.skip("kubectl < 1.21 (kustomize v2) cannot render the hpa variant")
    core = [d for d in render(overlay) if d["kind"] not in CRD_KINDS]
    for doc in core:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_custom_resources_match_their_published_schemas(overlay: str) -> None:
    assert (NODE_DIR / "node_modules").is_dir(), "schemas missing: `make test` runs npm ci in tests/deploy/node"
    crds = [d for d in render(overlay) if d["kind"] in CRD_KINDS]
    out = subprocess.run(["node", "validate_crds.mjs"], cwd=NODE_DIR, input=json.dumps(crds), capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and len(results) == 2, out.stdout + out.stderr
    assert all(r["error"] is None for r in results)


def test_the_schema_check_catches_a_broken_scaledobject() -> None:
    broken = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
              "spec": {"scaleTargetRef": {"name": "dsocr"}, "minReplicaCount": "one", "triggers": []}}  # fmt: skip
    out = subprocess.run(["node", "validate_crds.mjs"], cwd=NODE_DIR, input=json.dumps([broken]), capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 1 and "minReplicaCount must be integer" in out.stdout


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_probes_point_at_routes_that_exist(overlay: str) -> None:
    c = container(render(overlay))
    port = c["ports"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "startupProbe" in c
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in get_routes(), f"{probe} on {get['path']}: not a route of dsocr"
        assert get["port"] in (port["name"], port["containerPort"])
    assert port["containerPort"] == int(env_of(c)["PORT"])


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_shm_is_memory_backed_and_holds_the_model(overlay: str) -> None:
    docs = render(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    shm = quantity(volume["emptyDir"]["sizeLimit"])
    model = env_of(c)["DSOCR_MODEL"]
    assert shm > MODEL_BYTES[model], f"/dev/shm {shm} B cannot hold {model} ({MODEL_BYTES[model]} B)"
    # a memory-backed emptyDir counts against the container's memory limit
    assert quantity(c["resources"]["limits"]["memory"]) > shm


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_runs_as_non_root_on_a_read_only_root(overlay: str) -> None:
    docs = render(overlay)
    for kind in ("Deployment", "Job"):
        pod = one(docs, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        c = pod["containers"][0]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert "/tmp" in writable
    deployment = container(docs)
    cache_mount = next(m for m in deployment["volumeMounts"] if m["mountPath"] == "/cache")
    assert cache_mount["readOnly"] is True  # serving pods read the cache the Job filled
    assert env_of(deployment)["HF_HUB_OFFLINE"] == "1"
    claims = {v["persistentVolumeClaim"]["claimName"] for kind in ("Deployment", "Job")
              for v in one(docs, kind)["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}  # fmt: skip
    assert claims == {one(docs, "PersistentVolumeClaim")["metadata"]["name"]}


def test_gpu_overlay_takes_one_whole_gpu_and_cpu_none() -> None:
    gpu = container(render("overlays/gpu"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_of(gpu)["DSOCR_DEVICE"] == "cuda"
    cpu = container(render("overlays/cpu"))
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert env_of(cpu)["DSOCR_DEVICE"] == "cpu"


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_sigterm_grace_covers_the_drain_and_in_flight_requests(overlay: str) -> None:
    docs = render(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    drain = float(env_of(pod["containers"][0])["DSOCR_DRAIN_SECONDS"])
    readiness = pod["containers"][0]["readinessProbe"]
    # the probe must see the 503 during the drain
    assert drain > readiness["periodSeconds"] * readiness["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] > drain + SHUTDOWN_TIMEOUT_S


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_objects_select_each_other(overlay: str) -> None:
    docs = render(overlay)
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):  # fmt: skip
        assert selector.items() <= pod_labels.items()
    monitor = one(docs, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] in get_routes()
    # /metrics needs the API key: the monitor sends the key the pods get
    secret = one(docs, "Secret")["metadata"]["name"]
    assert endpoint["authorization"]["credentials"]["name"] == secret
    assert env_of(container(docs))["DSOCR_API_KEY"]["secretKeyRef"]["name"] == secret


@pytest.mark.parametrize("overlay", ["overlays/gpu", "overlays/cpu"])
def test_scaledobject_scales_the_deployment_on_a_metric_dsocr_exports(overlay: str) -> None:
    docs = render(overlay)
    spec = one(docs, "ScaledObject")["spec"]
    assert spec["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    trigger = spec["triggers"][0]
    assert trigger["type"] == "prometheus"
    metric = re.fullmatch(r"sum\((\w+)\{.*\}\)", trigger["metadata"]["query"]).group(1)  # type: ignore[union-attr]
    assert metric == "dsocr_queue_waiting_requests"
    settings = Settings(device="cpu")
    lifecycles = {"ppocr": ModelLifecycle("ppocr", settings, "cpu")}
    exported = ServiceMetrics(lambda: lifecycles).render().body.decode()  # type: ignore[union-attr]
    assert f'{metric}{{model="ppocr"}} 0.0' in exported
