"""A real Mosquitto broker per test (started as a subprocess on a free port) and a recording
subscriber, plus a CA and certificates made with openssl for the TLS tests."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests._live import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str = "ca") -> TLSFiles:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN=veilcam test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             cwd=d)  # fmt: skip
    ext = d / f"{name}-server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                 "-keyout", f"{name}-{who}.key", "-out", f"{name}-{who}.csr", cwd=d)  # fmt: skip
        extra = ["-extfile", ext.name] if who == "server" else []
        _openssl("x509", "-req", "-in", f"{name}-{who}.csr", "-CA", f"{name}.crt",
                 "-CAkey", f"{name}.key", "-CAcreateserial", "-days", "2",
                 "-out", f"{name}-{who}.crt", *extra, cwd=d)  # fmt: skip
    return TLSFiles(
        d / f"{name}.crt",
        d / f"{name}-server.crt",
        d / f"{name}-server.key",
        d / f"{name}-client.crt",
        d / f"{name}-client.key",
    )


class Broker:
    """``/usr/sbin/mosquitto -c CONF`` listening on 127.0.0.1:port; stop/start keep the port."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TLSFiles | None = None,
        users: dict[str, str] | None = None,
        persistence: bool = False,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.users = users
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"

    def _conf(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # the command-fuzz test bursts 1,000 QoS 1 messages; mosquitto's default queue of
            # 1,000 per client can drop some on a loaded machine, which is not what it tests
            "max_queued_messages 0",
        ]
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password],
                               check=True, capture_output=True, timeout=30)  # fmt: skip
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        conf = self._conf()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    t: float = field(default_factory=time.monotonic)  # when it arrived


class Watcher:
    """A subscriber that records every message; tests wait on it with deadlines."""

    def __init__(
        self,
        broker: Broker,
        topics: tuple[str, ...] = ("#",),
        *,
        client_id: str = "",
        persistent: bool = False,
        tls: TLSFiles | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.msgs: list[Msg] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        if tls is not None:
            self.client.tls_set(str(tls.ca), str(tls.client_cert), str(tls.client_key))
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            return
        marker = f"watcher/{id(self)}/ready"
        for t in (*self.topics, marker):
            client.subscribe(t, qos=1)
        # the broker handles our packets in order: when the marker comes back, we are subscribed
        client.publish(marker, b"1", qos=1)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        if msg.topic == f"watcher/{id(self)}/ready":
            self.connected.set()
            return
        with self.cond:
            self.msgs.append(Msg(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def start(self, timeout: float = 10.0) -> Watcher:
        self.client.connect_async("127.0.0.1", self.broker.port)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise AssertionError("watcher did not connect and subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Msg]:
        with self.cond:
            return [m for m in self.msgs if m.topic == topic]

    def wait(self, pred: Callable[[list[Msg]], object], timeout: float, what: str) -> object:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self.msgs)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self.cond.wait(left)

    def wait_topic(self, topic: str, timeout: float = 10.0, n: int = 1) -> list[Msg]:
        return self.wait(  # type: ignore[return-value]
            lambda ms: (lambda got: got if len(got) >= n else None)(
                [m for m in ms if m.topic == topic]
            ),
            timeout,
            f"{n} message(s) on {topic}",
        )

    def clear(self) -> None:
        with self.cond:
            self.msgs.clear()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)
