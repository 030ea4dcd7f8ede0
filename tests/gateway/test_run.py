"""The real ``gateway run`` process against real sockets on loopback."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.devices import DeviceSocket, Sender
from tests.gateway.gatewayproc import GatewayProcess, read_records, unstored, wait_for
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login, load_vectors

IMEI = "356307042441013"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data")
    yield proc
    proc.kill()


def raw_payloads(data_dir: Path) -> set[bytes]:
    return {base64.b64decode(r["payload"]) for r in read_records(data_dir, "raw")}


def test_delivered_ack_means_the_frame_is_already_on_disk(gateway: GatewayProcess) -> None:
    dev = DeviceSocket(gateway.ports["evb1"])
    dev.send(evb1_login(IMEI))
    assert dev.recv_exact(11) == evb1_ack(0, 1)
    for seq in range(1, 21):
        frame = evb1_heartbeat(seq)
        dev.send(frame)
        assert dev.recv_exact(11) == evb1_ack(seq, 4)
        # `delivered`: by the time the device holds its ACK, the raw record is written.
        assert frame in raw_payloads(gateway.data_dir)
    dev.close()
    assert gateway.stop() == 0
    parsed = [r for r in read_records(gateway.data_dir, "parsed") if r["kind"] == "heartbeat"]
    assert len(parsed) == 20
    assert {r["device_id"] for r in parsed} == {IMEI}
    assert all(r["id"] == f"{r['raw_id']}-0" for r in parsed)


@pytest.mark.parametrize("codec", ["teltonika", "gt06"])
def test_vector_streams_get_the_protocol_replies(gateway: GatewayProcess, codec: str) -> None:
    cases = [c for c in load_vectors(codec) if c["expect"].get("accept", True)]
    login = next(c for c in cases if c["expect"]["kind"] in ("imei_login", "login"))
    frames = [
        c for c in cases if c is not login and c["expect"]["kind"] not in ("imei_login", "login")
    ]
    dev = DeviceSocket(gateway.ports[codec])
    dev.send(bytes.fromhex(login["hex"]))
    reply = login["expect"].get("server_reply_hex") or login["expect"]["reply_hex"]
    assert dev.recv_exact(len(reply) // 2).hex() == reply
    for case in frames:
        dev.send(bytes.fromhex(case["hex"]))
        want = case["expect"].get("server_reply_hex") or case["expect"].get("reply_hex")
        if want:
            assert dev.recv_exact(len(want) // 2).hex() == want, case["name"]
    dev.close()
    assert gateway.stop() == 0
    payloads = raw_payloads(gateway.data_dir)
    assert {bytes.fromhex(c["hex"]) for c in frames} <= payloads
    errors = read_records(gateway.data_dir, "errors")
    assert all(e["reason"] in ("unknown_type", "unsupported_codec") for e in errors)


def test_bad_input_costs_only_that_connection(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
        "login_timeout_s = 1.0\nidle_timeout_s = 2.0\n"
        "[[listeners]]\ncodec = 'teltonika'\nhost = '127.0.0.1'\nport = 0\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        evb1, teltonika = gw.ports["evb1"], gw.ports["teltonika"]
        good = DeviceSocket(evb1)
        good.send(evb1_login(IMEI))
        assert good.recv_exact(11) == evb1_ack(0, 1)

        before_login = DeviceSocket(evb1)
        before_login.send(b"\x00garbage\xff" + evb1_heartbeat(1))
        assert before_login.closed_by_peer()

        oversize = DeviceSocket(teltonika)
        oversize.send(bytes.fromhex("000f333536333037303432343431303133"))
        assert oversize.recv_exact(1) == b"\x01"
        oversize.send(b"\x00\x00\x00\x00\x7f\xff\xff\xff")  # a 2 GiB data_field_length
        assert oversize.closed_by_peer()

        silent = DeviceSocket(evb1)  # connects and never logs in (or a half-open socket)
        slowloris = DeviceSocket(evb1)
        slowloris.send(evb1_login("356307042441099"))
        assert slowloris.recv_exact(11) == evb1_ack(0, 1)
        trickle = evb1_heartbeat(7)
        for i in range(len(trickle) - 1):  # never finishes the frame
            try:
                slowloris.send(trickle[i : i + 1])
            except OSError:
                break
            time.sleep(0.25)
            # Keep the good device active meanwhile: it must not be affected.
            good.send(evb1_heartbeat(100 + i))
            assert good.recv_exact(11) == evb1_ack(100 + i, 4)
        assert silent.closed_by_peer(timeout=3)
        assert slowloris.closed_by_peer(timeout=3)
        good.send(evb1_heartbeat(999))
        assert good.recv_exact(11) == evb1_ack(999, 4)

        closed = {
            "data_before_login",
            "data_field_length_mismatch",
            "oversize",
            "login_timeout",
            "idle_timeout",
        }
        got = {
            r for r in closed if gw.metric("gateway_connections_closed_by_gateway_total", reason=r)
        }
        assert {"data_before_login", "login_timeout", "idle_timeout"} <= got
        assert gw.metric("gateway_connections_closed_by_gateway_total", codec="teltonika") == 1
        assert gw.metric("gateway_rejects_total", reason="garbage") >= 1
        assert gw.metric("gateway_connections_open", codec="evb1") == 1
    finally:
        assert gw.stop() == 0


def test_sigterm_mid_load_loses_nothing_acked(gateway: GatewayProcess) -> None:
    senders = [Sender(gateway.ports["evb1"], f"35630704244{i:04d}", window=32) for i in range(4)]
    for s in senders:
        s.start()
    assert wait_for(lambda: sum(len(s.acked) for s in senders) > 400, timeout=20)
    assert gateway.stop() == 0
    for s in senders:
        s.stop.set()  # a writer waiting for window space would wait for ACKs that cannot come
        s.join(15)
    acked = [frame for s in senders for frame in s.acked]
    assert acked
    assert unstored(gateway.data_dir, acked) == {"raw": [], "parsed": []}
    assert len(gateway.events("stopped")) == 1


def test_sigkill_mid_load_loses_nothing_acked(gateway: GatewayProcess) -> None:
    # `delivered`: a frame is ACKed only once its raw and parsed records are fsync'd, so a
    # crash at any moment leaves every ACKed frame in both streams (and maybe a cut-off batch
    # nobody was ACKed for).
    senders = [Sender(gateway.ports["evb1"], f"35630704246{i:04d}", window=32) for i in range(4)]
    for s in senders:
        s.start()
    assert wait_for(lambda: sum(len(s.acked) for s in senders) > 400, timeout=20)
    gateway.kill()
    for s in senders:
        s.stop.set()
        s.join(15)
    acked = [frame for s in senders for frame in s.acked]
    assert unstored(gateway.data_dir, acked) == {"raw": [], "parsed": []}


def test_backpressure_pauses_readers_and_recovers(tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    stall.touch()
    config = tmp_path / "gw.toml"
    config.write_text(
        "[pipeline]\nhigh_water_bytes = 524288\nlow_water_bytes = 262144\n"
        f"[sink.local]\nstall_while_exists = '{stall}'\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=("evb1",), config=config)
    senders = [Sender(gw.ports["evb1"], f"35630704245{i:04d}", window=1000) for i in range(6)]
    try:
        for s in senders:
            s.start()
        assert wait_for(lambda: gw.metric("gateway_paused") == 1, timeout=15)
        time.sleep(1.0)  # readers stay paused while the sink is stalled
        assert gw.metric("gateway_paused") == 1
        buffered = gw.metric("gateway_buffered_bytes")
        # Over the high watermark by at most one read slice's records (gateway/transport/tcp.py).
        assert 524288 <= buffered < 524288 + 256 * 1024
        rss_kb = int(Path(f"/proc/{gw.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        assert rss_kb < 200 * 1024
        frames_while_paused = gw.metric("gateway_frames_total")
        time.sleep(0.5)
        assert gw.metric("gateway_frames_total") == frames_while_paused
        assert sum(len(s.acked) for s in senders) == 0  # nothing is written, so nothing ACKed
        stall.unlink()  # the sink recovers
        assert wait_for(lambda: sum(len(s.acked) for s in senders) > 200, timeout=20)
        assert wait_for(lambda: gw.metric("gateway_paused_seconds_total") > 1.0, timeout=5)
    finally:
        for s in senders:
            s.stop.set()
        code = gw.stop()
        for s in senders:
            s.join(15)
    assert code == 0
    acked = [frame for s in senders for frame in s.acked]
    assert unstored(gw.data_dir, acked) == {"raw": [], "parsed": []}
