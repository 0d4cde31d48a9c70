"""Deployment artefacts agree with the code: docker compose, Kubernetes, Elastic Beanstalk.

The variables each service reads are taken from its settings class (every ServiceSettings
subclass in `<service>/settings.py`, field names upper-cased; required = no default), so a
variable added, renamed or removed in code and not in a deployment file fails here. The
validators of each ecosystem (hadolint, compose-spec, kubernetes-validate, cfn-lint) run in
`make deploy-check`; these tests check what a schema cannot: names, secrets, wiring.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from auth_microservice.client_ip import ClientAddressResolver
from deploy.compose_bootstrap import GENERATED_VARIABLES, render_env_file, run
from micropay_common import telemetry
from micropay_common.services import SERVICES as REGISTRY
from micropay_common.settings import ServiceSettings
from micropay_testing.database import TestDatabase
from micropay_testing.processes import background_process, free_port
from migrations import VERSION_SCHEMA, VERSION_TABLE, head_revision
from migrations.models import target_metadata
from stack.bootstrap import WEBHOOK_SECRETS_KEY_ALIAS, AwsResources
from stack.gateway import PLACEHOLDERS, find_nginx, render_gateway_config
from stack.postgres import SERVICE_ROLES, connect, drop_database, ensure_database

ROOT = Path(__file__).resolve().parent.parent
SERVICES = tuple(str(name) for name in REGISTRY)
PORTS = {str(name): spec.port for name, spec in REGISTRY.items()}
K8S_FILES = {
    "auth": "kubernetes_auth.yaml",
    "payment": "kubernetes_payment.yaml",
    "transactions": "kubernetes_transaction.yaml",
    "notifications": "kubernetes_notifications.yaml",
}
# Read by the image's entrypoint or uvicorn, not by the settings classes.
ENTRYPOINT_VARIABLES = {"PORT", "MICROPAY_ENV_FILE", "FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY"}
# boto3's own credentials: only for moto in compose; in AWS the role of the pod or instance.
AWS_KEY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|_KEY$|^DATABASE_URL$")
# Names that look secret but name something that is not: a KMS key's id or alias.
NOT_SECRET = {"WEBHOOK_SECRETS_KMS_KEY_ID"}
ENV_DIR = "/var/lib/micropay/env"
# The admin URL of the migrations, read by the `migrate` init containers only.
MIGRATIONS_SECRET = "micropay-migrations"


@dataclass(frozen=True)
class ServiceVariables:
    """The environment variables one service's settings read."""

    known: frozenset[str]
    required: frozenset[str]

    @property
    def secret(self) -> frozenset[str]:
        """The ones whose values are secrets."""
        return frozenset(
            name for name in self.known if SECRET_LIKE.search(name) and name not in NOT_SECRET
        )


def settings_variables(service: str) -> ServiceVariables:
    """Variables of every ServiceSettings subclass defined in `<service>_microservice.settings`."""
    module = importlib.import_module(f"{service}_microservice.settings")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert classes, f"no ServiceSettings subclass in {module.__name__}"
    # The standard OpenTelemetry variables: the SDK reads them, not the settings.
    known: set[str] = set(telemetry.ENVIRONMENT_VARIABLES)
    required: set[str] = set()
    for cls in classes:
        for name, field in cls.model_fields.items():
            known.add(name.upper())
            if field.is_required():
                required.add(name.upper())
    return ServiceVariables(frozenset(known), frozenset(required))


VARIABLES = {service: settings_variables(service) for service in SERVICES}


@dataclass(frozen=True)
class Provided:
    """What one deployment gives one service: names with literal values and secret names."""

    literal: dict[str, str]
    secret: frozenset[str]

    @property
    def names(self) -> set[str]:
        """Every variable name provided."""
        return set(self.literal) | set(self.secret)


def check_provided(where: str, service: str, provided: Provided, extra: set[str]) -> list[str]:
    """Problems of one deployment of one service: missing, unknown and exposed variables."""
    variables = VARIABLES[service]
    problems: list[str] = []
    missing = variables.required - provided.names
    if missing:
        problems.append(f"{where}: {service} lacks required {sorted(missing)}")
    unknown = provided.names - variables.known - extra
    if unknown:
        problems.append(f"{where}: {service} is given unknown {sorted(unknown)}")
    exposed = {name for name in provided.literal if name in variables.secret}
    if exposed:
        problems.append(f"{where}: {service} has literal secret values for {sorted(exposed)}")
    return problems


# --- docker compose ------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    """docker-compose.yml with its YAML anchors and merge keys resolved."""
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def compose_provided(compose: dict[str, Any], service: str) -> Provided:
    """The service's `environment` plus what the bootstrap job writes to its env file."""
    environment: dict[str, Any] = compose["services"][service]["environment"]
    literal: dict[str, str] = {}
    interpolated: set[str] = set()
    for name, value in environment.items():
        # A value taken from .env (`${NAME}`) is not written in the file; secrets must be.
        if "${" in str(value):
            interpolated.add(name)
        else:
            literal[name] = str(value)
    return Provided(
        literal=literal, secret=frozenset(interpolated | set(GENERATED_VARIABLES[service]))
    )


def test_compose_provides_every_setting_of_each_service() -> None:
    compose = load_compose()
    problems: list[str] = []
    for service in SERVICES:
        provided = compose_provided(compose, service)
        extra = ENTRYPOINT_VARIABLES | AWS_KEY_VARIABLES
        problems += check_provided("docker-compose.yml", service, provided, extra)
    assert not problems, "\n".join(problems)


def test_compose_bootstrap_creates_the_kms_key_the_notifications_service_is_given() -> None:
    services = load_compose()["services"]
    given = services["notifications"]["environment"]["WEBHOOK_SECRETS_KMS_KEY_ID"]
    created = services["bootstrap"]["environment"]["WEBHOOK_SECRETS_KMS_KEY_ID"]
    assert given == created == f"${{WEBHOOK_SECRETS_KMS_KEY_ID:-{WEBHOOK_SECRETS_KEY_ALIAS}}}"


def test_compose_services_load_the_bootstrap_env_file_from_the_shared_volume() -> None:
    compose = load_compose()
    services = compose["services"]
    job_volumes = services["bootstrap"]["volumes"]
    assert f"micropay-env:{ENV_DIR}" in job_volumes
    for service in SERVICES:
        definition = services[service]
        assert definition["environment"]["MICROPAY_ENV_FILE"] == f"{ENV_DIR}/{service}.env"
        assert f"micropay-env:{ENV_DIR}:ro" in definition["volumes"]
        assert definition["depends_on"]["bootstrap"] == {
            "condition": "service_completed_successfully"
        }
        assert definition["depends_on"]["postgres"] == {"condition": "service_healthy"}
        # Each service connects as its own role, with the password from .env.
        database_url = definition["environment"]["DATABASE_URL"]
        role = SERVICE_ROLES[service]
        assert database_url.startswith(f"postgresql://{role}:${{{service.upper()}_DB_PASSWORD")
        assert services["bootstrap"]["environment"][f"{service.upper()}_DB_PASSWORD"].startswith(
            f"${{{service.upper()}_DB_PASSWORD"
        )


def test_compose_publishes_only_the_gateway_and_checks_every_long_running_part() -> None:
    services = load_compose()["services"]
    # Optional tools (a profile's, started on request) are published on loopback only.
    optional = {name for name, definition in services.items() if definition.get("profiles")}
    assert optional == {"jaeger"}
    published = {name for name, definition in services.items() if definition.get("ports")}
    assert published - optional == {"gateway"}
    for name in optional:
        for port in services[name].get("ports", []):
            assert ":-127.0.0.1:" in port, f"{name} publishes {port} beyond loopback"
    for name, definition in services.items():
        if name == "bootstrap":
            assert definition["restart"] == "no"
            continue
        if name in optional:
            # Nothing waits for it, and its image has nothing to run a health check with.
            assert not any(name in spec.get("depends_on", {}) for spec in services.values())
            continue
        assert "healthcheck" in definition, f"{name} has no healthcheck"
        for dependency, condition in definition.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency == "bootstrap" else "service_healthy"
            )
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
    for service in SERVICES:
        hardening = services[service]
        assert hardening["read_only"] is True
        assert hardening["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in hardening["security_opt"]


def test_compose_moto_image_matches_the_pinned_moto() -> None:
    pins = (ROOT / "requirements-dev.txt").read_text()
    version = re.search(r"^moto\[[^\]]*\]==(\S+)$", pins, re.MULTILINE)
    assert version is not None
    # The public image by default; MOTO_IMAGE selects the stand-in (deploy/base-images/).
    image = f"motoserver/moto:{version.group(1)}"
    assert load_compose()["services"]["moto"]["image"] == f"${{MOTO_IMAGE:-{image}}}"
    stand_in = (ROOT / "deploy" / "base-images" / "moto" / "Dockerfile").read_text()
    assert f"ARG MOTO_VERSION={version.group(1)}\n" in stand_in
    assert (
        f"MOTO_VERSION={version.group(1)}\n"
        in (ROOT / "deploy" / "base-images" / "build.sh").read_text()
    )


def test_compose_base_images_default_to_the_public_images() -> None:
    services = load_compose()["services"]
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    assert services["gateway"]["image"] == "${NGINX_IMAGE:-nginx:1.28-alpine}"
    built = [spec for spec in services.values() if "build" in spec]
    assert len(built) == 6
    for spec in built:
        assert spec["build"]["args"] == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.12-slim}"}
        dockerfile = (ROOT / spec["build"]["dockerfile"]).read_text()
        assert dockerfile.startswith("#")
        assert "\nARG PYTHON_IMAGE=python:3.12-slim\n" in dockerfile
        # Both stages: the final image is the same base, so the venv's python exists there.
        assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2


def test_kubernetes_runs_what_the_compose_run_proved() -> None:
    """`make test-containers` proves the compose stack; Kubernetes cannot run here, so its
    manifests must use the same images, entrypoints, ports, probes and variables."""
    services = load_compose()["services"]
    documents = load_manifests()
    for name, spec in REGISTRY.items():
        service = str(name)
        compose = services[service]
        deployment = find(documents, "Deployment", service)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == service]
        # The same image (repository name) compose builds, with its own entrypoint untouched.
        compose_image = compose["image"].split(":")[0]
        assert container["image"].rsplit("/", 1)[-1].split(":")[0] == compose_image
        for part in (container, *pod.get("initContainers", [])):
            assert part["image"] == container["image"]
            assert "command" not in part, "the image's ENTRYPOINT (micropay-service) is kept"
        assert "args" not in container or container["args"] == ["serve"]
        assert [c.get("args") for c in pod.get("initContainers", [])] == [["migrate"]]
        # The port: the registry's, the Dockerfile's PORT and EXPOSE, the container port.
        dockerfile = (ROOT / compose["build"]["dockerfile"]).read_text()
        assert f"PORT={spec.port}\n" in dockerfile
        assert f"EXPOSE {spec.port}\n" in dockerfile
        assert [p["containerPort"] for p in container["ports"]] == [spec.port]
        # Probes: compose's healthcheck asks /health/ready (healthy in the compose run) and
        # the image's HEALTHCHECK /health/live; the pods ask the same paths on that port.
        health = " ".join(compose["healthcheck"]["test"])
        assert "/health/ready" in health
        assert "/health/live" in dockerfile
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
        # Both run as the image's user on a read-only root, as the compose run checked.
        assert compose["read_only"] is True
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context.get("runAsUser", 10001) == 10001
    # The variables: each side provides every setting (the tests above, per service), and
    # the compose env files of the bootstrap job name nothing Kubernetes does not provide.
    for service, generated in GENERATED_VARIABLES.items():
        provided = kubernetes_provided(documents, service)
        missing = set(generated) - provided.names - {"SERVICE_ACCOUNT_PASSWORD"}
        assert not missing, f"{service}: {missing}"


def test_compose_gateway_fills_exactly_the_template_placeholders() -> None:
    gateway = load_compose()["services"]["gateway"]
    environment = gateway["environment"]
    assert (
        "./gateway/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in gateway["volumes"]
    )
    # The wallet app built on the host (deploy/build-images.sh) where WEB_ROOT says.
    assert f"./web/dist:{environment['WEB_ROOT']}:ro" in gateway["volumes"]
    assert set(PLACEHOLDERS) <= set(environment)
    # The image's envsubst must replace these names only, never an nginx $variable.
    envsubst_filter = re.compile(environment["NGINX_ENVSUBST_FILTER"].replace("$$", "$"))
    names = {name for name in environment if envsubst_filter.search(name)}
    assert names == set(PLACEHOLDERS)
    for service in SERVICES:
        assert environment[f"{service.upper()}_UPSTREAM"] == f"{service}:{PORTS[service]}"


@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (.ci/run installs it)")
def test_compose_gateway_configuration_passes_nginx_t(tmp_path: Path) -> None:
    environment = load_compose()["services"]["gateway"]["environment"]
    # Compose's host names resolve only inside its network; nginx -t resolves upstreams.
    # Compose's defaults of ${NAME:-default}, as docker compose fills them in without a .env.
    values = {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(environment[name])) for name in PLACEHOLDERS
    }
    for service in SERVICES:
        values[f"{service.upper()}_UPSTREAM"] = f"127.0.0.1:{PORTS[service]}"
    values["GATEWAY_PORT"] = f"127.0.0.1:{free_port()}"
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "default.conf").write_text(render_gateway_config(values))
    # The same http-level include the official image's nginx.conf does.
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    include {tmp_path}/conf.d/*.conf;\n}}\n"
    )
    nginx = find_nginx()
    assert nginx is not None
    result = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-e", "stderr", "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_env_example_sets_every_required_compose_value() -> None:
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    required = set(
        re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", (ROOT / "docker-compose.yml").read_text())
    )
    assert required
    assert required <= defined, f".env.example lacks {sorted(required - defined)}"


# --- Kubernetes ----------------------------------------------------------------------------------


def load_manifests() -> list[dict[str, Any]]:
    """Every document of every kubernetes_*.yaml."""
    documents: list[dict[str, Any]] = []
    for path in sorted(ROOT.glob("kubernetes_*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one document of this kind and name."""
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} documents"
    return matches[0]


def kubernetes_provided(documents: list[dict[str, Any]], service: str) -> Provided:
    """What the service's container gets from ConfigMaps (values) and Secrets (names)."""
    deployment = find(documents, "Deployment", service)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    literal: dict[str, str] = {}
    secret: set[str] = set()
    for source in container.get("envFrom", []):
        # A whole Secret would hide which names it provides.
        assert "secretRef" not in source, f"{service}: envFrom a Secret; use secretKeyRef"
        config_map = find(documents, "ConfigMap", source["configMapRef"]["name"])
        literal.update({k: str(v) for k, v in config_map["data"].items()})
    for variable in container.get("env", []):
        if "value" in variable:
            literal[variable["name"]] = str(variable["value"])
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["key"] == variable["name"], variable
            secret.add(variable["name"])
    return Provided(literal=literal, secret=frozenset(secret))


def test_kubernetes_provides_every_setting_of_each_service() -> None:
    documents = load_manifests()
    problems: list[str] = []
    for service in SERVICES:
        provided = kubernetes_provided(documents, service)
        problems += check_provided(K8S_FILES[service], service, provided, ENTRYPOINT_VARIABLES)
    assert not problems, "\n".join(problems)


def test_kubernetes_manifests_reference_secrets_and_never_hold_them() -> None:
    documents = load_manifests()
    assert not [d for d in documents if d["kind"] == "Secret"]
    every_secret = set().union(*(VARIABLES[s].secret for s in SERVICES)) | AWS_KEY_VARIABLES
    for config_map in (d for d in documents if d["kind"] == "ConfigMap"):
        leaked = every_secret & set(config_map["data"])
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds {sorted(leaked)}"


def assert_container_locked_down(container: dict[str, Any]) -> None:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, resources."""
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_kubernetes_deployments_are_locked_down() -> None:
    documents = load_manifests()
    for service in SERVICES:
        deployment = find(documents, "Deployment", service)
        assert deployment["spec"]["replicas"] == 2
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert_container_locked_down(container)
        assert container["ports"][0]["containerPort"] == PORTS[service]
        assert container["image"].rsplit("/", 1)[1].startswith(f"micropay-{service}:")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"].startswith("/health/")
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"):
            find(documents, kind, service)
        assert find(documents, "HorizontalPodAutoscaler", service)["spec"]["minReplicas"] == 2


def secrets_read_by(container: dict[str, Any]) -> set[str]:
    """The names of the Secrets a container reads, one key or all of them."""
    names = {
        source["secretRef"]["name"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    for variable in container.get("env", []):
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            names.add(reference["name"])
    return names


def test_kubernetes_serves_the_wallet_app_from_the_gateway_image_locked_down() -> None:
    documents = load_manifests()
    pod = find(documents, "Deployment", "web")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].rsplit("/", 1)[1].startswith("micropay-gateway:")
    assert_container_locked_down(container)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 101
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    # The app is built in a Node stage of the image; nginx runs as its own unprivileged user.
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == [
        "${NODE_IMAGE}",
        "${NGINX_IMAGE}",
    ]
    assert "RUN npm ci --no-audit --no-fund" in dockerfile
    assert "USER 101:101" in dockerfile
    # Every placeholder of the template is filled: by the ConfigMap, or the image (WEB_ROOT).
    config = find(documents, "ConfigMap", "micropay-web")["data"]
    assert set(PLACEHOLDERS) == set(config) | {"WEB_ROOT"}
    assert config["GATEWAY_PORT"] == str(container["ports"][0]["containerPort"])
    for service in SERVICES:
        assert config[f"{service.upper()}_UPSTREAM"] == (
            f"{service}.micropay.svc.cluster.local:{PORTS[service]}"
        )
    policy = find(documents, "NetworkPolicy", "web")["spec"]
    ((source,),) = [rule["from"] for rule in policy["ingress"]]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_kubernetes_deployments_migrate_before_serving_and_only_there_see_the_admin_url() -> None:
    documents = load_manifests()
    for service in SERVICES:
        pod = find(documents, "Deployment", service)["spec"]["template"]["spec"]
        # Init containers run, each to success, before any container of the pod starts.
        (migrate,) = pod["initContainers"]
        (container,) = pod["containers"]
        assert migrate["name"] == "migrate"
        # The migrations of the very image about to serve, through its entrypoint (no command).
        assert migrate["image"] == container["image"]
        assert "command" not in migrate
        assert migrate["args"] == ["migrate"]
        assert migrate["env"] == [
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": MIGRATIONS_SECRET, "key": "DATABASE_URL"}},
            }
        ]
        assert "envFrom" not in migrate
        assert_container_locked_down(migrate)
        assert migrate["volumeMounts"] == container["volumeMounts"]
        assert MIGRATIONS_SECRET not in secrets_read_by(container)
    for document in documents:
        if document["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
            template = document["spec"].get("jobTemplate", document)["spec"]["template"]["spec"]
            for container in template["containers"]:
                assert MIGRATIONS_SECRET not in secrets_read_by(container), container["name"]
    shared_header = (ROOT / "kubernetes_shared.yaml").read_text().split("\napiVersion:", 1)[0]
    assert f"#   {MIGRATIONS_SECRET}" in shared_header, "kubernetes_shared.yaml lists the secrets"


def test_kubernetes_network_policies_admit_only_the_ingress_and_the_services() -> None:
    documents = load_manifests()
    default_deny = find(documents, "NetworkPolicy", "default-deny-ingress")
    assert default_deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for service in SERVICES:
        policy = find(documents, "NetworkPolicy", service)["spec"]
        assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": service}
        (rule,) = policy["ingress"]
        sources = rule["from"]
        assert len(sources) == 2
        ingress, services = sources
        assert ingress["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress-nginx"
        }
        assert services["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "service"


def test_kubernetes_notifications_egress_is_dns_the_database_and_https_only() -> None:
    policy = find(load_manifests(), "NetworkPolicy", "notifications-egress")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "notifications"}
    assert policy["policyTypes"] == ["Egress"]
    dns, database, https = policy["egress"]

    def ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
        return {(port["protocol"], port["port"]) for port in rule["ports"]}

    assert ports(dns) == {("UDP", 53), ("TCP", 53)}
    (resolver,) = dns["to"]
    assert resolver["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert resolver["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # The database sits in the VPC: private addresses only, and on its port only.
    assert ports(database) == {("TCP", 5432)}
    assert {block["ipBlock"]["cidr"] for block in database["to"]} == {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    }
    # HTTPS (AWS and webhook receivers) anywhere but the link-local metadata addresses.
    assert ports(https) == {("TCP", 443)}
    blocks = {block["ipBlock"]["cidr"]: block["ipBlock"] for block in https["to"]}
    assert set(blocks) == {"0.0.0.0/0", "::/0"}
    assert blocks["0.0.0.0/0"]["except"] == ["169.254.0.0/16"]
    # Nothing else: no other MicroPay service is called, so no pod selector beyond DNS.
    assert all("podSelector" not in peer for rule in (database, https) for peer in rule["to"])


def test_kubernetes_webhooks_may_use_only_the_ports_the_egress_policy_opens() -> None:
    documents = load_manifests()
    policy = find(documents, "NetworkPolicy", "notifications-egress")["spec"]
    *_, https = policy["egress"]
    opened = {port["port"] for port in https["ports"]}
    config = find(documents, "ConfigMap", "micropay-notifications")["data"]
    allowed = {int(port) for port in config["WEBHOOK_ALLOWED_PORTS"].split(",")}
    assert allowed == opened == {443}


def test_kubernetes_ingress_checks_tokens_with_the_auth_service_and_never_routes_internal() -> None:
    documents = load_manifests()
    protected = find(documents, "Ingress", "micropay-protected")
    annotations = protected["metadata"]["annotations"]
    auth_url = httpx.URL(annotations["nginx.ingress.kubernetes.io/auth-url"])
    assert auth_url.host == "auth.micropay.svc.cluster.local"
    assert auth_url.port == PORTS["auth"]
    assert auth_url.path == "/auth/verify"
    assert annotations["nginx.ingress.kubernetes.io/auth-response-headers"] == (
        "X-User-Id,X-User-Email,X-User-Groups"
    )
    public = find(documents, "Ingress", "micropay-public")
    assert "nginx.ingress.kubernetes.io/auth-url" not in public["metadata"].get("annotations", {})
    public_paths = {p["path"] for r in public["spec"]["rules"] for p in r["http"]["paths"]}
    # The gateway's unauthenticated routes, and no others.
    assert public_paths == {
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/confirm",
        "/auth/resend-confirmation",
        "/auth/session",
        "/auth/session/refresh",
        "/payments/webhooks/stripe",
        "/payments/webhooks/paypal",
        # The wallet app (kubernetes_web.yaml): what no API prefix takes.
        "/",
    }
    (app,) = [p for r in public["spec"]["rules"] for p in r["http"]["paths"] if p["path"] == "/"]
    assert app["backend"]["service"]["name"] == "web"
    for ingress in (public, protected):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert "internal" not in path["path"]


# --- Elastic Beanstalk ---------------------------------------------------------------------------


def eb_provided(service: str) -> Provided:
    """Environment properties (values) and environment secrets (names) of the service."""
    config = yaml.safe_load(
        (ROOT / f"{service}_microservice" / ".ebextensions" / "micropay.config").read_text()
    )
    options = config["option_settings"]
    literal = {
        k: str(v) for k, v in options["aws:elasticbeanstalk:application:environment"].items()
    }
    secrets = options["aws:elasticbeanstalk:application:environmentsecrets"]
    for name, arn in secrets.items():
        assert re.match(r"^arn:aws:(ssm|secretsmanager):", arn), f"{service} {name}: {arn}"
    assert not set(literal) & set(secrets), f"{service}: a variable is set twice"
    return Provided(literal=literal, secret=frozenset(secrets))


def test_elastic_beanstalk_provides_every_setting_of_each_service() -> None:
    problems: list[str] = []
    for service in SERVICES:
        where = f"{service}_microservice/.ebextensions/micropay.config"
        problems += check_provided(where, service, eb_provided(service), ENTRYPOINT_VARIABLES)
    assert not problems, "\n".join(problems)


def test_dockerrun_runs_the_service_image_on_its_port() -> None:
    for service in SERVICES:
        dockerrun = json.loads(
            (ROOT / f"{service}_microservice" / "Dockerrun.aws.json").read_text()
        )
        assert dockerrun["Ports"] == [{"ContainerPort": PORTS[service]}]
        assert f".amazonaws.com/micropay-{service}:" in dockerrun["Image"]["Name"]
        assert eb_provided(service).literal["PORT"] == str(PORTS[service])


EB_HOOK = (
    ROOT / "deploy" / "elastic-beanstalk" / ".platform" / "hooks" / "predeploy" / "10_migrate.sh"
)
EB_PARAMETERS = "/micropay/migrations"
EB_PASSWORD_SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!db-example"
# Stand-ins for the instance's CLIs: each call is appended to $CALLS with the DATABASE_URL it
# saw. `aws ssm get-parameters` answers $DATABASE_URL_VALUE or $PASSWORD_SECRET_ARN_VALUE by
# the name asked for, `aws secretsmanager` $SECRET_VALUE; `docker login` reads the password.
FAKE_AWS = r"""#!/bin/sh
echo "aws $* | DATABASE_URL=${DATABASE_URL:-}" >>"$CALLS"
case "$*" in
    "ssm get-parameters "*"--names /micropay/migrations/DATABASE_URL "*)
        printf '%s\n' "${DATABASE_URL_VALUE:-None}" ;;
    "ssm get-parameters "*"--names /micropay/migrations/PASSWORD_SECRET_ARN "*)
        printf '%s\n' "${PASSWORD_SECRET_ARN_VALUE:-None}" ;;
    "secretsmanager get-secret-value "*) printf '%s\n' "$SECRET_VALUE" ;;
    "ecr get-login-password "*) echo token ;;
esac
"""
FAKE_DOCKER = """#!/bin/sh
echo "docker $* | DATABASE_URL=${DATABASE_URL:-}" >>"$CALLS"
if [ "$1" = login ]; then cat >/dev/null; fi
"""


def run_eb_hook(tmp_path: Path, service: str, **answers: str) -> tuple[int, str, list[str]]:
    """The predeploy hook in a staging directory of `service`'s bundle, with fake aws and docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("aws", FAKE_AWS), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "Dockerrun.aws.json").write_bytes(
        (ROOT / f"{service}_microservice" / "Dockerrun.aws.json").read_bytes()
    )
    calls = tmp_path / "calls"
    calls.touch()
    result = subprocess.run(
        [str(EB_HOOK)],
        cwd=staging,
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "AWS_REGION": "us-east-1",
            "CALLS": str(calls),
            **answers,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, calls.read_text().splitlines()


def test_elastic_beanstalk_hook_is_an_executable_predeploy_hook_that_passes_shellcheck() -> None:
    assert EB_HOOK.read_text().startswith("#!/bin/bash\n")
    assert EB_HOOK.stat().st_mode & stat.S_IXUSR
    # The mode Elastic Beanstalk finds in the bundle is the one git checks out.
    staged = subprocess.run(
        ["git", "ls-files", "--stage", str(EB_HOOK.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not staged or staged.startswith("100755 "), staged
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), str(EB_HOOK)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
    makefile = (ROOT / "Makefile").read_text()
    assert "deploy/elastic-beanstalk/.platform/hooks/*/*.sh" in makefile


def test_elastic_beanstalk_hook_migrates_with_the_new_image_and_the_current_admin_password(
    tmp_path: Path,
) -> None:
    password = "p@ss:w/rd?#%"
    status, output, calls = run_eb_hook(
        tmp_path,
        "payment",
        DATABASE_URL_VALUE="postgresql://micropay_admin@db.internal:5432/micropay",
        PASSWORD_SECRET_ARN_VALUE=EB_PASSWORD_SECRET,
        SECRET_VALUE=json.dumps({"username": "micropay_admin", "password": password}),
    )
    assert status == 0, output
    image = json.loads((ROOT / "payment_microservice" / "Dockerrun.aws.json").read_text())["Image"][
        "Name"
    ]
    ssm = [call for call in calls if call.startswith("aws ssm ")]
    assert [call.split("--names ")[1].split()[0] for call in ssm] == [
        f"{EB_PARAMETERS}/DATABASE_URL",
        f"{EB_PARAMETERS}/PASSWORD_SECRET_ARN",
    ]
    # The password is read at each deployment from the secret RDS rotates.
    (secret,) = [call for call in calls if call.startswith("aws secretsmanager get-secret-value ")]
    assert f"--secret-id {EB_PASSWORD_SECRET} " in secret
    (run,) = [call for call in calls if call.startswith("docker run ")]
    arguments, environment = run.split(" | ")
    # The new image's own entrypoint and user, restricted as the services are.
    assert arguments.endswith(f" {image} migrate")
    assert "--user" not in arguments
    assert "--entrypoint" not in arguments
    for flag in ("--rm", "--read-only", "--cap-drop ALL", "--security-opt no-new-privileges"):
        assert flag in arguments
    # The admin URL reaches the container through the environment, never a command line.
    assert "--env DATABASE_URL " in arguments
    url = make_url(environment.removeprefix("DATABASE_URL="))
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "micropay_admin",
        password,
        "db.internal",
        5432,
        "micropay",
    )
    assert all("p@ss" not in call.split(" | ")[0] for call in calls)
    (login,) = [call for call in calls if call.startswith("docker login ")]
    assert login.split(" | ")[0].endswith(f" {image.split('/')[0]}")
    assert calls.index(login) < calls.index(run)


@pytest.mark.parametrize(
    ("answers", "complaint"),
    [
        ({"PASSWORD_SECRET_ARN_VALUE": EB_PASSWORD_SECRET}, f"{EB_PARAMETERS}/DATABASE_URL"),
        (
            {"DATABASE_URL_VALUE": "postgresql://micropay_admin@db:5432/micropay"},
            f"{EB_PARAMETERS}/PASSWORD_SECRET_ARN",
        ),
        (
            {
                "DATABASE_URL_VALUE": "postgresql://micropay_admin@db:5432/micropay",
                "PASSWORD_SECRET_ARN_VALUE": EB_PASSWORD_SECRET,
                "SECRET_VALUE": "not json",
            },
            "cannot put the admin URL together",
        ),
    ],
)
def test_elastic_beanstalk_hook_fails_the_deployment_without_the_admin_url(
    tmp_path: Path, answers: dict[str, str], complaint: str
) -> None:
    status, output, calls = run_eb_hook(tmp_path, "auth", **answers)
    assert status != 0
    assert complaint in output
    assert not [call for call in calls if call.startswith("docker ")]


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (`!Sub x` is read as `{"Fn::Sub": x}`)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def test_cloudformation_creates_the_parameters_the_hook_reads() -> None:
    source = (ROOT / "infra" / "cloudformation.yaml").read_text()
    template = yaml.load(source, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader
    parameters = {
        resource["Properties"]["Name"]: resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::SSM::Parameter"
    }
    url = parameters[f"{EB_PARAMETERS}/DATABASE_URL"]
    secret = parameters[f"{EB_PARAMETERS}/PASSWORD_SECRET_ARN"]
    # Neither holds a secret; the password stays in the secret RDS rotates.
    assert url["Type"] == secret["Type"] == "String"
    assert url["Value"]["Fn::Sub"].startswith("postgresql://micropay_admin@${Database.Endpoint")
    assert secret["Value"] == {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
    master = template["Resources"]["Database"]["Properties"]
    assert master["MasterUsername"] == "micropay_admin"
    assert master["ManageMasterUserPassword"] is True
    hook = EB_HOOK.read_text()
    assert f"parameters={EB_PARAMETERS}\n" in hook
    assert "$(parameter DATABASE_URL)" in hook
    assert "$(parameter PASSWORD_SECRET_ARN)" in hook


def test_elastic_beanstalk_bundles_carry_the_hook_and_never_the_admin_url() -> None:
    for service in SERVICES:
        config = (
            ROOT / f"{service}_microservice" / ".ebextensions" / "micropay.config"
        ).read_text()
        # The hook reads the admin URL itself; as an environment secret every container would.
        assert EB_PARAMETERS not in config.split("option_settings:", 1)[1]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Elastic Beanstalk", 1)[1].split("\n### ", 1)[0]
    assert "(cd deploy/elastic-beanstalk && zip -r ../../micropay-$S-$TAG.zip .platform)" in section


# --- images --------------------------------------------------------------------------------------


def test_dockerfiles_build_slim_non_root_images_that_serve_on_port() -> None:
    for service in SERVICES:
        dockerfile = (ROOT / f"{service}_microservice" / "Dockerfile").read_text()
        stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
        # python:3.12-slim unless PYTHON_IMAGE names a stand-in (deploy/base-images/).
        assert stages == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", dockerfile, re.MULTILINE)
        assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
        assert f"PORT={PORTS[service]}" in dockerfile
        assert f"EXPOSE {PORTS[service]}" in dockerfile
        assert f"MICROPAY_APP={service}_microservice.main:app" in dockerfile
        assert "/health/live" in dockerfile.split("HEALTHCHECK", 1)[1]
        assert 'ENTRYPOINT ["/usr/local/bin/micropay-service"]' in dockerfile
        # The final stage copies the virtualenv; it never runs pip (no compiler, no cache).
        final_stage = dockerfile.split("\nFROM ", 2)[2]
        assert "pip install" not in final_stage
    entrypoint = (ROOT / "deploy" / "service-entrypoint.sh").read_text()
    assert "--proxy-headers" in entrypoint
    assert '--port "${PORT' in entrypoint
    # The server as the local stack runs it (stack/launcher.py), workers from the environment.
    for option in ("--loop uvloop", "--http httptools", '--workers "${WEB_CONCURRENCY:-1}"'):
        assert option in entrypoint


IMAGES = {
    **{service: ROOT / f"{service}_microservice" / "Dockerfile" for service in SERVICES},
    "bootstrap": ROOT / "deploy" / "bootstrap" / "Dockerfile",
}
# What .dockerignore keeps out of every image, as far as the copied folders go.
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.py[cod]", "tests")


def final_stage(dockerfile: Path) -> str:
    """The instructions of the image's last stage (the one that runs)."""
    return dockerfile.read_text().split("\nFROM ", 2)[2]


def lay_out_app(dockerfile: Path, app: Path) -> None:
    """Copy into `app` what the final stage copies from the repository into /app (its WORKDIR)."""
    stage = final_stage(dockerfile)
    assert re.search(r"^WORKDIR /app$", stage, re.MULTILINE)
    for line in re.findall(r"^COPY (.+)$", stage, re.MULTILINE):
        words = line.split()
        if any(word.startswith("--from=") for word in words):
            continue
        *sources, target = [word for word in words if not word.startswith("--")]
        if target.startswith("/"):
            continue  # the entrypoint, installed outside /app
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, app / target, ignore=NOT_COPIED, dirs_exist_ok=True)
            else:
                destination = app / target / origin.name if target.endswith("/") else app / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination)


def test_every_image_copies_the_migrations() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"migrations", "migrations/", "alembic.ini", "**/migrations"} & set(ignored)
    for name, dockerfile in IMAGES.items():
        stage = final_stage(dockerfile)
        assert re.search(r"^COPY migrations/ migrations/$", stage, re.MULTILINE), name
        assert re.search(r"^COPY alembic\.ini \./$", stage, re.MULTILINE), name
        assert "PostgreSQL.sql" not in stage, f"{name}: the schema comes from the migrations"


@pytest.fixture
async def empty_database(database: TestDatabase) -> AsyncIterator[str]:
    """The admin URL of an empty database of this test's own, dropped afterwards."""
    name = f"{database.name}_images"
    await ensure_database(database.server, name, recreate=True)
    yield database.server.url_for(name)
    await drop_database(database.server, name)


async def migrated_state(admin_url: str) -> tuple[str, set[str]]:
    """The database's migration version and its tables in the services' schemas."""
    conn = await connect(admin_url)
    try:
        version = await conn.fetchval(f"SELECT version_num FROM {VERSION_SCHEMA}.{VERSION_TABLE}")
        rows = await conn.fetch(
            "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[])",
            [spec.schema for spec in REGISTRY.values()],
        )
    finally:
        await conn.close()
    return str(version), {row["name"] for row in rows}


def entrypoint(app: Path, *arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """The images' entrypoint run in `app` (their /app) with the test's Python first on PATH."""
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "service-entrypoint.sh"), *arguments],
        cwd=app,
        env={
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_each_service_image_migrates_an_empty_database_with_only_what_it_copies(
    tmp_path: Path, empty_database: str
) -> None:
    head = head_revision()
    for service in SERVICES:
        app = tmp_path / service
        lay_out_app(IMAGES[service], app)
        # The first run builds the schema; the others find it at the latest revision.
        result = entrypoint(app, "migrate", DATABASE_URL=empty_database)
        assert result.returncode == 0, f"{service}: {result.stderr}"
        assert f"revision {head}" in result.stdout
    version, tables = asyncio.run(migrated_state(empty_database))
    assert version == head
    assert tables == {table.fullname for table in target_metadata().sorted_tables}


def test_entrypoint_migrate_without_an_admin_url_fails_saying_so(tmp_path: Path) -> None:
    lay_out_app(IMAGES["payment"], tmp_path)
    result = entrypoint(tmp_path, "migrate")
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_entrypoint_refuses_an_unknown_command(tmp_path: Path) -> None:
    result = entrypoint(tmp_path, "upgrade", MICROPAY_APP="auth_microservice.main:app", PORT="1")
    assert result.returncode == 64
    assert "usage: micropay-service [serve|migrate]" in result.stderr


def test_bootstrap_image_imports_its_job_from_only_what_it_copies(tmp_path: Path) -> None:
    lay_out_app(IMAGES["bootstrap"], tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", "import deploy.compose_bootstrap"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- the bootstrap job and the entrypoint, for real ----------------------------------------------


@pytest.fixture(scope="module")
def own_localstripe() -> Iterator[str]:
    """A localstripe of this module's own: the job re-registers the webhook named micropay."""
    port = free_port()
    args = [sys.executable, "-m", "stack.localstripe_server", "--port", str(port), "--quiet"]
    with background_process("localstripe-deploy", args, f"http://127.0.0.1:{port}/v1/customers"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def job_database(database: TestDatabase) -> Any:
    """A database of the job's own on the test server, dropped afterwards."""
    name = f"{database.name}_compose"
    yield name
    await drop_database(database.server, name)


def sourced(path: Path) -> dict[str, str]:
    """The variables a POSIX shell gets from `set -a; . path`."""
    script = 'set -a; . "$1"; env -0'
    output = subprocess.run(
        ["sh", "-c", script, "sh", str(path)],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
        timeout=10,
    ).stdout.decode()
    return dict(line.split("=", 1) for line in output.split("\0") if "=" in line)


def test_env_files_survive_the_shell_whatever_the_characters(tmp_path: Path) -> None:
    values = {"COGNITO_CLIENT_SECRET": "a'b\"c $HOME `id` \\ d", "SERVICE_ACCOUNT_PASSWORD": "x;y"}
    path = tmp_path / "service.env"
    path.write_text(render_env_file(values))
    loaded = sourced(path)
    assert {name: loaded[name] for name in values} == values


def test_bootstrap_job_writes_env_files_the_services_start_with(
    tmp_path: Path,
    database: TestDatabase,
    job_database: str,
    aws: AwsResources,
    own_localstripe: str,
) -> None:
    role_passwords = {
        SERVICE_ROLES[service]: str(make_url(url).password)
        for service, url in database.service_urls.items()
    }
    # The session's pool already has these accounts; the same passwords leave them working.
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "state.json").write_text(
        json.dumps(
            {
                "service_passwords": {s: a["password"] for s, a in aws.service_accounts.items()},
                "stripe_webhook_secret": "whsec_dGVzdA==",
            }
        )
    )
    arguments: dict[str, Any] = {
        "admin_database_url": database.server.admin_url,
        "database": job_database,
        "role_passwords": role_passwords,
        "aws_endpoint": aws.endpoint_url,
        "region": aws.region,
        "ses_sender": aws.ses_sender,
        "localstripe_url": own_localstripe,
        "webhook_url": "http://127.0.0.1:9/payments/webhooks/stripe",
        "env_dir": tmp_path / "env",
    }
    written = run(**arguments)
    assert written == run(**arguments), "a second run must change nothing"
    # The job migrated the new database: the latest revision, every table of the models.
    version, tables = asyncio.run(migrated_state(database.server.url_for(job_database)))
    assert version == head_revision()
    assert tables == {table.fullname for table in target_metadata().sorted_tables}

    for service in SERVICES:
        path = tmp_path / "env" / f"{service}.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        loaded = sourced(path)
        assert set(GENERATED_VARIABLES[service]) <= set(loaded)
        assert loaded["COGNITO_USER_POOL_ID"] == aws.user_pool_id
        assert loaded["COGNITO_CLIENT_SECRET"] == aws.client_secret
        assert loaded["SERVICE_ACCOUNT_USERNAME"] == f"svc-{service}"
    assert sourced(tmp_path / "env" / "payment.env")["STRIPE_WEBHOOK_SECRET"] == "whsec_dGVzdA=="
    assert sourced(tmp_path / "env" / "notifications.env")["SNS_TOPIC_ARN"] == aws.sns_topic_arn
    # The key that seals webhook secrets exists under the alias compose gives the service.
    kms = boto3.client("kms", region_name=aws.region, endpoint_url=aws.endpoint_url)
    assert kms.describe_key(KeyId=WEBHOOK_SECRETS_KEY_ALIAS)["KeyMetadata"]["Enabled"]

    # The image's entrypoint, with the compose variables and the job's file, starts a service
    # that reaches its database (ready) with the generated settings.
    service = "transactions"
    port = free_port()
    database_url = make_url(database.service_urls[service]).set(database=job_database)
    environment = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "MICROPAY_APP": f"{service}_microservice.main:app",
        "PORT": str(port),
        "MICROPAY_ENV_FILE": str(tmp_path / "env" / f"{service}.env"),
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "AWS_ENDPOINT_URL": str(aws.endpoint_url),
        "AWS_REGION": aws.region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "service.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["sh", str(ROOT / "deploy" / "service-entrypoint.sh")],
            env=environment,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status = httpx.get(
                        f"http://127.0.0.1:{port}/health/ready", timeout=2
                    ).status_code
                except httpx.HTTPError:
                    status = None
                if status == 200:
                    break
                time.sleep(0.2)
            assert status == 200, log.read_text()[-3000:]
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_entrypoint_refuses_a_missing_env_file(tmp_path: Path) -> None:
    result = entrypoint(
        tmp_path,
        MICROPAY_APP="auth_microservice.main:app",
        PORT="1",
        MICROPAY_ENV_FILE=str(tmp_path / "absent.env"),
    )
    assert result.returncode == 64
    assert "absent.env is not a readable file" in result.stderr


# --- The client's address at the auth service ------------------------------------------------

EVERYONE = ("0.0.0.0/0", "::/0")


def _auth_config_map() -> dict[str, str]:
    [config] = [
        doc["data"]
        for doc in load_manifests()
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "micropay-auth"
    ]
    return {str(key): str(value) for key, value in config.items()}


# Whole private ranges would trust any address in the VPC or cluster, not what sits in front.
WHOLE_PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def _resolver_of(variables: dict[str, str]) -> ClientAddressResolver:
    trusted = {part.strip() for part in variables["TRUSTED_PROXIES"].split(",") if part.strip()}
    assert not set(EVERYONE) & trusted
    for block in trusted:
        network = ipaddress.ip_network(block)
        if isinstance(network, ipaddress.IPv4Network):
            assert not any(network.supernet_of(whole) for whole in WHOLE_PRIVATE_RANGES), block
    # uvicorn must leave the socket peer alone: the service decides which header to believe.
    assert variables["FORWARDED_ALLOW_IPS"] == "127.0.0.1"
    return ClientAddressResolver(variables["TRUSTED_PROXIES"], variables["CLIENT_IP_HEADER"])


def test_api_gateway_writes_the_callers_address_for_the_auth_service() -> None:
    source = (ROOT / "infra" / "cloudformation.yaml").read_text()
    template: dict[str, Any] = yaml.load(source, Loader=CloudFormationLoader)  # noqa: S506
    mapping = template["Resources"]["AuthIntegration"]["Properties"]["RequestParameters"]
    header = eb_provided("auth").literal["CLIENT_IP_HEADER"]
    assert mapping[f"overwrite:header.{header}"] == "$context.identity.sourceIp"


def test_elastic_beanstalk_believes_api_gateways_header_from_the_load_balancer_only() -> None:
    resolver = _resolver_of(eb_provided("auth").literal)
    # The instance's nginx sets X-Real-IP to the load balancer and appends to a chain the
    # client started; only API Gateway's header names the caller.
    headers = {
        "x-client-ip": "198.51.100.7",
        "x-real-ip": "10.0.1.2",
        "x-forwarded-for": "6.6.6.6, 10.0.1.2",
    }
    assert resolver.resolve("172.17.0.1", headers) == "198.51.100.7"
    assert resolver.resolve("203.0.113.9", headers) == "203.0.113.9"
    # A private address outside the VPC and the Docker bridge is no proxy of ours.
    assert resolver.resolve("192.168.7.7", headers) == "192.168.7.7"


def test_kubernetes_believes_the_ingress_controllers_x_real_ip_only_from_the_pod_network() -> None:
    resolver = _resolver_of(_auth_config_map())
    headers = {"x-real-ip": "198.51.100.7", "x-forwarded-for": "198.51.100.7"}
    assert resolver.resolve("10.244.1.17", headers) == "198.51.100.7"
    assert resolver.resolve("203.0.113.9", headers) == "203.0.113.9"
    # A node or another private network is not the pod network.
    assert resolver.resolve("172.20.0.5", headers) == "172.20.0.5"


# --- AWS network and identity (infra/cloudformation.yaml) ----------------------------------------


def load_template() -> dict[str, Any]:
    """infra/cloudformation.yaml with its short-form intrinsics as their long forms."""
    source = (ROOT / "infra" / "cloudformation.yaml").read_text()
    template: dict[str, Any] = yaml.load(source, Loader=CloudFormationLoader)  # noqa: S506
    return template


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of every resource of this type."""
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def logical(service: str) -> str:
    """The prefix of a service's resources in the template (`Auth`, `Payment`, ...)."""
    return service.capitalize()


def test_cloudformation_api_reaches_the_services_only_through_the_vpc_link_over_https() -> None:
    template = load_template()
    integrations = resources_of(template, "AWS::ApiGatewayV2::Integration")
    listeners = resources_of(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert set(integrations) == {f"{logical(service)}Integration" for service in SERVICES}
    for service in SERVICES:
        integration = integrations[f"{logical(service)}Integration"]
        assert integration["ConnectionType"] == "VPC_LINK"
        assert integration["ConnectionId"] == {"Ref": "VpcLink"}
        # The service's own HTTPS listener, its certificate checked against the service's name.
        assert integration["IntegrationUri"] == {"Ref": f"{logical(service)}Listener"}
        assert integration["IntegrationUri"]["Ref"] in listeners
        assert integration["TlsConfig"]["ServerNameToVerify"] == {
            "Fn::Sub": f"{service}.${{InternalDomainName}}"
        }
    # Every route goes to one of them: nothing reaches a public URL.
    for route in resources_of(template, "AWS::ApiGatewayV2::Route").values():
        (target,) = route["Target"].values()
        assert target.removeprefix("integrations/${").removesuffix("}") in integrations
    (link,) = resources_of(template, "AWS::ApiGatewayV2::VpcLink").values()
    assert link["SecurityGroupIds"] == [{"Ref": "VpcLinkSecurityGroup"}]
    assert link["SubnetIds"] == {"Ref": "ServiceSubnetIds"}


def test_cloudformation_load_balancers_are_internal_and_listen_on_https_only() -> None:
    template = load_template()
    balancers = resources_of(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    listeners = resources_of(template, "AWS::ElasticLoadBalancingV2::Listener")
    groups = resources_of(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    records = resources_of(template, "AWS::Route53::RecordSet")
    assert set(balancers) == {f"{logical(service)}LoadBalancer" for service in SERVICES}
    for balancer in balancers.values():
        assert balancer["Scheme"] == "internal"
        assert balancer["Subnets"] == {"Ref": "ServiceSubnetIds"}
        assert balancer["SecurityGroups"] == [{"Ref": "LoadBalancerSecurityGroup"}]
    assert len(listeners) == len(balancers)
    for listener in listeners.values():
        assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
        assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
        assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-")
    for service in SERVICES:
        name = logical(service)
        listener = listeners[f"{name}Listener"]
        assert listener["LoadBalancerArn"] == {"Ref": f"{name}LoadBalancer"}
        assert listener["DefaultActions"] == [
            {"Type": "forward", "TargetGroupArn": {"Ref": f"{name}TargetGroup"}}
        ]
        # Elastic Beanstalk's nginx on 80, or the pod on the service's own port.
        group = groups[f"{name}TargetGroup"]
        assert group["Port"] == {"Fn::If": ["OnEks", PORTS[service], 80]}
        assert group["HealthCheckPath"] == "/health/ready"
        # The name the other services and API Gateway's TLS check use.
        record = records[f"{name}DnsRecord"]
        assert record["Name"] == {"Fn::Sub": f"{service}.${{InternalDomainName}}"}
        assert record["AliasTarget"]["DNSName"] == {
            "Fn::GetAtt": [f"{name}LoadBalancer", "DNSName"]
        }
    (zone,) = resources_of(template, "AWS::Route53::HostedZone").values()
    assert zone["VPCs"][0]["VPCId"] == {"Ref": "VpcId"}, "the zone is private to the VPC"


def security_group_rules(template: dict[str, Any], direction: str) -> dict[str, set[str]]:
    """Group -> its rules in one direction (inline and separate), each `tcp 443-443 <peer>`."""
    inline = "SecurityGroupIngress" if direction == "ingress" else "SecurityGroupEgress"
    standalone = f"AWS::EC2::SecurityGroup{direction.capitalize()}"
    peer_keys = (
        ("SourceSecurityGroupId", "CidrIp", "CidrIpv6", "SourcePrefixListId")
        if direction == "ingress"
        else ("DestinationSecurityGroupId", "CidrIp", "CidrIpv6", "DestinationPrefixListId")
    )

    def render(rule: dict[str, Any]) -> str:
        (peer,) = [rule[key] for key in peer_keys if key in rule]
        peer_name = peer["Ref"] if isinstance(peer, dict) else peer
        ports = f"{json.dumps(rule.get('FromPort'))}-{json.dumps(rule.get('ToPort'))}"
        return f"{rule['IpProtocol']} {ports} {peer_name}"

    rules: dict[str, set[str]] = {
        name: {render(rule) for rule in group.get(inline, [])}
        for name, group in resources_of(template, "AWS::EC2::SecurityGroup").items()
    }
    for rule in resources_of(template, standalone).values():
        rules[rule["GroupId"]["Ref"]].add(render(rule))
    return rules


def test_cloudformation_security_groups_admit_only_what_must_talk() -> None:
    template = load_template()
    # 80 for Elastic Beanstalk's nginx; on EKS the pods' own ports, auth's to notifications'.
    service_ports = (
        f"{json.dumps({'Fn::If': ['OnEks', min(PORTS.values()), 80]})}-"
        f"{json.dumps({'Fn::If': ['OnEks', max(PORTS.values()), 80]})}"
    )
    assert sorted(PORTS.values()) == list(range(min(PORTS.values()), max(PORTS.values()) + 1))
    assert security_group_rules(template, "ingress") == {
        "VpcLinkSecurityGroup": set(),
        "LoadBalancerSecurityGroup": {
            "tcp 443-443 VpcLinkSecurityGroup",
            "tcp 443-443 ServicesSecurityGroup",
        },
        "ServicesSecurityGroup": {f"tcp {service_ports} LoadBalancerSecurityGroup"},
        "DatabaseSecurityGroup": {"tcp 5432-5432 ServicesSecurityGroup"},
    }
    # Every group states its egress inline, so none keeps the default "all traffic anywhere".
    groups = resources_of(template, "AWS::EC2::SecurityGroup")
    assert all(group.get("SecurityGroupEgress") for group in groups.values())
    assert security_group_rules(template, "egress") == {
        "VpcLinkSecurityGroup": {"tcp 443-443 LoadBalancerSecurityGroup"},
        "LoadBalancerSecurityGroup": {f"tcp {service_ports} ServicesSecurityGroup"},
        # HTTPS anywhere: the AWS APIs, Cognito's keys, Stripe and webhook receivers have no
        # group; the other services' load balancers are among it.
        "ServicesSecurityGroup": {"tcp 443-443 0.0.0.0/0", "tcp 5432-5432 DatabaseSecurityGroup"},
        "DatabaseSecurityGroup": {"-1 null-null 127.0.0.1/32"},
    }


def pascal(snake: str) -> str:
    """boto3's method name as the IAM action's name (`admin_get_user` -> `AdminGetUser`)."""
    return "".join(part.capitalize() for part in snake.split("_"))


def code_of(folder: str) -> str:
    """Every non-test Python file under a folder of the repository, concatenated."""
    return "\n".join(
        path.read_text()
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "tests" not in path.relative_to(ROOT).parts
    )


# Public Cognito operations: IAM does not authorise them, so no role lists them.
UNAUTHENTICATED_COGNITO = {"SignUp", "ConfirmSignUp", "ResendConfirmationCode"}
# The find-or-create path of SNS platform applications serves the local stand-in only; in AWS
# the SNS_*_APPLICATION_ARN settings name them (notifications_microservice/devices/platforms.py).
STAND_IN_ONLY_SNS = {"ListPlatformApplications", "CreatePlatformApplication"}
# API operations IAM authorises under another action's name.
AUTHORISED_AS = {"sns:PublishBatch": "sns:Publish"}
# Actions that have no resource to name: the only statements that may say "Resource": "*".
UNSCOPABLE_ACTIONS = {
    "ecr:GetAuthorizationToken": "the registry login token is account-wide",
    "ses:GetSendQuota": "the sending quota is the account's, in its region",
}
# What every Elastic Beanstalk instance does besides its service: the platform's agents, the
# image pull and the migration hook (deploy/elastic-beanstalk/.platform/hooks/predeploy/).
INSTANCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ssm:GetParameters",
    "secretsmanager:GetSecretValue",
    "s3:GetObject",
    "s3:PutObject",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
    "elasticbeanstalk:PutInstanceStatistics",
}
IMAGE_PULL = {"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


def called_actions(service: str) -> set[str]:
    """The IAM actions of the AWS calls the service's code makes, read from the code."""
    actions: set[str] = set()
    signs_in = "admin_initiate_auth" in code_of("common/micropay_common")
    # Only producers sign their service account in: they call peers; the others never do.
    if signs_in and any(
        event.producer == service
        for event in importlib.import_module("micropay_common.events").EVENT_MODELS.values()
    ):
        actions.add("cognito-idp:AdminInitiateAuth")
    code = code_of(f"{service}_microservice")
    for method in re.findall(r"\"(admin_[a-z_]+)\"", code):
        actions.add(f"cognito-idp:{pascal(method)}")
    for client, method in re.findall(r"\b(ses|sns)\.(?:get_paginator\(\")?([a-z_]+)\b", code):
        if pascal(method) not in STAND_IN_ONLY_SNS:
            action = f"{client}:{pascal(method)}"
            actions.add(AUTHORISED_AS.get(action, action))
    return actions


def policy_statements(template: dict[str, Any], role: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements a role is granted: its inline policies and the template's managed ones."""
    managed = resources_of(template, "AWS::IAM::ManagedPolicy")
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        assert set(arn) == {"Ref"}, f"a managed policy from outside the template: {arn}"
        documents.append(managed[arn["Ref"]]["PolicyDocument"])
    statements = [statement for document in documents for statement in document["Statement"]]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    return statements


def listed(value: Any) -> list[Any]:
    """A policy field that may be one value or a list, as a list."""
    return value if isinstance(value, list) else [value]


def test_cloudformation_gives_each_service_one_role_with_only_the_actions_its_code_calls() -> None:
    template = load_template()
    roles = resources_of(template, "AWS::IAM::Role")
    profiles = resources_of(template, "AWS::IAM::InstanceProfile")
    assert set(roles) == {f"{logical(service)}Role" for service in SERVICES}
    for service in SERVICES:
        name = logical(service)
        role = roles[f"{name}Role"]
        assert role["RoleName"] == f"micropay-{service}"
        assert profiles[f"{name}InstanceProfile"]["Roles"] == [{"Ref": f"{name}Role"}]
        statements = policy_statements(template, role)
        granted = {action for statement in statements for action in listed(statement["Action"])}
        assert not [action for action in granted if "*" in action], "no action wildcards"
        called = called_actions(service)
        assert called - granted == set(), f"{service} lacks {sorted(called - granted)}"
        # Nothing beyond its calls, the image pull and what every instance needs.
        extra = granted - called - IMAGE_PULL - INSTANCE_ACTIONS
        assert extra == set(), f"{service} is granted {sorted(extra)} it never calls"
        assert not {f"cognito-idp:{op}" for op in UNAUTHENTICATED_COGNITO} & granted
        # Each pulls its own image and reads its own parameters only.
        for statement in statements:
            if set(listed(statement["Action"])) == IMAGE_PULL:
                assert statement["Resource"] == {"Fn::GetAtt": [f"{name}Repository", "Arn"]}
        own_parameters = [
            resource["Fn::Sub"]
            for statement in statements
            for resource in listed(statement["Resource"])
            if isinstance(resource, dict) and ":parameter/micropay/" in str(resource)
        ]
        assert {parameter.rsplit(":parameter", 1)[1] for parameter in own_parameters} == {
            f"/micropay/{service}/*",
            "/micropay/shared/*",
            "/micropay/migrations/*",
        }
    # The service that talks to users' URLs cannot touch the user pool.
    notifications = policy_statements(template, roles["NotificationsRole"])
    assert not [
        action
        for statement in notifications
        for action in listed(statement["Action"])
        if action.startswith("cognito-idp:")
    ]
    assert called_actions("notifications") >= {"ses:SendEmail", "sns:Publish"}


def test_cloudformation_grants_no_wildcard_resource_where_a_resource_can_be_named() -> None:
    template = load_template()
    documents = [
        policy["PolicyDocument"]
        for role in resources_of(template, "AWS::IAM::Role").values()
        for policy in role.get("Policies", [])
    ] + [
        policy["PolicyDocument"]
        for policy in resources_of(template, "AWS::IAM::ManagedPolicy").values()
    ]
    wildcard: set[str] = set()
    for document in documents:
        for statement in document["Statement"]:
            for resource in listed(statement["Resource"]):
                if resource == "*":
                    wildcard.update(listed(statement["Action"]))
                else:
                    # Named resources of this account and region, never a whole service.
                    assert "*:*" not in json.dumps(resource), resource
    assert wildcard == set(UNSCOPABLE_ACTIONS)
    # The pool, the topic, the sender's identity and the master secret are named.
    roles = resources_of(template, "AWS::IAM::Role")
    resources = {
        action: listed(statement["Resource"])
        for role in roles.values()
        for statement in policy_statements(template, role)
        for action in listed(statement["Action"])
    }
    assert resources["cognito-idp:AdminInitiateAuth"] == [{"Fn::GetAtt": ["UserPool", "Arn"]}]
    assert {"Ref": "NotificationsTopic"} in resources["sns:Publish"]
    assert "identity/${SesSender}" in json.dumps(resources["ses:SendEmail"])
    assert resources["secretsmanager:GetSecretValue"] == [
        {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
    ]


def test_cloudformation_webhook_secrets_key_is_used_by_the_notifications_role_only() -> None:
    template = load_template()
    (key,) = resources_of(template, "AWS::KMS::Key").values()
    (alias,) = resources_of(template, "AWS::KMS::Alias").values()
    assert alias == {
        "AliasName": "alias/micropay-webhook-secrets",
        "TargetKeyId": {"Ref": "WebhookSecretsKey"},
    }
    assert key["EnableKeyRotation"] is True
    using = (
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:Encrypt",
        "kms:ReEncryptFrom",
        "kms:CreateGrant",
    )
    users: dict[str, set[str]] = {}
    for statement in key["KeyPolicy"]["Statement"]:
        assert statement["Effect"] == "Allow"
        principal = json.dumps(statement["Principal"]["AWS"])
        for action in listed(statement["Action"]):
            users.setdefault(principal, set()).update(
                use for use in using if fnmatch.fnmatchcase(use, action)
            )
    # The account administers the key; only the notifications role makes and opens data keys.
    assert {principal: uses for principal, uses in users.items() if uses} == {
        json.dumps({"Fn::GetAtt": ["NotificationsRole", "Arn"]}): {
            "kms:Decrypt",
            "kms:GenerateDataKey",
        }
    }
    assert any(":root" in principal for principal in users)
    outputs = template["Outputs"]
    assert outputs["WebhookSecretsKeyArn"]["Value"] == {"Fn::GetAtt": ["WebhookSecretsKey", "Arn"]}
    assert "WEBHOOK_SECRETS_KMS_KEY_ID" in outputs["WebhookSecretsKeyArn"]["Description"]


def test_elastic_beanstalk_environments_join_the_internal_load_balancers_with_their_own_role() -> (
    None
):
    domain = "micropay.internal.example.com"
    for service in SERVICES:
        path = ROOT / f"{service}_microservice" / ".ebextensions" / "micropay.config"
        config = yaml.safe_load(path.read_text())
        options = config["option_settings"]
        # The other services over HTTPS, at the internal load balancers' names.
        urls = {
            name: value
            for name, value in options["aws:elasticbeanstalk:application:environment"].items()
            if name.endswith("_URL") and not name.startswith("COGNITO_")
        }
        assert urls == {
            f"{other.upper()}_URL": f"https://{other}.{domain}" for other in SERVICES
        }, service
        assert options["aws:autoscaling:launchconfiguration"]["IamInstanceProfile"] == (
            f"micropay-{service}"
        )
        assert options["aws:autoscaling:launchconfiguration"]["DisableDefaultEC2SecurityGroup"]
        assert options["aws:ec2:vpc"]["AssociatePublicIpAddress"] is False
        balancer = options["aws:elbv2:loadbalancer"]
        assert balancer["SecurityGroups"] == balancer["ManagedSecurityGroup"]
        target_group = options["aws:elasticbeanstalk:customoption"]["MicropayTargetGroupArn"]
        assert f":targetgroup/micropay-{service}/" in target_group
        groups = config["Resources"]["AWSEBAutoScalingGroup"]["Properties"]["TargetGroupARNs"]
        assert {"Ref": "AWSEBV2LoadBalancerTargetGroup"} in groups
        assert {
            "Fn::GetOptionSetting": {
                "Namespace": "aws:elasticbeanstalk:customoption",
                "OptionName": "MicropayTargetGroupArn",
            }
        } in groups
    # The template's names are the ones the bundles use.
    template = load_template()
    profiles = resources_of(template, "AWS::IAM::InstanceProfile")
    assert {profile["InstanceProfileName"] for profile in profiles.values()} == {
        f"micropay-{service}" for service in SERVICES
    }
    groups = resources_of(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {group["Name"] for group in groups.values()} == {f"micropay-{s}" for s in SERVICES}


def test_every_deployment_gives_each_service_the_otlp_endpoint_setting() -> None:
    """Tracing is switched on the same way everywhere: one variable, empty (off) by default."""
    compose = load_compose()
    documents = load_manifests()
    name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    for service in SERVICES:
        assert compose["services"][service]["environment"][name] == "${" + name + ":-}"
        assert kubernetes_provided(documents, service).literal[name] == ""
        assert eb_provided(service).literal[name] == ""
        example = (ROOT / f"{service}_microservice" / ".env.example").read_text()
        assert f"\n# {name}=" in example, f"{service}_microservice/.env.example"
    assert f"\n# {name}=" in (ROOT / ".env.example").read_text()
