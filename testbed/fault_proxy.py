"""A TCP proxy on loopback in front of one of our servers (the kube-apiserver fixture, moto's S3 server), for the
deploy-fault tests: the engine is pointed at the proxy, and the test takes the service away mid-`up` without
touching the server itself (the API server fixture is shared by the whole session).

- `down()`: every open connection is cut (RST) and the port refuses new ones, as when the server's process is
  gone or restarting; `up()` listens on the same port again, so the same URL works once the service is back.
- `hold()`: requests still reach the server, its answers do not come back: a create the server applied whose
  caller never hears of it, the state an update is in when it is killed mid-way.
- `hold_after(pattern)`: the same, from the moment a request whose bytes match `pattern` has been passed on
  (plain HTTP only: the S3 endpoint's CreateBucket).
- `slow(seconds)`: every chunk of the server's answers waits that long, so that requests are in flight at any
  moment of an update (a busy API server).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time


class Proxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._released = threading.Event()
        self._released.set()
        self._trigger: re.Pattern[bytes] | None = None
        self.triggered = threading.Event()
        self.port = 0
        self.accepted = 0
        self.delay = 0.0

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    up = start

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            _reset(conn)
        self._released.set()

    stop = down

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._trigger = None
        self.delay = 0.0
        self._released.set()

    def resume(self) -> None:
        """Let the held answers through; a `hold_after` stays armed."""
        self._released.set()

    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def hold_after(self, pattern: bytes) -> None:
        self.triggered.clear()
        self._trigger = re.compile(pattern)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _reset(client)
                    _reset(server)
                    return
                self._connections |= {client, server}
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not upstream:
                    if self.delay:
                        time.sleep(self.delay)
                    self._released.wait()
                    with self._lock:
                        if sink not in self._connections:
                            break
                sink.sendall(data)
                if upstream and self._trigger is not None and self._trigger.search(data):
                    self._trigger = None
                    self._released.clear()
                    self.triggered.set()
        except OSError:
            pass
        finally:
            with self._lock:
                gone = {source, sink} & self._connections
                self._connections -= gone
            for conn in gone:
                _close(conn)


def _reset(conn: socket.socket) -> None:
    """Close with RST, as a dead peer's kernel answers (SHUT_RD wakes our own thread reading it, sending nothing)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    conn.close()


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
