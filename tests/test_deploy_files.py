"""Deployment files: the systemd units, the Dockerfile and .dockerignore.

No systemd manager and no Docker engine run here, so the files are parsed and held to what the
gateway needs (directives, ports, paths, settings names), the container's health check runs
against the real gateway, and the gateway runs under the kernel's MemoryDenyWriteExecute.
``systemd-analyze verify`` and ``security --offline`` run where systemd is installed.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.settings import Settings, load_settings
from tests.gateway import gatewayproc
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login
from tests.systemd_units import (
    COMMON,
    INSTALLED_GATEWAY,
    SYSTEMD,
    environment,
    load_unit,
    needs_systemd_analyze,
    value,
)

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_TOML = "/etc/ev-gateway/gateway.toml"
# Read by gateway/ops/workers.py, not a setting: the instance number of `run --workers` or
# ev-gateway@.
NON_SETTINGS_VARIABLES = {"GATEWAY_WORKER"}

# --- systemd units --------------------------------------------------------------------------------

UNITS = {
    "ev-gateway.service": f"{INSTALLED_GATEWAY} run --config {GATEWAY_TOML}",
    "ev-gateway@.service": f"{INSTALLED_GATEWAY} run --config {GATEWAY_TOML}",
    "ev-gateway.bridge.service": f"{INSTALLED_GATEWAY} bridge --config /etc/ev-gateway/bridge.toml",
}


@pytest.mark.parametrize("name", UNITS)
def test_units_run_the_gateway_as_a_sandboxed_notify_service(name: str) -> None:
    unit = load_unit(name)
    assert value(unit, "ExecStart") == UNITS[name]
    for key, expected in COMMON.items():
        assert value(unit, key) == expected, key
    # Empty: no capability at all, and nothing granted back afterwards.
    assert unit["Service"]["CapabilityBoundingSet"] == [""]
    assert "AmbientCapabilities" not in unit["Service"]
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"
    assert value(unit, "WantedBy", "Install") == "multi-user.target"
    assert "network-online.target" in value(unit, "After", "Unit")
    state_dir = value(unit, "StateDirectory")
    data_dir = environment(unit).get("GATEWAY_SINK__LOCAL__DATA_DIR")
    if data_dir is not None:  # the only writable path under ProtectSystem=strict
        assert data_dir == f"%S/{state_dir}"


def test_the_stop_timeout_outlasts_the_drain_deadline() -> None:
    local = tomllib.loads((ROOT / "config" / "local.toml").read_text(encoding="utf-8"))
    drain_s = max(local["shutdown_timeout_s"], Settings.model_fields["shutdown_timeout_s"].default)
    for name in UNITS:
        stop_s = int(value(load_unit(name), "TimeoutStopSec").removesuffix("s"))
        # Room after the deadline for closing the sinks and exiting: never SIGKILL a clean drain.
        assert stop_s >= drain_s + 10, name


def test_the_single_service_has_its_data_dir_and_file_limit() -> None:
    unit = load_unit("ev-gateway.service")
    assert value(unit, "StateDirectory") == "ev-gateway"
    assert environment(unit)["GATEWAY_SINK__LOCAL__DATA_DIR"] == "%S/ev-gateway"
    assert value(unit, "LimitNOFILE") == "131072"


def test_template_instances_share_ports_as_one_user_with_separate_state() -> None:
    unit = load_unit("ev-gateway@.service")
    assert environment(unit)["GATEWAY_WORKER"] == "%i"
    assert value(unit, "StateDirectory") == "ev-gateway/%i"
    # SO_REUSEPORT only groups sockets of one uid: every instance must be the same user.
    assert "%" not in value(unit, "User")
    assert value(unit, "User") == value(load_unit("ev-gateway.service"), "User")
    assert value(unit, "Conflicts", "Unit") == "ev-gateway.service"
    assert value(unit, "LimitNOFILE") == "131072"


def test_behind_the_nlb_health_checks_answer_on_every_interface_and_loopback_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing configured: health and metrics stay on loopback (two gateways on one host, or a
    # laptop, expose neither to the network).
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    default = load_settings(None)
    assert default.health.host == default.metrics.host == "127.0.0.1"
    # The units and the EC2 example they are installed with keep /readyz where the NLB's health
    # checks arrive.
    for name in ("ev-gateway.service", "ev-gateway@.service"):
        assert environment(load_unit(name))["GATEWAY_HEALTH__HOST"] == "0.0.0.0", name
    ec2 = load_settings(ROOT / "config" / "ec2.toml")
    assert ec2.health.host == "0.0.0.0" and ec2.health.enabled
    assert {ls.host for ls in ec2.listeners} == {"0.0.0.0"}
    readme = (SYSTEMD / "README.md").read_text(encoding="utf-8")
    installed = re.findall(
        r"share/ev-gateway/(config/\S+\.toml) " + re.escape(GATEWAY_TOML), readme
    )
    assert installed == ["config/ec2.toml"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (
        "config/ec2.toml" in project["tool"]["setuptools"]["data-files"]["share/ev-gateway/config"]
    )


def _copies_with_a_real_executable(tmp_path: Path) -> list[Path]:
    # verify checks that ExecStart's binary exists: point it at this checkout's gateway.
    gateway = str(Path(sys.executable).with_name("gateway"))
    copies = []
    for name in UNITS:
        copy = tmp_path / name
        copy.write_text((SYSTEMD / name).read_text().replace(INSTALLED_GATEWAY, gateway))
        copies.append(copy)
    return copies


@needs_systemd_analyze
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    copies = _copies_with_a_real_executable(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, copies)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and unparsable values are only warnings (exit 0): any output fails.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_security_rates_the_sandbox_ok(tmp_path: Path, name: str) -> None:
    copy = next(c for c in _copies_with_a_real_executable(tmp_path) if c.name == name)
    result = subprocess.run(
        # Exposure 0-10 is given in tenths here: fail above 2.0 (1.4 when written).
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--man=no", str(copy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# --- Dockerfile -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage (a stage starts at FROM); continuations joined."""
    stages: list[list[Instruction]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines may sit inside a continuation too
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instruction = Instruction(start, keyword.upper(), args.strip())
        pending, start = "", 0
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"line {instruction.line}: {instruction.keyword} before FROM"
        stages[-1].append(instruction)
    return stages


def lint_run(command: str) -> list[str]:
    """hadolint's rules for a RUN that are simple to state (DL3005, DL3009, DL3014/15, DL3042)."""
    problems = []
    if re.search(r"apt-get\s+(dist-)?upgrade", command):
        problems.append("apt-get upgrade: pin the base image instead")
    for part in re.split(r"&&|;|\|\|", command):
        if re.search(r"\bpip3?\s+install\b", part) and "--no-cache-dir" not in part:
            problems.append("pip install without --no-cache-dir")
        if re.search(r"apt-get\s+install\b", part):
            if "--no-install-recommends" not in part:
                problems.append("apt-get install without --no-install-recommends")
            if not re.search(r"\s(-y|--yes|--assume-yes)\b", part):
                problems.append("apt-get install without -y")
    if "apt-get install" in command and "rm -rf /var/lib/apt/lists" not in command:
        problems.append("apt lists not removed in the RUN that installs")
    return problems


STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
FINAL = STAGES[-1]


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves ``path`` out (last matching pattern wins, ``!`` keeps)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not keep
    return excluded


def test_base_images_are_pinned_tags() -> None:
    names = set()
    for stage in STAGES:
        words = stage[0].args.split()
        image = next(w for w in words if not w.startswith("--"))
        if "AS" in (w.upper() for w in words):
            names.add(words[-1])
        if image in names or image == "scratch" or "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag and tag != "latest", image


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    copied = set()
    for stage in STAGES:
        for instruction in stage:
            assert instruction.keyword != "ADD", f"line {instruction.line}: use COPY"
            if instruction.keyword != "COPY" or "--from=" in instruction.args:
                continue
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"line {instruction.line}: {source} missing"
                assert not dockerignore_excludes(source), f"{source} is in .dockerignore"
                copied.add(source.strip("/"))
    # Everything `pip install .` reads: the metadata, the readme, packages, data files.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]}
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {pattern.split(".")[0] for pattern in found}
    for files in project["tool"]["setuptools"]["data-files"].values():
        needed |= {f.split("/")[0] for f in files}
    assert needed <= copied


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (
        ".git",
        ".venv",
        "node_modules",
        "data",
        "tests",
        "bench",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "gateway/__pycache__",
    ):
        assert dockerignore_excludes(path), path
    assert not dockerignore_excludes("gateway/ops/server.py")


def test_codec_layouts_are_installed_with_the_wheel() -> None:
    # The installed gateway (image, /opt venv) loads layouts from share/ev-gateway/codecs only.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    installed = set(project["tool"]["setuptools"]["data-files"]["share/ev-gateway/codecs"])
    assert {f"codecs/{p.name}" for p in (ROOT / "codecs").glob("*.toml")} <= installed


def test_the_runtime_stage_runs_unprivileged_with_a_health_check() -> None:
    user = args_of(FINAL, "USER")[-1].split(":")[0]
    assert user not in ("root", "0") and user == "10001"
    assert args_of(FINAL, "HEALTHCHECK") and "NONE" not in args_of(FINAL, "HEALTHCHECK")[-1]
    assert args_of(FINAL, "STOPSIGNAL") == ["SIGTERM"]
    assert args_of(FINAL, "WORKDIR")
    # Exec form, so the gateway itself is PID 1 and receives SIGTERM (hadolint DL3025).
    assert args_of(FINAL, "ENTRYPOINT") == ['["gateway"]']
    assert args_of(FINAL, "CMD")[-1].startswith("[")


@pytest.mark.parametrize("stage", range(len(STAGES)))
def test_run_instructions_follow_the_lint_rules(stage: int) -> None:
    for command in args_of(STAGES[stage], "RUN"):
        assert lint_run(command) == [], command


@pytest.mark.parametrize(
    "command",
    [
        "apt-get update && apt-get upgrade -y",
        "pip install --upgrade msgspec",
        "apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*",
        "apt-get update && apt-get install -y --no-install-recommends curl",
    ],
)
def test_the_lint_rules_catch_what_they_name(command: str) -> None:
    assert lint_run(command)


def _container_env(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings `gateway run` gets in the image: defaults plus the Dockerfile's ENV."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    for item in shlex.split(" ".join(args_of(FINAL, "ENV"))):
        name, _, val = item.partition("=")
        if name.startswith("GATEWAY_"):
            monkeypatch.setenv(name, val)
    return load_settings(None)


def test_exposed_ports_are_the_default_listener_metrics_and_health_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exposed = {int(p.split("/")[0]) for args in args_of(FINAL, "EXPOSE") for p in args.split()}
    local = load_settings(ROOT / "config" / "local.toml")
    assert exposed == {*(ls.port for ls in local.listeners), local.metrics.port, local.health.port}
    container = _container_env(monkeypatch)
    assert exposed == {
        *(ls.port for ls in container.listeners),
        container.metrics.port,
        container.health.port,
    }
    # Reachable from outside the container's network namespace.
    assert {ls.host for ls in container.listeners} == {"0.0.0.0"}
    assert container.metrics.host == container.health.host == "0.0.0.0"
    assert container.sink.local.data_dir.is_absolute()


# --- GATEWAY_ variables name real settings --------------------------------------------------------


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The settings section a field holds (``KinesisSettings | None`` too), if any."""
    candidates: tuple[object, ...] = (annotation, *typing.get_args(annotation))
    for candidate in candidates:
        plain_class = typing.get_origin(candidate) is None and isinstance(candidate, type)
        if plain_class and isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def names_a_setting(variable: str) -> bool:
    """Whether ``GATEWAY_A__B`` is the environment name of a setting (``a.b``)."""
    model: type[BaseModel] | None = Settings
    for part in variable.removeprefix("GATEWAY_").lower().split("__"):
        field = None if model is None else model.model_fields.get(part)
        if field is None:
            return False
        model = _section_model(field.annotation)
    return True


def test_every_gateway_variable_names_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings ignores an unknown GATEWAY_ variable: a typo would go unnoticed.
    example = (SYSTEMD / "ev-gateway.env.example").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^# (GATEWAY_\w+)=(\S*)$", example, re.MULTILINE))
    variables = set(documented)
    for name in UNITS:
        variables |= {v for v in environment(load_unit(name)) if v.startswith("GATEWAY_")}
    variables |= {
        item.partition("=")[0]
        for item in shlex.split(" ".join(args_of(FINAL, "ENV")))
        if item.startswith("GATEWAY_")
    }
    assert len(variables) > 5
    unknown = {v for v in variables - NON_SETTINGS_VARIABLES if not names_a_setting(v)}
    assert not unknown
    assert not names_a_setting("GATEWAY_METRICS__PROT")
    # And the documented values are valid together.
    for name, val in documented.items():
        monkeypatch.setenv(name, val)
    assert load_settings(None).sink.kinesis is not None


# --- the image's health check and MemoryDenyWriteExecute, against the real gateway ----------------


def healthcheck_command() -> list[str]:
    args = args_of(FINAL, "HEALTHCHECK")[-1]
    command: list[str] = json.loads(args[args.index("CMD") + 3 :].strip())
    return command


@pytest.fixture
def evb1_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data", codecs=("evb1",))
    yield proc
    proc.kill()


def test_the_image_health_check_passes_only_while_the_gateway_serves(
    evb1_gateway: GatewayProcess,
) -> None:
    assert evb1_gateway.health_url is not None
    port = evb1_gateway.health_url.rpartition(":")[2]
    image_command = healthcheck_command()
    assert image_command[0] == "python"  # the venv's, first on the image's PATH
    command = [sys.executable, *image_command[1:]]
    env = {"GATEWAY_HEALTH__PORT": port}
    assert (
        subprocess.run(command, check=False, env=env, capture_output=True, timeout=30).returncode
        == 0
    )
    assert evb1_gateway.stop() == 0
    assert (
        subprocess.run(command, check=False, env=env, capture_output=True, timeout=30).returncode
        != 0
    )


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def mdwe_wrapper(directory: Path, target: str) -> str:
    """An executable that turns on MemoryDenyWriteExecute (PR_SET_MDWE, what systemd ≥ 254
    uses) and execs ``target``: the setting survives execve, as under systemd."""
    wrapper = directory / "mdwe"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import ctypes, mmap, os, sys\n"
        f"assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except PermissionError:\n"
        f"    os.execv({target!r}, [{target!r}, *sys.argv[1:]])\n"
        "sys.exit('PR_SET_MDWE did not refuse a writable+executable mapping')\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


needs_mdwe = pytest.mark.skipif(
    sys.platform != "linux" or ctypes.CDLL(None).prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0,
    reason="kernel without PR_SET_MDWE (Linux < 6.3)",
)


@needs_mdwe
def test_the_gateway_runs_under_memory_deny_write_execute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    still_on = f"import ctypes; print(ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0))"
    check = subprocess.run(
        [mdwe_wrapper(tmp_path, sys.executable), "-c", still_on],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (check.returncode, check.stdout.strip()) == (0, "1"), check.stderr
    monkeypatch.setattr(gatewayproc, "GATEWAY", mdwe_wrapper(tmp_path, gatewayproc.GATEWAY))
    proc = GatewayProcess(tmp_path / "data", codecs=("evb1",))
    try:
        dev = DeviceSocket(proc.ports["evb1"])
        dev.send(evb1_login("356307042441013"))
        assert dev.recv_exact(11) == evb1_ack(0, 1)
        for seq in range(1, 21):
            dev.send(evb1_heartbeat(seq))
            assert dev.recv_exact(11) == evb1_ack(seq, 4)
        dev.close()
        assert proc.metric("gateway_frames_total") == 20
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert len(read_records(tmp_path / "data", "raw")) == 21
