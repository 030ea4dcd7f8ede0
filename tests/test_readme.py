"""The README's examples run as written: every file they name exists, and the commands that
need no running server, cloud account or earlier demo succeed on a fresh clone."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import demo

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = str(Path(sys.executable).with_name("gateway"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Folders of the repository a command may name a file in.
REPO_FOLDERS = ("config", "codecs", "systemd", "tests", "bench")
# Commands that need something a fresh clone does not have running or written.
NEEDS_MORE = ("data/demo", "s3://", "/etc/", "kinesis", "bridge --config", "parse ")
FILE_NAME = re.compile(r"\.(toml|bin|hex|gz|jsonl?|pem|key|passwd)$")
SELF_CONTAINED = ("decode", "codecs", "schema", "check-config", "replay")


def commands() -> list[str]:
    """The command lines of the README's ``sh`` blocks, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def test_every_file_a_command_names_exists() -> None:
    # A repository path, or a relative file name of any kind (host paths under /etc, outputs
    # under /tmp and what make demo writes under data/ are not in a fresh clone).
    named = {
        word.rstrip("/")
        for command in commands()
        for word in shlex.split(command)
        if word.split("/")[0] in REPO_FOLDERS
        or (FILE_NAME.search(word) and not word.startswith(("/", "data/", "s3://")))
    }
    assert len(named) >= 6
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_replay_examples_read_where_the_demo_writes() -> None:
    replays = [c for c in commands() if " replay " in c and "data/" in c]
    assert replays
    raw = (demo.ROOT / "data" / "demo" / "raw").relative_to(ROOT)
    for command in replays:
        inputs = [w for w in shlex.split(command) if w.startswith("data/")]
        assert inputs[0].rstrip("/") == str(raw), command


RUNNABLE = [
    c
    for c in commands()
    if c.startswith(".venv/bin/gateway ")
    and c.split()[1] in SELF_CONTAINED
    and not any(marker in c for marker in NEEDS_MORE)
]


@pytest.mark.parametrize("command", RUNNABLE)
def test_self_contained_commands_run_as_written(command: str, tmp_path: Path) -> None:
    # As written, from the repository's root; only /tmp becomes this test's own directory (before
    # the gateway's path goes in: the checkout itself may live under /tmp).
    line = command.replace("/tmp/", f"{tmp_path}/").replace(".venv/bin/gateway", GATEWAY, 1)
    result = subprocess.run(
        line, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_the_runnable_examples_cover_each_kind() -> None:
    kinds = {c.split()[1] for c in RUNNABLE}
    assert kinds == set(SELF_CONTAINED)
    assert any("--skip-files config/bridge-example.toml" in c for c in RUNNABLE)
