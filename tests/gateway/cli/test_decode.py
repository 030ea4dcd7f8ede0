"""``gateway decode`` as a user runs it: the installed console script, bytes in, JSON lines out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.schema import documents
from tests.parser.streams import load_vectors

GATEWAY = Path(sys.executable).with_name("gateway")


def decode(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(GATEWAY), "decode", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def lines(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


VECTOR_CASES = [
    (codec, case) for codec in ("teltonika", "gt06", "evb1") for case in load_vectors(codec)
]


@pytest.mark.parametrize(
    ("codec", "case"), VECTOR_CASES, ids=[f"{c}-{v['name']}" for c, v in VECTOR_CASES]
)
def test_decode_agrees_with_vectors(codec: str, case: dict[str, Any]) -> None:
    events = lines(decode("--codec", codec, "--hex", case["hex"]))
    expect = case["expect"]
    first = events[0]
    if expect.get("accept") is False or expect.get("event") == "reject":
        assert first["event"] == "reject"
        assert first["reason"] == expect.get("reason", first["reason"])
        assert not any(e["event"] == "frame" for e in events)
        return
    if expect.get("kind") in ("imei_login", "login") or expect.get("event") == "login":
        assert first["event"] == "login"
        assert first["device_id"] == expect.get("imei", expect.get("device_id"))
        reply = expect.get("server_reply_hex", expect.get("reply_hex"))
        assert first["reply"] == reply
        return
    assert first["event"] == "frame"
    assert first["device_id"] is None  # no login earlier in these bytes
    assert first["reply"] == (expect.get("server_reply_hex") or expect.get("reply_hex") or "")
    records = first["records"]
    if "number_of_records" in expect:
        assert len(records) == expect["number_of_records"]
        rec = expect["first_record"]
        assert records[0]["ts"] == rec["timestamp_iso_utc"]
        assert records[0]["io"] == rec["io"]
        assert records[0]["position"]["lat"] == pytest.approx(rec["latitude_raw"] / 1e7, abs=1e-9)
        assert records[0]["attrs"]["priority"] == rec["priority"]
    elif "gps" in expect:
        gps = expect["gps"]
        assert records[0]["ts"] == gps["datetime_utc"].replace("Z", ".000Z")
        assert records[0]["position"]["lat"] == pytest.approx(gps["latitude"], abs=1e-6)
        assert records[0]["position"]["lon"] == pytest.approx(gps["longitude"], abs=1e-6)
    elif "records" in expect:
        assert [{k: r[k] for k in w} for r, w in zip(records, expect["records"], strict=True)] == (
            expect["records"]
        )
    for record in records:
        assert record["schema"] == "ev.parsed/1"
        assert record["id"] == f"{record['raw_id']}-{records.index(record)}"
        assert record["codec"] == codec


def test_login_then_frames_carry_the_device_id() -> None:
    tel = load_vectors("teltonika")
    data = tel[0]["hex"] + tel[2]["hex"] + "ff" + tel[4]["hex"]
    events = lines(decode("--codec", "teltonika", "--hex", data))
    assert [e["event"] for e in events] == ["login", "frame", "frame"]
    assert {e["device_id"] for e in events} == {"356307042441013"}
    assert events[2]["reply"] == "00000002"


def test_stdin_and_file_binary_and_hex(tmp_path: Path) -> None:
    case = load_vectors("gt06")[0]
    binary = bytes.fromhex(case["hex"])
    assert lines(decode("--codec", "gt06", "-", stdin=binary))[0]["event"] == "login"
    hex_file = tmp_path / "capture.txt"
    hex_file.write_text(case["hex"][:10] + "\n" + case["hex"][10:] + "\n")
    assert lines(decode("--codec", "gt06", "--file", str(hex_file)))[0]["event"] == "login"
    bin_file = tmp_path / "capture.bin"
    bin_file.write_bytes(binary)
    assert lines(decode("--codec", "gt06", "--file", str(bin_file)))[0]["event"] == "login"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codec", "evb1", "--hex", "45zz"], "invalid hex input: invalid character 'z'"),
        (["--codec", "evb1", "--hex", "455"], "invalid hex input: odd number of hex digits"),
        (["--codec", "nope", "--hex", "00"], "unknown codec 'nope'"),
        (["--codec", "evb1", "--file", "/nonexistent/x"], "cannot read /nonexistent/x"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = decode(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_schema_files_are_current() -> None:
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [str(GATEWAY), "schema", "--check", str(root / "config" / "schema")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "{tmp}/file"],
        ["run", "--listen", "evb1=127.0.0.1:0", "--metrics", "127.0.0.1:0", "--health",
         "127.0.0.1:0"],
    ],
)  # fmt: skip
def test_an_unwritable_data_dir_is_one_line_and_exit_74(tmp_path: Path, command: list[str]) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a directory")
    args = [a.format(tmp=tmp_path) for a in command]
    result = subprocess.run(
        [str(GATEWAY), *args, "--data-dir", str(in_the_way / "data")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 74
    assert "Traceback" not in result.stderr
    assert "Not a directory" in result.stderr.strip().splitlines()[-1]


def test_published_schemas_do_not_depend_on_docstring_indentation() -> None:
    """msgspec releases dedent docstrings differently: descriptions are published collapsed."""
    for name, text in documents().items():
        descriptions: list[str] = []
        _collect_descriptions(json.loads(text), descriptions)
        assert descriptions, name
        for description in descriptions:
            assert description == " ".join(description.split()), (name, description)


def _collect_descriptions(node: object, into: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                into.append(value)
            else:
                _collect_descriptions(value, into)
    elif isinstance(node, list):
        for item in node:
            _collect_descriptions(item, into)


@pytest.mark.parametrize("flag", ["--write", "--check"])
def test_a_schema_directory_that_cannot_be_used_is_one_line(flag: str) -> None:
    result = subprocess.run(
        [str(GATEWAY), "schema", flag, "/proc/no-such-dir"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if flag == "--write":  # nothing can be created under /proc
        assert result.returncode == 74
        assert result.stderr == "gateway schema: /proc/no-such-dir: No such file or directory\n"
    else:  # a missing directory holds no current files
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "stale schema files" in result.stderr


QUICK_COMMANDS = [
    ["--help"],
    ["decode", "--codec", "evb1", "--hex", "00"],
    ["codecs"],
    # The long-running modes' help: their code is imported only when they run.
    ["run", "--help"],
    ["bridge", "--help"],
    ["check-config", "--help"],
]


@pytest.mark.parametrize("argv", QUICK_COMMANDS, ids=" ".join)
def test_quick_commands_do_not_import_the_aws_stack(argv: list[str]) -> None:
    # aiobotocore, botocore, aiohttp and pydantic took ~0.6 s to import; these commands use none.
    probe = (
        "import sys\n"
        "from gateway.cli import main as cli\n"
        "try:\n"
        "    status = cli.main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "heavy = {'aiobotocore', 'botocore', 'aiohttp', 'pydantic', 'pydantic_settings'}\n"
        "print(sorted(heavy & {name.partition('.')[0] for name in sys.modules}), status,"
        " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stderr.splitlines()[-1] == "[] 0", result.stderr
    assert result.stdout


def test_help_lists_every_command_and_each_command_its_arguments() -> None:
    def run(*argv: str) -> str:
        result = subprocess.run(
            [str(GATEWAY), *argv], capture_output=True, text=True, timeout=60, check=True
        )
        return result.stdout

    top = run("--help")
    for command in ("decode", "run", "bridge", "simulate", "passwd", "kinesis", "replay", "parse",
                    "check-config", "codecs", "schema"):  # fmt: skip
        assert re.search(rf"^    {command}\b", top, re.MULTILINE), command
    assert "--capture" in run("replay", "--help")
    assert "--checkpoint" in run("parse", "--help")
    assert "--devices" in run("simulate", "--help")
    assert "--stream" in run("kinesis", "tail", "--help")


def test_replay_of_inputs_that_do_not_exist_is_one_line_each_and_exit_2(tmp_path: Path) -> None:
    capture = ["--capture", str(tmp_path / "old.hex"), "--device-id", "1", "--codec", "evb1"]
    for inputs in ([str(tmp_path / "raw"), str(tmp_path / "raw2")], capture):
        result = subprocess.run(
            [str(GATEWAY), "replay", *inputs, "--data-dir", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        named = [i for i in inputs if i.startswith(str(tmp_path))]
        assert result.stderr == "".join(
            f"gateway replay: {i}: no such file or directory\n" for i in named
        )
        assert result.stdout == ""
        assert not (tmp_path / "out").exists(), "nothing written for a command line that is wrong"


def test_lines_decode_a_corpus_in_one_process_one_session_per_line(tmp_path: Path) -> None:
    standard = [case for case in load_vectors("gt06_packets") if "variant" not in case]
    cases = load_vectors("gt06") + standard
    body = [case["hex"] for case in cases] * 10  # hundreds of captures, one process
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("# gt06 captures\n\n" + "\n".join(body) + "\nnot hex\n")
    result = decode("--codec", "gt06", "--lines", "--file", str(corpus))
    assert result.returncode == 1  # one line was not hex: reported, the rest decoded
    assert result.stderr.decode() == (
        f"gateway decode: {corpus}:{len(body) + 3}: invalid hex input: invalid character 'n'\n"
    )
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    # Each capture had a session of its own: exactly one event per line, its first.
    assert [e["line"] for e in events] == list(range(3, len(body) + 3))
    by_line = {e["line"]: e for e in events}
    for index, case in enumerate(cases):
        event = by_line[index + 3]
        if not case["expect"].get("accept", True):
            assert event["event"] == "reject"
        elif case["expect"]["kind"] == "login":
            assert (event["event"], event["device_id"]) == ("login", case["expect"]["imei"])
        else:
            assert event["event"] == "frame" and "error" not in event, event


def test_lines_from_stdin_and_not_with_hex() -> None:
    tel = load_vectors("teltonika")
    stdin = "\n".join([tel[0]["hex"], tel[2]["hex"]]).encode()
    events = lines(decode("--codec", "teltonika", "--lines", "-", stdin=stdin))
    # A fresh session per line: the AVL packet on line 2 has no login before it.
    assert [(e["line"], e["event"], e["device_id"]) for e in events] == [
        (1, "login", "356307042441013"),
        (2, "frame", None),
    ]
    refused = decode("--codec", "evb1", "--lines", "--hex", "00")
    assert refused.returncode == 2
    assert refused.stderr.decode() == "gateway decode: --lines reads --file or stdin, not --hex\n"
