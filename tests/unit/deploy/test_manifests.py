"""deploy/k8s: what `kustomize build` renders validates offline against the Kubernetes schemas
(kubernetes-validate), and the objects fit together (selectors, ports, probes, grace periods, the
worker config the ConfigMap carries)."""
from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from streams.config import parse_config
from tests.observability import DEPLOY, OVERLAYS, kustomize_build, recording_rules

# oldest and newest Kubernetes minor the manifests are meant for
K8S_VERSIONS = ["1.29.0", "1.37.0"]
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("keda.sh/v1alpha1", "ScaledObject")}


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request):
    return request.param, kustomize_build(request.param)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", selector).items())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(built, version):
    target, objects = built
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue  # no CRD schemas offline: checked field by field below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                        f"{exc.message} at {list(exc.path)}")


def test_the_example_overlays_ship_every_object_the_worker_needs():
    kinds = lambda objects: sorted(o["kind"] for o in objects)  # noqa: E731
    example = kustomize_build("overlays/example")
    assert kinds(example) == sorted(["Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
                                     "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule",
                                     "NetworkPolicy"])
    assert {o["metadata"].get("namespace") for o in example if o["kind"] != "Namespace"} == {"eventweir"}
    keda = kustomize_build("overlays/example-keda")
    assert "ScaledObject" in kinds(keda) and "HorizontalPodAutoscaler" not in kinds(keda)


def test_no_secret_is_inlined(built):
    target, objects = built
    assert not by_kind(objects, "Secret"), f"{target}: Secrets are created outside git, never rendered here"
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for env in container.get("env", []):
        if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", env["name"]):
            assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], f"{target}: {env['name']} must come from a Secret"
    assert any(e.get("secretRef") for e in container.get("envFrom", [])), "credentials Secret is not referenced"


def test_deployment_probes_grace_and_the_config_it_mounts(built):
    target, objects = built
    deploy = one(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["topologySpreadConstraints"], "replicas should spread over zones and nodes"
    for spread in pod["topologySpreadConstraints"]:
        assert selects(spread["labelSelector"], deploy["spec"]["template"]["metadata"]["labels"])

    # the ConfigMap the pod mounts is the generated one, and it holds a config the worker accepts
    config_map_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    config_map = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == config_map_name)
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]), environ={})
    assert config.http.port == port, "the worker must listen on the port the probes and Service use"

    # SIGTERM arrives after preStop; the worker's drain budget must end before the kubelet's SIGKILL
    pre_stop = container["lifecycle"]["preStop"]
    pre_stop_s = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else int(pre_stop["exec"]["command"][-1])
    assert pre_stop_s + config.runtime.shutdown_grace_s + 5 <= pod["terminationGracePeriodSeconds"]


def test_service_pdb_monitor_and_policy_select_the_worker_pods(built):
    target, objects = built
    deploy = one(objects, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selects(deploy["spec"]["selector"], pod_labels)
    service = one(objects, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(one(objects, "PodDisruptionBudget")["spec"]["selector"], pod_labels)

    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"

    policy = one(objects, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"], pod_labels)
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] in ingress_ports


def test_autoscaling_scales_up_fast_down_slowly_and_holds_while_lag_grows(built):
    target, objects = built
    hpas, scaled = by_kind(objects, "HorizontalPodAutoscaler"), by_kind(objects, "ScaledObject")
    assert len(hpas) + len(scaled) == 1, f"{target}: exactly one autoscaler (HPA or KEDA)"
    if hpas:
        spec = hpas[0]["spec"]
        assert spec["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
        behavior = spec["behavior"]
        adapter = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-adapter.yaml").read_text())
        served = {r["name"]["as"]: re.match(r"[\w:]+", r["seriesQuery"]).group(0) for r in adapter["externalRules"]}
        metrics = [m["external"]["metric"]["name"] for m in spec["metrics"]]
        assert "eventweir_scale_down_hold" in metrics
        for name in metrics:  # each external metric is served by the adapter from a recording rule
            assert served[name] in recording_rules()
    else:
        spec = scaled[0]["spec"]
        assert spec["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
        triggers = {t["type"]: t for t in spec["triggers"]}
        assert triggers["kafka"]["metadata"]["consumerGroup"] and triggers["kafka"]["metadata"]["lagThreshold"]
        assert "eventweir:scale_down_hold:replicas" in triggers["prometheus"]["metadata"]["query"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in behavior["scaleDown"]["policies"])


@pytest.mark.parametrize("path", ["k8s/base/hpa.yaml", "k8s/components/keda/scaledobject.yaml", "k8s/base/deployment.yaml"])
def test_scaling_config_says_replicas_above_partitions_are_pointless(path):
    text = (DEPLOY / path).read_text()
    assert re.search(r"[Rr]eplicas (above|beyond) the partition count", text) or "above the partition count" in text, path


def test_prometheusrule_carries_exactly_the_promtool_checked_rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("to_prometheusrule", DEPLOY / "prometheus" / "to_prometheusrule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TARGET.read_text() == module.render(), \
        "deploy/k8s/base/prometheusrule.yaml is stale: run python deploy/prometheus/to_prometheusrule.py"
    rule = one(kustomize_build("base"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())["groups"]
