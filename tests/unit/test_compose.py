"""docker-compose.yml and the Dockerfile agree with the code: every LINEAGE_* variable is a setting that
validates, every URL names a service on the port it listens on, credentials match on both sides, Kafka runs
in KRaft mode, and every `lineage` subcommand the file runs exists. No Docker needed: the files are parsed."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import ValidationError

from lineage_api import cli
from lineage_api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()

URL_SETTINGS = {"LINEAGE_LOG_URL": "kafka://", "LINEAGE_INDEX_URL": "postgresql+psycopg://",
                "LINEAGE_ARCHIVE_URL": "s3://"}
EXTRA_FOR_SCHEME = {"kafka": "kafka", "postgresql+psycopg": "postgres", "s3": "s3"}
HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"


def environment(service: str) -> dict[str, Any]:
    """A service's environment as a mapping, from either compose form (mapping or list of NAME=value)."""
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def argv(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value or []]


def lineage_services() -> list[str]:
    return [name for name in SERVICES if any(key.startswith("LINEAGE_") for key in environment(name))]


def one_shot_services() -> set[str]:
    """Services others wait on to finish: they run once and exit."""
    return {target for spec in SERVICES.values() for target, dep in _depends_on(spec).items()
            if isinstance(dep, dict) and dep.get("condition") == COMPLETED}


def _depends_on(spec: dict[str, Any]) -> dict[str, Any]:
    deps = spec.get("depends_on") or {}
    return {name: None for name in deps} if isinstance(deps, list) else dict(deps)


def lineage_invocations() -> list[tuple[str, list[str]]]:
    """(service, arguments after `lineage`) for every `lineage` run by a service built from the Dockerfile,
    whose entry point is `lineage`; an `sh -c` entry point is read for the `lineage ...` commands it chains."""
    found = []
    for name, spec in SERVICES.items():
        if "build" not in spec:
            continue
        entrypoint = argv(spec.get("entrypoint"))
        if not entrypoint:
            found.append((name, argv(spec.get("command"))))
        elif entrypoint[:2] == ["sh", "-c"]:
            script = " ".join(argv(spec.get("command")) if isinstance(spec.get("command"), list)
                              else [spec.get("command", "")])
            for part in re.split(r"&&|\|\||;", script):
                tokens = shlex.split(part)
                if tokens and tokens[0] == "lineage":
                    found.append((name, tokens[1:]))
    return found


def hosts_and_ports(url: str) -> list[tuple[str, int | None]]:
    """kafka://a:9092,b:9092 names several brokers; other URLs one host."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    pairs = []
    for part in netloc.split(","):
        host, _, port = part.partition(":")
        pairs.append((host, int(port) if port else None))
    return pairs


def kafka_listeners(variable: str) -> dict[str, tuple[str, int]]:
    """KAFKA_LISTENERS-style 'NAME://host:port,...' as {NAME: (host, port)}."""
    result = {}
    for entry in str(environment("kafka")[variable]).split(","):
        name, _, address = entry.partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def listening_port(service: str) -> int:
    """The port a URL must use to reach `service`, read from that service's own configuration."""
    if service == "kafka":
        return kafka_listeners("KAFKA_ADVERTISED_LISTENERS")["PLAINTEXT"][1]
    if service == "postgres":
        return int(environment("postgres").get("PGPORT", 5432))
    if service == "minio":
        command = argv(SERVICES["minio"].get("command"))
        address = command[command.index("--address") + 1] if "--address" in command else ":9000"
        return int(address.rpartition(":")[2])
    raise AssertionError(f"no rule for the listening port of service {service!r}")


def healthcheck_text(service: str) -> str:
    return " ".join(argv(SERVICES[service].get("healthcheck", {}).get("test")))


def service_block_text(service: str) -> str:
    """The raw lines of one service (comments included, which YAML parsing drops)."""
    match = re.search(rf"^  {re.escape(service)}:\n(.*?)(?=^  \S|^\S|\Z)", COMPOSE_TEXT, re.M | re.S)
    assert match, f"service {service!r} not found as a block in docker-compose.yml"
    return match.group(1)


# -- settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_environment_values_are_quoted_strings(service: str) -> None:
    for name, value in environment(service).items():
        assert isinstance(value, str), (f"service {service}: {name} is YAML {type(value).__name__} {value!r}; "
                                        "quote it so it reaches the process exactly as written")


@pytest.mark.parametrize("service", lineage_services())
def test_every_lineage_variable_is_a_setting(service: str) -> None:
    for name in environment(service):
        if name.startswith("LINEAGE_"):
            field = name.removeprefix("LINEAGE_").lower()
            assert field in Settings.model_fields, (f"service {service}: {name} is not a field of Settings "
                                                    "(lineage_api/settings.py); the process would ignore it")


@pytest.mark.parametrize("service", lineage_services())
def test_the_settings_of_each_service_validate(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read as the container reads them: from the environment alone, nothing from this machine leaking in."""
    for name in [n for n in os.environ if n.upper().startswith("LINEAGE_")]:
        monkeypatch.delenv(name)
    values = {name: str(value) for name, value in environment(service).items() if name.startswith("LINEAGE_")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        settings = Settings(_env_file=None)
    except ValidationError as exc:
        pytest.fail(f"service {service}: its LINEAGE_* environment does not validate as Settings:\n{exc}")
    for name, value in values.items():
        field = name.removeprefix("LINEAGE_").lower()
        parsed = getattr(settings, field)
        assert str(parsed).lower() == value.lower(), f"service {service}: {name}={value!r} was read as {parsed!r}"


@pytest.mark.parametrize("service", lineage_services())
def test_backend_urls_use_the_production_schemes(service: str) -> None:
    env = environment(service)
    for name, scheme in URL_SETTINGS.items():
        assert name in env, f"service {service}: {name} is not set, so it would fall back to the embedded SQLite"
        assert str(env[name]).startswith(scheme), f"service {service}: {name}={env[name]!r} should start {scheme}"


@pytest.mark.parametrize("service", ["worker", "api"])
def test_only_init_migrates_the_index(service: str) -> None:
    value = str(environment(service).get("LINEAGE_AUTO_MIGRATE", "true")).lower()
    assert value == "false", f"service {service}: LINEAGE_AUTO_MIGRATE should be false; the init service migrates"


def test_the_signing_key_is_on_a_volume_shared_by_worker_and_api() -> None:
    key_dirs = {service: str(Path(environment(service)["LINEAGE_SIGNING_KEY_FILE"]).parent)
                for service in ("worker", "api")}
    mounted = {}
    for service, folder in key_dirs.items():
        volumes = [str(v).split(":") for v in SERVICES[service].get("volumes", [])]
        named = [source for source, target, *_ in volumes if target == folder and source in COMPOSE["volumes"]]
        assert named, f"service {service}: LINEAGE_SIGNING_KEY_FILE is in {folder}, which is no named volume"
        mounted[service] = named[0]
    assert mounted["worker"] == mounted["api"], f"worker and api keep the signing key on different volumes: {mounted}"


# -- hosts, ports and credentials ------------------------------------------------------------------------


@pytest.mark.parametrize("service", lineage_services())
def test_every_host_in_a_url_is_a_service_on_its_port(service: str) -> None:
    env = environment(service)
    for name in [*URL_SETTINGS, "LINEAGE_S3_ENDPOINT"]:
        if name not in env:
            continue
        if name == "LINEAGE_ARCHIVE_URL":  # s3://bucket/...: the host is a bucket; the endpoint names the server
            continue
        for host, port in hosts_and_ports(str(env[name])):
            assert host in SERVICES, f"service {service}: {name} names host {host!r}, which is not a service"
            assert port == listening_port(host), (f"service {service}: {name} uses port {port}, but {host} "
                                                  f"listens on {listening_port(host)}")


def test_kafka_listener_advertised_port_and_healthcheck_agree() -> None:
    advertised_host, advertised_port = kafka_listeners("KAFKA_ADVERTISED_LISTENERS")["PLAINTEXT"]
    assert advertised_host == "kafka", "kafka: KAFKA_ADVERTISED_LISTENERS must name the service, kafka"
    assert kafka_listeners("KAFKA_LISTENERS")["PLAINTEXT"][1] == advertised_port, (
        "kafka: KAFKA_LISTENERS and KAFKA_ADVERTISED_LISTENERS disagree on the PLAINTEXT port")
    assert f"--bootstrap-server localhost:{advertised_port}" in healthcheck_text("kafka"), (
        f"kafka: the healthcheck does not ask the broker on port {advertised_port}")


@pytest.mark.parametrize("service", lineage_services())
def test_index_url_credentials_match_postgres(service: str) -> None:
    url = urlsplit(str(environment(service)["LINEAGE_INDEX_URL"]))
    pg = environment("postgres")
    assert url.username == pg["POSTGRES_USER"], f"service {service}: LINEAGE_INDEX_URL user is not POSTGRES_USER"
    assert url.password == pg["POSTGRES_PASSWORD"], (
        f"service {service}: LINEAGE_INDEX_URL password is not POSTGRES_PASSWORD")
    assert url.path.lstrip("/") == pg["POSTGRES_DB"], (
        f"service {service}: LINEAGE_INDEX_URL database is not POSTGRES_DB")


def test_postgres_healthcheck_asks_for_the_lineage_database() -> None:
    pg = environment("postgres")
    check = healthcheck_text("postgres")
    assert f"-U {pg['POSTGRES_USER']}" in check and f"-d {pg['POSTGRES_DB']}" in check, (
        f"postgres: the healthcheck {check!r} does not check POSTGRES_USER / POSTGRES_DB")


@pytest.mark.parametrize("service", [*lineage_services(), "minio-init"])
def test_s3_credentials_match_minio(service: str) -> None:
    env, minio = environment(service), environment("minio")
    pairs = ([("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"), ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")]
             if service != "minio-init" else [("MINIO_ROOT_USER", "MINIO_ROOT_USER"),
                                               ("MINIO_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD")])
    for ours, theirs in pairs:
        assert env.get(ours) == minio[theirs], f"service {service}: {ours} does not match minio's {theirs}"


def test_the_bucket_minio_init_creates_is_the_archive_bucket() -> None:
    script = " ".join(argv(SERVICES["minio-init"].get("command")))
    alias = re.search(r"mc alias set (\S+) (\S+)", script)
    assert alias, f"minio-init: no `mc alias set NAME URL ...` in {script!r}"
    [(host, port)] = hosts_and_ports(alias.group(2))
    assert host == "minio" and port == listening_port("minio"), f"minio-init: alias URL {alias.group(2)} is not minio"
    made = re.findall(rf"mc mb(?: --?[\w-]+)* {re.escape(alias.group(1))}/([a-z0-9.-]+)", script)
    for service in lineage_services():
        bucket = urlsplit(str(environment(service)["LINEAGE_ARCHIVE_URL"])).netloc
        assert bucket in made, f"service {service}: LINEAGE_ARCHIVE_URL bucket {bucket!r} is not made by minio-init"


# -- Kafka, health, startup order ------------------------------------------------------------------------


def test_kafka_runs_in_kraft_mode() -> None:
    env = environment("kafka")
    roles = str(env.get("KAFKA_PROCESS_ROLES", "")).split(",")
    assert {"broker", "controller"} <= set(roles), f"kafka: KAFKA_PROCESS_ROLES={roles}; one node is both"
    controller = str(env["KAFKA_CONTROLLER_LISTENER_NAMES"])
    controller_port = kafka_listeners("KAFKA_LISTENERS")[controller][1]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:{controller_port}", (
        "kafka: KAFKA_CONTROLLER_QUORUM_VOTERS must be this node on its controller listener")
    assert env.get("CLUSTER_ID"), "kafka: CLUSTER_ID is needed to format KRaft storage"
    assert "zookeeper" not in COMPOSE_TEXT.lower(), "docker-compose.yml mentions zookeeper; Kafka runs on KRaft"


@pytest.mark.parametrize("service", sorted(set(SERVICES) - one_shot_services()))
def test_every_long_running_service_has_a_healthcheck(service: str) -> None:
    if "healthcheck" in SERVICES[service]:
        return
    comments = [line for line in service_block_text(service).splitlines() if line.strip().startswith("#")]
    assert service == "worker" and any("healthcheck" in line.lower() for line in comments), (
        f"service {service}: no healthcheck (only the worker may go without one, with a comment saying why)")


@pytest.mark.parametrize("service", sorted(name for name, spec in SERVICES.items() if spec.get("depends_on")))
def test_depends_on_waits_for_health_or_completion(service: str) -> None:
    one_shots = one_shot_services()
    for target, dep in _depends_on(SERVICES[service]).items():
        condition = dep.get("condition") if isinstance(dep, dict) else None
        assert target in SERVICES, f"service {service}: depends on {target!r}, which is not a service"
        assert condition in (HEALTHY, COMPLETED), (
            f"service {service}: depends_on {target} needs condition {HEALTHY} or {COMPLETED}, not {condition}")
        if condition == HEALTHY:
            assert "healthcheck" in SERVICES[target], f"service {service}: waits for {target} healthy; it has no check"
    for target in one_shots:
        restart = str(SERVICES[target].get("restart", "no"))
        assert restart in ("no", "on-failure"), f"service {target}: one-shot but restart: {restart}"


def test_the_worker_can_be_scaled() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker, "service worker: container_name forbids --scale worker=N"
    assert not worker.get("ports"), "service worker: a host port mapping forbids --scale worker=N"
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM", "service worker: stops on SIGTERM to commit its batch"


# -- the image and the CLI -------------------------------------------------------------------------------


def resolve_subcommand(service: str, args: list[str]) -> Any:
    """Walk the command tree of `lineage` along the leading words of `args`; fail naming what is missing.

    Groups are recognised by their `commands` mapping rather than by class: typer may bring its own click."""
    command: Any = typer.main.get_command(cli.app)
    path: list[str] = []
    for word in leading_words(args):
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict):
            break  # a positional argument of the command
        assert word in subcommands, (f"service {service}: runs `lineage {' '.join([*path, word])}`, which the CLI "
                                     f"does not have (`{' '.join(['lineage', *path])}` offers {sorted(subcommands)})")
        command, path = subcommands[word], [*path, word]
    assert not isinstance(getattr(command, "commands", None), dict), (
        f"service {service}: `lineage {' '.join(path)}` needs a subcommand")
    return command


@pytest.mark.parametrize(("service", "args"), lineage_invocations(),
                         ids=[f"{s}:{' '.join(a)}" for s, a in lineage_invocations()])
def test_every_lineage_subcommand_run_exists(service: str, args: list[str]) -> None:
    command = resolve_subcommand(service, args)
    options = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for word in args:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in options, f"service {service}: `lineage {' '.join(args)}`: no option {flag}"


def test_the_compose_file_runs_the_production_subcommands() -> None:
    run = {" ".join(leading_words(args)) for _, args in lineage_invocations()}
    for expected in ("db upgrade", "topics create", "worker", "up"):
        assert expected in run, f"no service runs `lineage {expected}` (the file runs {sorted(run)})"


def leading_words(args: list[str]) -> list[str]:
    """The subcommand path: the words before the first option."""
    words = []
    for word in args:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def test_the_api_port_mapping_matches_its_port() -> None:
    command = argv(SERVICES["api"]["command"])
    port = command[command.index("--port") + 1]
    host = command[command.index("--host") + 1]
    assert host == "0.0.0.0", f"service api: --host {host} cannot be reached through a port mapping"
    container_ports = [str(mapping).rsplit(":", 1)[-1] for mapping in SERVICES["api"].get("ports", [])]
    assert port in container_ports, f"service api: listens on --port {port} but maps {SERVICES['api'].get('ports')}"
    assert f"127.0.0.1:{port}/readyz" in healthcheck_text("api"), f"service api: the healthcheck is not on port {port}"


def test_the_dockerfile_installs_the_extras_the_urls_need() -> None:
    installed = re.search(r"pip install[^\n]*\.\[([\w,\s-]+)\]", DOCKERFILE)
    assert installed, "Dockerfile: no `pip install .[extras]`"
    extras = {extra.strip() for extra in installed.group(1).split(",")}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for service in lineage_services():
        for name in URL_SETTINGS:
            scheme = urlsplit(str(environment(service)[name])).scheme
            extra = EXTRA_FOR_SCHEME[scheme]
            assert extra in extras, (
                f"Dockerfile: service {service} uses {name} {scheme}:// but the image lacks [{extra}]")
            assert extra in declared, f"pyproject.toml: no optional dependency group [{extra}]"
    assert re.search(r"^USER (?!root)\S+", DOCKERFILE, re.M), "Dockerfile: the image should run as a non-root user"
    assert 'ENTRYPOINT ["lineage"]' in DOCKERFILE, "Dockerfile: the entry point should be the lineage command"


def test_the_kafka_guide_names_only_real_settings() -> None:
    guide = (ROOT / "docs" / "running-on-kafka.md").read_text()
    named = set(re.findall(r"\bLINEAGE_[A-Z0-9_]*[A-Z0-9]\b", guide))
    unknown = sorted(name for name in named if name.removeprefix("LINEAGE_").lower() not in Settings.model_fields)
    assert not unknown, f"docs/running-on-kafka.md names variables that are not Settings fields: {unknown}"
