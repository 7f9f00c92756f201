"""Drift checks of the deployment files under deploy/ against the code and against each other.

The node ignores unknown ``DSNODE_*`` variables (``extra="ignore"``), so a renamed setting would silently fall
back to its default in production; these tests fail instead. They also check that the manifests agree with
each other (ports, probes, volumes, secrets) and that the image and the service units start the node the
documented way. Static except for ``sh -n`` and one loopback HTTP server: no Docker, no cluster, no network.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from node.cli import app
from node.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
UNIT = DEPLOY / "systemd" / "dsnode.service"
UNIT_ENV = DEPLOY / "systemd" / "dsnode.env.example"

ENV_NAME = re.compile(r"\bDSNODE_[A-Z0-9_]*[A-Z0-9]\b")
HTTP_PORT = Settings.model_fields["http_port"].default
FLIGHT_PORT = Settings.model_fields["flight_port"].default


# ---- helpers -------------------------------------------------------------------------------------------------
def _deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "node_modules" not in p.parts)


def _known_env_names() -> set[str]:
    """Every variable the node reads: the settings, plus the CLI options bound to one (``DSNODE_TOKEN``)."""
    names = {f"DSNODE_{field.upper()}" for field in Settings.model_fields}
    commands = [typer.main.get_command(app)]
    while commands:
        command = commands.pop()
        names.update(p.envvar for p in command.params if isinstance(p.envvar, str))
        commands.extend(getattr(command, "commands", {}).values())
    return names


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a systemd EnvironmentFile (comments and blank lines skipped)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def _copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not ``--from`` another stage)."""
    out: list[tuple[list[str], str]] = []
    for op, args in _dockerfile():
        words = args.split()
        if op == "COPY" and not any(w.startswith("--from") for w in words):
            paths = [w for w in words if not w.startswith("--")]
            out.append((paths[:-1], paths[-1]))
    return out


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _k8s() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _statefulset() -> dict[str, Any]:
    (sts,) = _k8s()["StatefulSet"]
    return sts


def _main_container(sts: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = sts["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "dsnode"]
    return container


def _k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal DSNODE_* environment: its ConfigMaps (envFrom) overlaid with plain ``value``s."""
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in _k8s()["ConfigMap"]}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _unit() -> dict[str, list[str]]:
    """Directive → values of the unit's [Service] section."""
    section, out = "", dict[str, list[str]]()
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def _mount_of(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume mount holding ``path`` (the deepest one)."""
    holding = [m for m in container.get("volumeMounts", [])
               if PurePosixPath(path).is_relative_to(m["mountPath"])]
    return max(holding, key=lambda m: len(m["mountPath"]), default=None)


# ---- every DSNODE_* name and value is a real setting -----------------------------------------------------------
def test_every_dsnode_variable_named_under_deploy_is_read_by_the_node() -> None:
    known = _known_env_names()
    found = {(path.relative_to(ROOT).as_posix(), name) for path in _deploy_files()
             for name in ENV_NAME.findall(path.read_text(encoding="utf-8", errors="replace"))}
    assert {"DSNODE_HOME", "DSNODE_TOKEN_PEPPER", "DSNODE_NODE_KEY_FILE"} <= {name for _, name in found}
    unknown = sorted(f"{where}: {name}" for where, name in found if name not in known)
    assert not unknown, "not a setting (docs/CONFIGURATION.md), the node would ignore it:\n" + "\n".join(unknown)


def _literal_settings() -> Iterator[Any]:
    """Each place that sets DSNODE_* values, as a pytest param of its {setting: value} (interpolations left out)."""
    sources = {"Dockerfile ENV": dict(w.split("=", 1) for op, a in _dockerfile() if op == "ENV" for w in a.split()),
               "k8s dsnode container": _k8s_env(_main_container(_statefulset())),
               "systemd env example": _env_file(UNIT_ENV),
               "systemd unit": dict(v.split("=", 1) for v in _unit().get("Environment", []))}
    sources |= {f"compose {name}": _compose_env(s) for name, s in _compose()["services"].items()}
    for where, env in sources.items():
        values = {k.removeprefix("DSNODE_").lower(): v for k, v in env.items()
                  if k.startswith("DSNODE_") and "${" not in v}
        if values:
            yield pytest.param(values, id=where)


@pytest.mark.parametrize("values", list(_literal_settings()))
def test_literal_values_are_valid_settings(values: dict[str, str], tmp_path: Path) -> None:
    Settings.model_validate({"home": str(tmp_path)} | values)  # ValidationError names the field and value


# ---- Docker image --------------------------------------------------------------------------------------------
def test_dockerfile_copies_what_the_package_is_built_from_and_nothing_missing() -> None:
    sources = [src.rstrip("/") for srcs, _ in _copies() for src in srcs]
    missing = [src for src in sources if not (ROOT / src).exists()]
    assert not missing, f"COPY sources absent from the repository: {missing}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = packages | {"pyproject.toml", project["project"]["readme"]}
    assert needed <= set(sources), f"the image would be built without {sorted(needed - set(sources))}"


def test_dockerfile_leaves_out_the_ml_extra() -> None:
    runs = " ".join(args for op, args in _dockerfile() if op == "RUN").lower()
    assert "torch" not in runs and "opacus" not in runs
    assert not re.search(r"\[[^\]]*\bml\b[^\]]*\]", runs), "installs the ml extra"
    assert "pip install ." in runs


def test_dockerfile_runs_the_entrypoint_as_a_non_root_user_with_the_home_as_a_volume() -> None:
    instructions = _dockerfile()
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    args = {op: a for op, a in final}
    assert args["FROM"].startswith("python:3.11-slim")
    assert args["USER"].split(":")[0] not in {"root", "0"}
    env = dict(w.split("=", 1) for op, a in final if op == "ENV" for w in a.split())
    assert env["DSNODE_HOME"] in args["VOLUME"]
    assert {env["DSNODE_HTTP_HOST"], env["DSNODE_FLIGHT_HOST"]} == {"0.0.0.0"}
    assert {int(p) for p in args["EXPOSE"].split()} == {HTTP_PORT, FLIGHT_PORT}
    installed = {PurePosixPath(dest) / PurePosixPath(src).name for srcs, dest in _copies() for src in srcs
                 if src.startswith("deploy/docker/")}
    for op in ("ENTRYPOINT", "HEALTHCHECK"):
        scripts = {PurePosixPath(w) for w in re.findall(r"/[\w/.-]+\.(?:sh|py)", args[op])}
        assert scripts and scripts <= installed, f"{op} runs a script the image does not copy"


def test_entrypoint_initializes_then_execs_serve() -> None:
    path = DOCKER / "entrypoint.sh"
    subprocess.run(["sh", "-n", str(path)], check=True)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert "set -eu" in lines or "set -e" in lines, "a failed init must not go on to serve"
    init = lines.index("dsnode init --if-needed")
    serve = lines.index("exec dsnode serve")
    assert init < serve and serve == len(lines) - 1


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_healthcheck_script_follows_the_configured_port(status: int, exit_code: int, tmp_path: Path) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        env = {"DSNODE_HOME": str(tmp_path), "DSNODE_HTTP_PORT": str(server.server_address[1]),
               "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env=env, cwd=ROOT, timeout=60)
        server.shutdown()
    assert done.returncode == exit_code


# ---- Compose -------------------------------------------------------------------------------------------------
def test_compose_references_resolve() -> None:
    compose = _compose()
    services, declared = compose["services"], set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dep, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if "${" in source:
                continue  # supplied at run time
            if source.startswith((".", "/", "~")):
                assert (DEPLOY / source).exists(), f"{name} bind-mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), f"{name}: no Dockerfile"


def test_compose_nodes_advertise_the_ports_they_publish_and_keep_secrets_out() -> None:
    services = _compose()["services"]
    nodes = {name: s for name, s in services.items() if "DSNODE_PUBLIC_URL" in _compose_env(s)}
    assert len(nodes) >= 2, "the compose file shows a two-node space"
    for name, service in nodes.items():
        env = _compose_env(service)
        published = {}
        for mapping in service["ports"]:
            *_, host, container = str(mapping).split(":")
            published[int(container)] = int(host)
        http = int(env.get("DSNODE_HTTP_PORT", HTTP_PORT))
        flight = int(env.get("DSNODE_FLIGHT_PORT", FLIGHT_PORT))
        assert urlsplit(env["DSNODE_PUBLIC_URL"]).port == published[http], name
        assert urlsplit(env["DSNODE_FLIGHT_ADVERTISED_URI"]).port == published[flight], name
        for secret in ("DSNODE_TOKEN_PEPPER", "DSNODE_CHAIN_KEY"):
            assert env[secret].startswith("${"), f"{name}: {secret} is written in the file, not passed in"
        for url in ("DSNODE_CHAIN_RPC_URL", "DSNODE_DATABASE_URL"):
            if url in env:
                assert urlsplit(env[url]).hostname in services, f"{name}: {url} names no service"
        assert any(v.startswith(f"{name}_home:/var/lib/dsnode") for v in service["volumes"]), name
        assert env.get("DSNODE_ENVIRONMENT") == "prod"


# ---- Kubernetes ----------------------------------------------------------------------------------------------
def test_k8s_services_and_probes_reach_the_container_ports() -> None:
    k8s = _k8s()
    sts = _statefulset()
    pod = sts["spec"]["template"]
    container = _main_container(sts)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _k8s_env(container)
    assert ports["http"] == int(env.get("DSNODE_HTTP_PORT", HTTP_PORT))
    assert ports["flight"] == int(env.get("DSNODE_FLIGHT_PORT", FLIGHT_PORT))
    services = {s["metadata"]["name"]: s for s in k8s["Service"]}
    assert sts["spec"]["serviceName"] in services
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    targets = set()
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"{service['metadata']['name']} → {target}"
            targets.add(ports.get(target, target))
    assert targets == set(ports.values()), "each plane has a Service"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in ("http", ports["http"]), probe


def test_k8s_references_exist_and_the_home_is_on_the_claim() -> None:
    k8s = _k8s()
    sts = _statefulset()
    spec = sts["spec"]["template"]["spec"]
    container = _main_container(sts)
    assert sts["spec"]["replicas"] == 1
    assert spec["securityContext"]["runAsNonRoot"] is True and "fsGroup" in spec["securityContext"]
    secrets = {s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})} for s in k8s["Secret"]}
    for ref in (e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e):
        assert ref.get("optional") or ref["key"] in secrets[ref["name"]], ref
    assert {m["metadata"]["name"] for m in k8s["ConfigMap"]} >= {
        s["configMapRef"]["name"] for s in container["envFrom"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    volumes = {v["name"] for v in spec["volumes"]}
    for c in spec["containers"] + spec.get("initContainers", []):
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes | claims, f"{c['name']} mounts undeclared {mount['name']}"
    data = _mount_of(container, "/var/lib/dsnode")
    assert data is not None and data["mountPath"] == "/var/lib/dsnode" and data["name"] in claims
    home = _mount_of(container, _k8s_env(container)["DSNODE_HOME"])
    assert home is not None and home["name"] in claims, "the home must be on the persistent volume"


def test_k8s_node_key_secret_lands_at_node_key_file() -> None:
    k8s = _k8s()
    sts = _statefulset()
    spec = sts["spec"]["template"]["spec"]
    container = _main_container(sts)
    key_file = PurePosixPath(_k8s_env(container)["DSNODE_NODE_KEY_FILE"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    secrets = {s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})} for s in k8s["Secret"]}

    def secret_item(volume: dict[str, Any], file: str) -> None:
        """``file`` in a secret volume comes from a key that the secret holds; the volume is 0400."""
        secret = volume["secret"]
        assert secret["defaultMode"] == 0o400
        items = {i["path"]: i["key"] for i in secret.get("items", [])} or {k: k for k in secrets[secret["secretName"]]}
        assert items[file] in secrets[secret["secretName"]], f"no key for {file} in {secret['secretName']}"

    mount = _mount_of(container, str(key_file))
    assert mount is not None, "DSNODE_NODE_KEY_FILE is on no volume"
    volume = volumes[mount["name"]]
    if "secret" in volume:
        secret_item(volume, str(key_file.relative_to(mount["mountPath"])))
        return
    # Copied into a private volume by an init container (a secret volume is group-readable under fsGroup).
    copies = [c for c in spec.get("initContainers", []) if c["command"][-1] == str(key_file)]
    assert copies, "nothing writes DSNODE_NODE_KEY_FILE"
    (init,) = copies
    assert any(m["name"] == mount["name"] for m in init["volumeMounts"])
    assert "0600" in init["command"]
    source = init["command"][-2]
    source_mount = _mount_of(init, source)
    assert source_mount is not None
    secret_item(volumes[source_mount["name"]], str(PurePosixPath(source).relative_to(source_mount["mountPath"])))


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
    assert listed == manifests


# ---- systemd -------------------------------------------------------------------------------------------------
def test_systemd_unit_serves_with_the_env_file_and_restarts() -> None:
    unit = _unit()
    (start,) = unit["ExecStart"]
    assert shlex.split(start)[0].endswith("/dsnode") and shlex.split(start)[1:] == ["serve"]
    assert any(shlex.split(pre)[1:] == ["init", "--if-needed"] for pre in unit["ExecStartPre"])
    assert unit["EnvironmentFile"] == ["/etc/dsnode/dsnode.env"]
    assert unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    assert unit["User"][0] not in {"root", "0"} and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    home = dict(v.split("=", 1) for v in unit["Environment"])["DSNODE_HOME"]
    writable = unit["ReadWritePaths"][0].split() + [f"/var/lib/{d}" for d in unit.get("StateDirectory", [])]
    assert any(PurePosixPath(home).is_relative_to(w) for w in writable), "the home is read-only under the unit"
    assert "DSNODE_HOME" not in _env_file(UNIT_ENV), "set in the unit, next to the writable path it must match"
