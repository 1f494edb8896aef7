"""Deployment skeleton: compose files, printer generator, scripts, units; no engine needed."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MAIN_FILE = ROOT / "docker-compose.yml"
ORCHESTRATOR_FILE = ROOT / "docker-compose.orchestrator.yml"
COMPOSE_FILES = [MAIN_FILE, ORCHESTRATOR_FILE]
ENV_EXAMPLE = ROOT / ".env.example"
GENERATOR = ROOT / "infra" / "compose" / "gen_printers.py"
RUN_SCRIPTS = [
    ROOT / "run-docker-compose.sh",
    ROOT / "run-docker-compose-orchestrator.sh",
    ROOT / "infra" / "compose" / "common.sh",
]
# publish-homing.sh reads its own host file, /etc/pantheon/homing.env (ubuntu_services/README.md).
SCRIPTS = [*RUN_SCRIPTS, ROOT / "ubuntu_services" / "publish-homing.sh"]
NETWORK = "cluster_controller_network"
# The simulated farm (profile sim): one image, simulators/Dockerfile.
SIM_SERVICES = ("bambu-sim", "robot-arm-sim")
SIM_VOLUME = "bambu-sim-data"
SEED_PRINTER_IDS = [11, 12, 13, 14, 15, 21, 22, 23, 24, 25, 31, 32, 33, 34, 35, 41, 42, 43, 44, 45]
# Names that hold a secret wherever they appear (environment keys, variables).
SECRET_NAME = re.compile(r"PASSWORD|_PASS$|SECRET|TOKEN|API_KEY|ACCESS_CODE")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ---------------------------------------------------------------- helpers and fixtures


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_printers", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_printers = _load_generator()


def _parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name] = value
    return values


EXAMPLE = _parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def compose_bin() -> str:
    """Debian's docker-compose v1: validates compose files without an engine."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not installed; it validates the compose files without an engine. "
            "Install it with: apt-get install -y --no-install-recommends docker-compose "
            "(the CI script installs it)."
        )
    return found


@pytest.fixture
def dummy_values() -> dict[str, str]:
    """The example's values with every empty one (the secrets) filled with a dummy."""
    return {name: value or f"dummy-{name.lower()}" for name, value in EXAMPLE.items()}


@pytest.fixture
def env_file(tmp_path: Path, dummy_values: dict[str, str]) -> Path:
    path = tmp_path / "compose.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in dummy_values.items()), encoding="utf-8")
    return path


def _clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without anything that would change what Compose resolves, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env


def _compose(
    compose_bin: str, files: list[Path], env_file: Path, values: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    command = [compose_bin, "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=_clean_environ(values),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _script(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of the repository's shell scripts with exactly `env` added to a clean environment."""
    return subprocess.run(
        [str(ROOT / script), *args],
        env=_clean_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def printers_file(tmp_path: Path) -> Path:
    path = tmp_path / "docker-compose.printers.yml"
    assert gen_printers.main(["--farm", str(ROOT / "farm.yaml"), "--out", str(path)]) == 0
    return path


def _documents(printers_file: Path) -> dict[str, dict[str, Any]]:
    docs = {path.name: yaml.safe_load(path.read_text()) for path in COMPOSE_FILES}
    docs[printers_file.name] = yaml.safe_load(printers_file.read_text())
    return docs


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


# ---------------------------------------------------------------- compose files


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_v1_accepts_the_file(
    compose_bin: str, path: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    result = _compose(compose_bin, [path], env_file, dummy_values, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("missing", ["RABBITMQ_PASSWORD", "SERVICE_TOKEN"])
def test_a_missing_required_secret_stops_compose_naming_it(
    compose_bin: str,
    path: Path,
    missing: str,
    tmp_path: Path,
    dummy_values: dict[str, str],
) -> None:
    values = {k: v for k, v in dummy_values.items() if k != missing}
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    result = _compose(compose_bin, [path], partial, values, "config", "-q")
    assert result.returncode != 0
    assert f"{missing} is required" in result.stderr


def test_compose_spec_schema_accepts_every_file(printers_file: Path) -> None:
    files = [*COMPOSE_FILES, printers_file]
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_top_level_name_which_compose_v1_rejects() -> None:
    for path in COMPOSE_FILES:
        assert "name" not in yaml.safe_load(path.read_text()), path.name


def test_every_service_joins_cluster_controller_network(printers_file: Path) -> None:
    for filename, doc in _documents(printers_file).items():
        assert doc["networks"][NETWORK]["name"] == NETWORK, filename
        for name, service in doc["services"].items():
            assert service["networks"] == [NETWORK], f"{filename}: {name}"
    orchestrator = yaml.safe_load(ORCHESTRATOR_FILE.read_text())
    assert orchestrator["networks"][NETWORK]["external"] is True


def test_infrastructure_services_have_healthchecks_and_named_volumes() -> None:
    doc = yaml.safe_load(MAIN_FILE.read_text())
    for name in ("mongo", "mysql", "rabbitmq", "mosquitto"):
        service = doc["services"][name]
        assert "profiles" not in service, f"{name} must start without a profile"
        assert service["healthcheck"]["test"], name
        named = [v.split(":", 1)[0] for v in service["volumes"] if not v.startswith((".", "/"))]
        assert named, f"{name} keeps its data in a named volume"
        assert all(v in doc["volumes"] for v in named), name
    assert doc["services"]["mongo"]["command"] == ["--replSet", "rs0", "--bind_ip_all"]
    mosquitto_volumes = doc["services"]["mosquitto"]["volumes"]
    assert "./infra/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in (
        mosquitto_volumes
    )
    assert "mosquitto-data:/mosquitto/data" in mosquitto_volumes


def test_application_services_wait_for_healthy_dependencies(printers_file: Path) -> None:
    for filename, doc in _documents(printers_file).items():
        for name, service in doc["services"].items():
            if "build" not in service:
                continue
            health = " ".join(service["healthcheck"]["test"])
            assert "/healthz" in health, f"{filename}: {name}"
            if name in SIM_SERVICES:
                # Simulators are no farm service: profile sim, no metrics to scrape.
                assert service["profiles"] == ["sim"], f"{filename}: {name}"
                continue
            assert "com.datadoghq.ad.checks" in service["labels"], f"{filename}: {name}"
            for dependency in service.get("depends_on", {}).values():
                assert dependency == {"condition": "service_healthy"}, f"{filename}: {name}"
            if filename != ORCHESTRATOR_FILE.name and name not in SIM_SERVICES:
                # No image can be built yet; see the comment in docker-compose.yml.
                assert service["profiles"] == ["apps"], f"{filename}: {name}"


def test_no_literal_secret_in_compose_files(printers_file: Path) -> None:
    for filename, doc in _documents(printers_file).items():
        for name, service in doc["services"].items():
            environment = service.get("environment", {})
            assert isinstance(environment, dict), f"{filename}: {name}: use a mapping"
            for key, value in environment.items():
                if SECRET_NAME.search(key):
                    assert isinstance(value, str), f"{filename}: {name}.{key}"
                    assert VARIABLE.fullmatch(value), (
                        f"{filename}: {name}.{key} must be a ${{VARIABLE}} reference"
                    )
        for text in _strings(doc):
            for variable, operator, default in VARIABLE.findall(text):
                if SECRET_NAME.search(variable) and operator.endswith("-"):
                    assert default == "", f"{filename}: ${{{variable}}} has a default secret"
            # Credentials inside a URL (scheme://user:password@host) are variables too.
            literal = VARIABLE.sub("VAR", text)
            for user, password in re.findall(r"://([^/@:\s]+):([^/@\s]+)@", literal):
                assert (user, password) == ("VAR", "VAR"), f"{filename}: literal credentials"


# ---------------------------------------------------------------- printer services


def test_seed_farm_renders_twenty_printer_services() -> None:
    layout = gen_printers.load_layout(ROOT / "farm.yaml")
    services = gen_printers.render_printer_services(layout)

    assert list(services) == [f"printer-service-{i}" for i in SEED_PRINTER_IDS]
    for printer_id in SEED_PRINTER_IDS:
        service = services[f"printer-service-{printer_id}"]
        assert service["command"] == ["printer-service", str(printer_id), "bambu"]
        assert service["ports"] == [f"500{printer_id}:8080"]
        code = f"PRINTER_{printer_id}_ACCESS_CODE"
        assert service["environment"][code].startswith(f"${{{code}:?")
        assert service["profiles"] == ["apps"]
        assert service["networks"] == [NETWORK]
        assert service["build"] == {"context": ".", "dockerfile": "printer-service/Dockerfile"}


def test_printer_11_is_published_on_50011() -> None:
    assert gen_printers.published_port(11) == 50011
    assert gen_printers.published_port(45) == 50045


@pytest.mark.parametrize(
    ("printers", "reason"),
    [
        (None, "no `printers` list"),
        ([], "no `printers` list"),
        ([{"id": 11, "driver": "bambu"}, {"id": 11, "driver": "bambu"}], "appears twice"),
        ([{"id": 110, "driver": "bambu"}], "two digits"),
        ([{"id": 20, "driver": "bambu"}], "two digits"),
        ([{"id": True, "driver": "bambu"}], "two-digit number"),
        ([{"id": "x1", "driver": "bambu"}], "two-digit number"),
        ([{"id": 11, "driver": "bambu; rm -rf /"}], "plain word"),
    ],
)
def test_bad_layouts_are_refused(printers: Any, reason: str) -> None:
    with pytest.raises(gen_printers.LayoutError, match=re.escape(reason)):
        gen_printers.render_printer_services({"printers": printers})


def test_printer_file_merges_with_the_main_file(
    compose_bin: str, printers_file: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    result = _compose(compose_bin, [MAIN_FILE, printers_file], env_file, dummy_values, "config")
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    printer_services = [s for s in merged["services"] if s.startswith("printer-service-")]
    assert len(printer_services) == len(SEED_PRINTER_IDS)
    service = merged["services"]["printer-service-14"]
    assert service["ports"] == [{"published": 50014, "target": 8080}]
    assert (
        service["environment"]["PRINTER_14_ACCESS_CODE"] == dummy_values["PRINTER_14_ACCESS_CODE"]
    )
    assert merged["networks"][NETWORK]["name"] == NETWORK
    user, password = dummy_values["RABBITMQ_USER"], dummy_values["RABBITMQ_PASSWORD"]
    amqp = f"amqp://{user}:{password}@rabbitmq:5672/%2F"
    assert service["environment"]["AMQP_URL"] == amqp
    assert merged["services"]["pantheon-api"]["environment"]["AMQP_URL"] == amqp
    mysql = merged["services"]["printer-utilization"]["environment"]["MYSQL_URL"]
    assert mysql == (
        f"mysql+pymysql://{dummy_values['MYSQL_USER']}:{dummy_values['MYSQL_PASSWORD']}"
        f"@mysql:3306/{dummy_values['MYSQL_DATABASE']}?charset=utf8mb4"
    )


# ---------------------------------------------------------------- simulated farm (profile sim)


@pytest.fixture
def sim_printers_file(tmp_path: Path) -> Path:
    path = tmp_path / "docker-compose.printers.sim.yml"
    args = ["--farm", str(ROOT / "farm.yaml"), "--out", str(path), "--sim"]
    assert gen_printers.main(args) == 0
    return path


def test_sim_printer_services_use_bambu_sim_through_its_volume() -> None:
    layout = gen_printers.load_layout(ROOT / "farm.yaml")
    services = gen_printers.render_printer_services(layout, sim=True)

    assert list(services) == [f"printer-service-{i}" for i in SEED_PRINTER_IDS]
    for name, service in services.items():
        assert f"{SIM_VOLUME}:/var/lib/bambu-sim:ro" in service["volumes"], name
        assert service["depends_on"]["bambu-sim"] == {"condition": "service_healthy"}, name
        environment = service["environment"]
        assert environment["BAMBU_ENDPOINTS_FILE"] == "/var/lib/bambu-sim/endpoints.json", name
        assert environment["BAMBU_CA_FILE"] == "/var/lib/bambu-sim/ca.pem", name
        assert "BAMBU_TLS_INSECURE" not in environment, name
    # The default output is the real farm: nothing of the simulator in it.
    for service in gen_printers.render_printer_services(layout).values():
        assert "bambu-sim" not in service["depends_on"]
        assert not any(SIM_VOLUME in volume for volume in service["volumes"])
        assert "BAMBU_ENDPOINTS_FILE" not in service["environment"]


def test_sim_printers_file_gives_bambu_sim_every_access_code(sim_printers_file: Path) -> None:
    doc = yaml.safe_load(sim_printers_file.read_text())
    environment = doc["services"]["bambu-sim"]["environment"]
    assert set(environment) == {f"PRINTER_{i}_ACCESS_CODE" for i in SEED_PRINTER_IDS}
    for name, value in environment.items():
        assert value.startswith(f"${{{name}:?"), name
    assert SIM_VOLUME in doc["volumes"]


def test_sim_services_are_on_the_network_with_healthchecks_and_named_volumes() -> None:
    doc = yaml.safe_load(MAIN_FILE.read_text())
    for name in SIM_SERVICES:
        service = doc["services"][name]
        assert service["profiles"] == ["sim"], name
        assert service["networks"] == [NETWORK], name
        assert service["build"] == {"context": ".", "dockerfile": "simulators/Dockerfile"}, name
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
        named = [v.split(":", 1)[0] for v in service["volumes"] if not v.startswith((".", "/"))]
        assert named, f"{name} keeps its data in a named volume"
        assert all(v in doc["volumes"] for v in named), name
        # Published on loopback only: the control APIs have no authentication.
        assert all(str(port).startswith("127.0.0.1:") for port in service.get("ports", [])), name


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def test_bambu_sim_advertises_its_service_name_and_listens_everywhere() -> None:
    doc = yaml.safe_load(MAIN_FILE.read_text())
    command = doc["services"]["bambu-sim"]["command"]
    assert command[0] == "bambu-sim"
    assert _flag(command, "--bind") == "ports"
    assert _flag(command, "--advertise-host") == "bambu-sim"
    assert _flag(command, "--listen-host") == "0.0.0.0"  # noqa: S104 - inside its container
    assert _flag(command, "--control-host") == "0.0.0.0"  # noqa: S104
    assert _flag(command, "--layout") == "/etc/pantheon/farm.yaml"
    data_dir = _flag(command, "--data-dir")
    assert f"{SIM_VOLUME}:{data_dir}" in doc["services"]["bambu-sim"]["volumes"]
    assert "9990/healthz" in " ".join(doc["services"]["bambu-sim"]["healthcheck"]["test"])


def test_robot_arm_sim_uses_the_broker_and_tells_bambu_sim() -> None:
    doc = yaml.safe_load(MAIN_FILE.read_text())
    service = doc["services"]["robot-arm-sim"]
    command = service["command"]
    assert command[0] == "robot-arm-sim"
    assert _flag(command, "--mqtt-host") == "mosquitto"
    assert _flag(command, "--printer-sim-url") == "http://bambu-sim:9990"
    control_port = _flag(command, "--control-port")
    assert f"127.0.0.1:{control_port}/healthz" in " ".join(service["healthcheck"]["test"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    for flag in ("--ledger", "--world-file"):
        folder = str(Path(_flag(command, flag)).parent)
        assert mounts.get(folder) == "robot-arm-sim-data", f"{flag} must be on the named volume"
    assert service["depends_on"]["bambu-sim"] == {"condition": "service_healthy"}
    assert service["depends_on"]["mosquitto"] == {"condition": "service_healthy"}


def test_sim_printers_file_merges_with_the_main_file(
    compose_bin: str, sim_printers_file: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    result = _compose(
        compose_bin,
        [MAIN_FILE, sim_printers_file],
        env_file,
        dummy_values,
        *("--profile", "sim", "--profile", "apps", "config"),
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    bambu = merged["services"]["bambu-sim"]
    # The base service and the generated access codes end up in one service.
    assert _flag(bambu["command"], "--advertise-host") == "bambu-sim"
    assert _flag(bambu["command"], "--speed") == dummy_values["SIM_SPEED"]
    code = bambu["environment"]["PRINTER_14_ACCESS_CODE"]
    assert code == dummy_values["PRINTER_14_ACCESS_CODE"]
    printer = merged["services"]["printer-service-14"]
    assert printer["environment"]["PRINTER_14_ACCESS_CODE"] == code
    assert printer["environment"]["BAMBU_ENDPOINTS_FILE"] == "/var/lib/bambu-sim/endpoints.json"
    assert printer["depends_on"]["bambu-sim"] == {"condition": "service_healthy"}
    assert f"{SIM_VOLUME}:/var/lib/bambu-sim:ro" in printer["volumes"]
    assert "robot-arm-sim" in merged["services"]
    assert SIM_VOLUME in merged["volumes"]


def test_compose_spec_schema_accepts_the_sim_printers_file(sim_printers_file: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "check_jsonschema"),
            *("--builtin-schema", "vendor.compose-spec", str(sim_printers_file)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_orchestrator_correlates_by_job_id_only_when_env_says_so() -> None:
    environment = yaml.safe_load(ORCHESTRATOR_FILE.read_text())["services"][
        "robot-arm-orchestrator"
    ]["environment"]
    # The real robot by default; ROBOT_ECHOES_JOB_ID=true in .env for robot-arm-sim.
    assert environment["ROBOT_ECHOES_JOB_ID"] == "${ROBOT_ECHOES_JOB_ID:-false}"
    assert EXAMPLE["ROBOT_ECHOES_JOB_ID"] == "false"


def test_simulators_dockerfile_installs_its_package_and_mosquitto() -> None:
    dockerfile = ROOT / "simulators" / "Dockerfile"
    _check_dockerfile("simulators", dockerfile, script="bambu-sim")
    text = dockerfile.read_text(encoding="utf-8")
    assert "apt-get install -y --no-install-recommends mosquitto" in text
    assert "\nUSER pantheon\n" in text, "the simulators run as a non-root user"


def test_run_script_sim_enables_the_simulated_farm(
    compose_bin: str, tmp_path: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    out = tmp_path / "printers.yml"
    result = _script(
        "run-docker-compose.sh",
        dummy_values,
        *("--sim", "--dry-run", "--env-file", str(env_file), "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    assert {"bambu-sim", "robot-arm-sim", "printer-service-45"} <= set(merged["services"])
    printer = merged["services"]["printer-service-45"]
    assert printer["environment"]["BAMBU_CA_FILE"] == "/var/lib/bambu-sim/ca.pem"
    assert "SIMULATED FARM" in out.read_text()


# ---------------------------------------------------------------- environment example


def _referenced_variables(printers_file: Path) -> set[str]:
    """Variables the compose documents interpolate and the scripts read (comments excluded)."""
    found = {
        match.group(1)
        for doc in _documents(printers_file).values()
        for text in _strings(doc)
        for match in VARIABLE.finditer(text)
    }
    for script in RUN_SCRIPTS:
        code = [ln for ln in script.read_text().splitlines() if not ln.lstrip().startswith("#")]
        found |= set(re.findall(r"env_value ([A-Z][A-Z0-9_]+)", "\n".join(code)))
    return found


def test_env_example_lists_every_variable_used(printers_file: Path) -> None:
    missing = _referenced_variables(printers_file) - set(EXAMPLE)
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_leaves_secrets_empty_and_comments_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        # a comment above the variable, or above the group of variables it belongs to
        above = index - 1
        while above >= 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1
        assert above >= 0, f"{name} needs a comment above it"
        assert lines[above].startswith("# "), f"{name} needs a comment above it"
        if SECRET_NAME.search(name):
            assert value == "", f"{name} is a secret: leave it empty in the example"


# ---------------------------------------------------------------- application folders


def _application_folders(printers_file: Path) -> set[str]:
    folders = set()
    for doc in _documents(printers_file).values():
        for service in doc["services"].values():
            build = service.get("build")
            if build is None:
                continue
            if isinstance(build, str):
                folders.add(Path(build).name)
            elif "dockerfile" in build:
                # uv workspace: the context is the repository root, the Dockerfile names the folder
                folders.add(Path(build["dockerfile"]).parent.name)
            else:
                folders.add(Path(build["context"]).name)
    return folders


def test_every_application_folder_is_named(printers_file: Path) -> None:
    assert _application_folders(printers_file) == {
        "pantheon-api",
        "printer-utilization",
        "control-panel-api",
        "slicer-api",
        "printer-service",
        "robot-arm-orchestrator",
        "simulators",
    }


@pytest.mark.parametrize(
    "folder",
    [
        "pantheon-api",
        "printer-utilization",
        "control-panel-api",
        "slicer-api",
        "printer-service",
        "robot-arm-orchestrator",
    ],
)
def test_a_service_with_a_pyproject_has_a_dockerfile_and_its_console_script(folder: str) -> None:
    """Silent while a folder is empty; binding as soon as the service's pyproject.toml lands."""
    path = ROOT / folder
    assert path.is_dir(), f"{folder}/ is named in a compose file but does not exist"
    pyproject = path / "pyproject.toml"
    if not pyproject.exists():
        return
    assert (path / "Dockerfile").is_file(), f"{folder}/ has a pyproject.toml but no Dockerfile"
    with pyproject.open("rb") as handle:
        scripts = tomllib.load(handle).get("project", {}).get("scripts", {})
    assert folder in scripts, f"{folder}/pyproject.toml must declare the console script {folder!r}"
    _check_dockerfile(folder, path / "Dockerfile")


def _check_dockerfile(folder: str, dockerfile: Path, script: str | None = None) -> None:
    """The image installs its own package from the whole workspace, and runs its console script.

    Without an engine nothing is built here; ``uv sync --dry-run`` with the Dockerfile's own
    arguments proves the lock resolves for this package alone, as the build step will.
    """
    text = dockerfile.read_text(encoding="utf-8")
    with (dockerfile.parent / "pyproject.toml").open("rb") as handle:
        package = tomllib.load(handle)["project"]["name"]
    assert "\nCOPY . .\n" in text, f"{dockerfile}: copy the workspace (uv checks every member)"
    sync = f"uv sync --locked --no-dev --package {package}"
    assert sync in text, f"{dockerfile}: install with `{sync}`"
    script = script or folder
    cmd = [ln for ln in text.splitlines() if ln.startswith("CMD ")][-1]
    assert cmd.startswith(f'CMD ["{script}"'), f"{dockerfile}: the image runs `{script}`"
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to check the Dockerfile's install step"
    dry = subprocess.run(
        [uv, "sync", "--locked", "--no-dev", "--package", package, "--dry-run"],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(ROOT / ".run" / "dockerfile-check")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dry.returncode == 0, f"{dockerfile}: {sync} fails: {dry.stderr[-800:]}"


# ---------------------------------------------------------------- scripts and units


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses(script: Path) -> None:
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    if script.name != "common.sh":
        assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"


def test_shell_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", "-x", *[str(s) for s in SCRIPTS]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_run_script_dry_run_prints_the_merged_configuration(
    compose_bin: str, tmp_path: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    out = tmp_path / "printers.yml"
    result = _script(
        "run-docker-compose.sh",
        dummy_values,
        "--dry-run",
        "--env-file",
        str(env_file),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    assert {"mongo", "printer-service-11", "printer-service-45"} <= set(merged["services"])
    assert out.read_text().startswith("# GENERATED")


def test_run_script_points_at_env_example_without_env_file(tmp_path: Path) -> None:
    result = _script(
        "run-docker-compose.sh",
        {},
        "--env-file",
        str(tmp_path / ".env"),
        "--out",
        str(tmp_path / "p.yml"),
    )
    assert result.returncode == 1
    assert ".env.example" in result.stderr
    assert not (tmp_path / "p.yml").exists()


def test_run_script_refuses_datadog_without_its_key(
    compose_bin: str, tmp_path: Path, env_file: Path, dummy_values: dict[str, str]
) -> None:
    values = {**dummy_values, "DD_API_KEY": ""}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    result = _script(
        "run-docker-compose.sh",
        values,
        *("--dry-run", "--profile", "datadog", "--env-file", str(env_file)),
        *("--out", str(tmp_path / "p.yml")),
    )
    assert result.returncode == 1
    assert "DD_API_KEY" in result.stderr


def test_orchestrator_script_dry_run(
    compose_bin: str, env_file: Path, dummy_values: dict[str, str]
) -> None:
    result = _script(
        "run-docker-compose-orchestrator.sh", dummy_values, "--dry-run", "--env-file", str(env_file)
    )
    assert result.returncode == 0, result.stderr
    assert list(yaml.safe_load(result.stdout)["services"]) == ["robot-arm-orchestrator"]


def test_homing_script_publishes_to_the_homing_queue_without_leaking_the_password(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "homing.env"
    settings.write_text("RABBITMQ_USER=farm\nRABBITMQ_PASSWORD=hunter2-dummy\n", encoding="utf-8")
    result = _script(
        "ubuntu_services/publish-homing.sh", {}, "--env-file", str(settings), "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:15672/api/exchanges/%2F/amq.default/publish" in result.stdout
    assert '"routing_key":"homing"' in result.stdout
    assert '"delivery_mode":2' in result.stdout
    assert "hunter2-dummy" not in result.stdout


def test_homing_cron_runs_daily_at_21_as_pantheon() -> None:
    jobs = [
        line.split()
        for line in (ROOT / "ubuntu_services" / "pantheon-homing.cron").read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(jobs) == 1
    assert jobs[0][:6] == ["0", "21", "*", "*", "*", "pantheon"]
    assert jobs[0][6].endswith("/ubuntu_services/publish-homing.sh")


@pytest.mark.parametrize(
    "unit",
    [
        "pantheon-framework.service",
        "pantheon-tunnel.service",
        "portainer.service",
        "robot-arm-api.service",
        "sftp.service",
    ],
)
def test_systemd_unit_has_its_sections_and_no_inline_secret(unit: str) -> None:
    text = (ROOT / "ubuntu_services" / unit).read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text, f"{unit}: {section}"
    for line in text.splitlines():
        if line.startswith("Environment="):
            assert not SECRET_NAME.search(line), f"{unit}: secret inline: {line}"
    if unit in ("pantheon-tunnel.service", "robot-arm-api.service"):
        assert "EnvironmentFile=/etc/pantheon/" in text
