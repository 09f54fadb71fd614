"""Offline checks of the deployment files: Kubernetes manifests against the
API schemas (kubernetes-validate, strict), yamllint, the drain timings, the
compose file's shape, and ``haproxy -c`` on the load balancer config."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
COMPOSE = ROOT / "docker-compose.yml"
# A version kubernetes-validate ships schemas for; fixed so results don't
# drift when the package is upgraded.
K8S_VERSION = "1.33.0"
# Defaults of the gateway (docs/protocol spec): seconds.
DRAIN_NOTICE_DEFAULT = 2.0
DRAIN_TIMEOUT_DEFAULT = 10.0


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in _docs(path)]
    return out


def _by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in _resources() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _env(container: dict[str, Any], name: str, default: float) -> float:
    for var in container.get("env", []):
        if var["name"] == name:
            return float(var["value"])
    return default


def test_schema_version_is_shipped() -> None:
    from kubernetes_validate import utils

    assert K8S_VERSION in utils.all_versions(), f"kubernetes-validate has no schemas for {K8S_VERSION}"


@pytest.mark.parametrize(
    ("path", "doc"),
    _resources(),
    ids=lambda v: v.name if isinstance(v, Path) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_manifest_is_valid(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    listed = set(kust["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in present if name.endswith(".example.yaml")}
    assert listed == present - examples, f"kustomization resources {sorted(listed)} != files {sorted(present)}"


def test_no_secret_is_applied_from_the_repository() -> None:
    """`kubectl apply -k` deployed the public demo JWT_SECRET and API_KEY:
    the operator creates the Secret (docs/deploy.md), the gateway refuses the
    example's values, and the Deployment reads the operator's Secret."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    applied = [doc for name in kust["resources"] for doc in _docs(K8S / name)]
    assert not [d for d in applied if d["kind"] == "Secret"]
    example = _by_kind("Secret", "switchboard-secrets")
    from switchboard_gateway.settings import KNOWN_DEMO_SECRETS

    assert set(example["stringData"].values()) <= KNOWN_DEMO_SECRETS
    dep = _by_kind("Deployment", "gateway")
    (gw,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    refs = {v["valueFrom"]["secretKeyRef"]["name"] for v in gw["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    assert refs == {"switchboard-secrets"}
    assert "kubectl -n switchboard create secret generic switchboard-secrets" in (K8S / "kustomization.yaml").read_text()


def test_expected_kinds_present() -> None:
    kinds = {d["kind"] for _, d in _resources()}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
        "Secret",
    } <= kinds
    assert _by_kind("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_gateway_probes_and_drain_timing() -> None:
    dep = _by_kind("Deployment", "gateway")
    pod = dep["spec"]["template"]["spec"]
    (gw,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"

    notice = _env(gw, "DRAIN_NOTICE", DRAIN_NOTICE_DEFAULT)
    timeout = _env(gw, "DRAIN_TIMEOUT", DRAIN_TIMEOUT_DEFAULT)
    pre_stop = 0.0
    cmd = gw.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if cmd[:1] == ["sleep"]:
        pre_stop = float(cmd[1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > notice + timeout, f"grace {grace} s <= DRAIN_NOTICE {notice} + DRAIN_TIMEOUT {timeout}"
    assert grace > pre_stop + notice + timeout, (
        f"grace {grace} s <= preStop {pre_stop} + DRAIN_NOTICE {notice} + DRAIN_TIMEOUT {timeout}"
    )

    # Non-root, resources set (the HPA needs CPU requests).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gw["securityContext"]["allowPrivilegeEscalation"] is False
    assert gw["resources"]["requests"]["cpu"]
    # Service/PDB/HPA select/target the gateway pods.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = _by_kind("Service", "gateway")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert _by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "gateway"


def test_ingress_websocket_timeouts() -> None:
    ann = _by_kind("Ingress")["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(ann[f"nginx.ingress.kubernetes.io/{key}"]) >= 300, key


def test_yamllint_clean() -> None:
    targets = [str(ROOT / "deploy"), str(COMPOSE)]
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint"), *targets],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_file_shape() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) >= {"redis", "gateway", "lb"}
    gw = services["gateway"]
    assert "ports" not in gw and "container_name" not in gw, "the gateway service must scale"
    assert "NODE_ID" not in gw.get("environment", {})
    grace = gw["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > DRAIN_NOTICE_DEFAULT + DRAIN_TIMEOUT_DEFAULT
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "${PY_BASE:-" in COMPOSE.read_text()
    assert "healthcheck" in services["redis"]
    assert any("haproxy.cfg" in v for v in services["lb"]["volumes"])


def test_dockerfile_is_legacy_builder_compatible() -> None:
    text = (ROOT / "services" / "gateway" / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), "a syntax line pulls a frontend image"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--mount" not in code, "RUN --mount needs BuildKit"
    assert "<<" not in code, "heredocs need BuildKit"
    assert re.search(r"^ARG PY_BASE=\S+", text, re.M).start() < text.index("\nFROM ")  # type: ignore[union-attr]
    assert re.search(r'^CMD \["python", "-m", "switchboard_gateway"\]', text, re.M)
    assert re.search(r"^USER \S+", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_haproxy_config_valid(require_tool: Callable[..., str]) -> None:
    haproxy = require_tool(
        "haproxy",
        "'haproxy -c' checks the shipped load balancer config (apt-get install haproxy)",
        candidates=("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"),
    )
    proc = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_haproxy_config_design() -> None:
    cfg = HAPROXY_CFG.read_text()
    assert re.search(r"nameserver \S+ 127\.0\.0\.11:53", cfg)
    assert re.search(r"server-template \S+ \d+-\d+ gateway:8000", cfg)
    assert "init-addr none" in cfg
    assert "balance leastconn" in cfg
    assert re.search(r"http-check send meth GET uri /readyz", cfg)
    assert re.search(r"timeout tunnel \d+", cfg)
