"""Offline checks of how the webhook dispatcher ships: the Kubernetes
Deployment and the compose override configure a dispatcher that would start
(their settings pass its own validation), on the gateway's image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from switchboard_webhooks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERRIDE = ROOT / "deploy" / "compose.webhooks.yml"
WEBHOOK_TIMEOUT_DEFAULT = 10.0


def _deployment(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / f"{name}-deployment.yaml").read_text())
    assert doc["kind"] == "Deployment" and doc["metadata"]["name"] == name
    return doc  # type: ignore[no-any-return]


def _compose_value(raw: Any) -> str:
    """``${VAR:-default}`` as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(raw))


def test_k8s_dispatcher_settings_are_valid() -> None:
    dep = _deployment("webhooks")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "switchboard_webhooks"]
    gateway = _deployment("gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == gateway["image"], "one image for the gateway and the dispatcher"

    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            env[var["name"]] = secret["stringData"][ref["key"]]
    settings = Settings.from_env(env)  # raises on anything the dispatcher would refuse
    assert settings.port == container["ports"][0]["containerPort"]
    assert pod["terminationGracePeriodSeconds"] > settings.timeout_s, "SIGTERM must let a POST finish"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert dep["spec"]["replicas"] >= 2, "replicas share the work and take over a dead one's events"


def test_compose_override() -> None:
    services = yaml.safe_load(OVERRIDE.read_text())["services"]
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    hooks = services["webhooks"]
    assert hooks["command"] == ["python", "-m", "switchboard_webhooks"]
    assert hooks["image"] == base["gateway"]["image"] and hooks["build"] == base["gateway"]["build"]
    assert "ports" not in hooks and "container_name" not in hooks, "the dispatcher must scale"
    env = {k: _compose_value(v) for k, v in hooks["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.webhook_url.startswith("http://receiver:")
    # The gateways write what the dispatcher reads.
    assert _compose_value(services["gateway"]["environment"]["EVENTS_MAXLEN"]) == env["EVENTS_MAXLEN"]
    assert env["REDIS_URL"] == base["gateway"]["environment"]["REDIS_URL"]
    grace = hooks["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > WEBHOOK_TIMEOUT_DEFAULT
    assert hooks["depends_on"]["redis"]["condition"] == "service_healthy"

    receiver = services["receiver"]
    assert receiver["build"] == base["gateway"]["build"], "built, never pulled"
    assert _compose_value(receiver["environment"]["WEBHOOK_SECRET"]) == env["WEBHOOK_SECRET"]
    mounted = [v.split(":")[0] for v in receiver["volumes"] if v.startswith("./")]
    assert mounted and all((ROOT / m).is_file() for m in mounted)


def test_image_installs_the_dispatcher() -> None:
    text = (ROOT / "services" / "gateway" / "Dockerfile").read_text()
    assert "COPY services/webhooks " in text and "/tmp/src/webhooks" in text
    assert re.search(r'python -c "import [^"]*switchboard_webhooks', text)
