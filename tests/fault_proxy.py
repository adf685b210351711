"""A real TCP proxy between the ingestor and the SciCat stand-in, that misbehaves on request.

Like the nginx or load balancer every facility has in front of SciCat, it forwards HTTP
requests; a test arms faults for requests matching a method and a path prefix:

- ``"502-after-forward"``: SciCat gets the request and answers; the client gets a gateway's 502 page.
- ``"stall-after-forward"``: SciCat answers; the client gets nothing for ``stall_s``, then a closed connection.
- ``"reset-after-forward"``: SciCat answers; the client's connection is reset (RST).
- ``"body-after-forward"``: SciCat answers; the client gets its status with ``body`` instead (empty by default).
- ``"trickle"``: SciCat's answer reaches the client one byte every ``trickle_s``.
- ``"answer"``: the client gets ``status`` without SciCat seeing the request.

Each request is forwarded on a connection of its own to SciCat (``Connection: close``); the
client's connection is kept alive as the client asks.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("502-after-forward", "stall-after-forward", "reset-after-forward", "body-after-forward",
         "trickle", "answer")
STATUS_TEXT = {401: "Unauthorized", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
GATEWAY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>" \
               b"</center><hr><center>nginx</center></body></html>"


@dataclass
class Fault:
    mode: str
    method: str
    path: str  # a prefix of the request's path, query string left out
    times: int  # how many matching requests it hits
    status: int = 500
    stall_s: float = 10.0
    trickle_s: float = 1.0
    body: bytes = b""
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.hits < self.times and method == self.method and path.split("?")[0] == self.path


@dataclass
class Exchange:
    method: str
    path: str
    fault: str  # the mode applied, "" for none


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._running = True
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, mode: str, method: str, path: str, times: int = 1, **settings: Any) -> Fault:
        assert mode in MODES, mode
        fault = Fault(mode, method, path, times, **settings)
        with self._lock:
            self.faults.append(fault)
        return fault

    def applied(self, mode: str) -> int:
        with self._lock:
            return sum(e.fault == mode for e in self.exchanges)

    def close(self) -> None:
        self._running = False
        self._listener.close()

    # -- the proxy -------------------------------------------------------------

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
            self.exchanges.append(Exchange(method, path, fault.mode if fault else ""))
            return fault

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        try:
            while True:
                request = read_request(reader)
                if request is None:
                    return
                head, body = request
                method, path = head.split(b" ", 2)[:2]
                fault = self._fault_for(method.decode(), path.decode())
                if fault is not None and fault.mode == "answer":
                    client.sendall(plain_answer(fault.status, b'{"message":"refused by the fault proxy"}'))
                    continue
                answer = self._forward(head, body)
                if not self._answer(client, answer, fault):
                    return
        except OSError:
            pass
        finally:
            client.close()

    def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        with socket.create_connection(self.upstream) as upstream:
            upstream.sendall(b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n" + body)
            chunks = []
            while chunk := upstream.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, client: socket.socket, answer: bytes, fault: Fault | None) -> bool:
        """Send SciCat's answer as the fault has it; False when the client's connection is done."""
        mode = fault.mode if fault else ""
        if mode == "502-after-forward":
            client.sendall(plain_answer(502, GATEWAY_PAGE, b"text/html"))
        elif mode == "stall-after-forward":
            time.sleep(fault.stall_s)
            return False
        elif mode == "reset-after-forward":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif mode == "body-after-forward":
            status_line = answer.split(b"\r\n", 1)[0]
            client.sendall(status_line + f"\r\nContent-Length: {len(fault.body)}\r\n\r\n".encode() + fault.body)
        elif mode == "trickle":
            for i in range(len(answer)):
                client.sendall(answer[i:i + 1])
                time.sleep(fault.trickle_s)
            return False
        else:
            client.sendall(answer)
        # The stand-in answers with a Content-Length and "Connection: close" to us, which is
        # passed on; the client then opens a new connection for the next request.
        return b"\r\nconnection: close" not in answer.split(b"\r\n\r\n", 1)[0].lower()


def read_request(reader) -> tuple[bytes, bytes] | None:
    """One HTTP request (head without its blank line, body by Content-Length); None at EOF."""
    lines = []
    while True:
        line = reader.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line.rstrip(b"\r\n"))
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return b"\r\n".join(lines), reader.read(length) if length else b""


def plain_answer(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\n".encode()
            + b"Content-Type: " + content_type + b"\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
