"""A loopback TCP proxy in front of a target, to break the network on purpose.

``cut()`` resets every open connection (SO_LINGER 0: an RST each way, as a dropped route or a
rebooted peer looks); ``retarget(port)`` sends new connections somewhere else (a target whose
host key changed). It listens on 127.0.0.1 and stops in ``close()``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self.errors: list[str] = []  # why a connection could not be forwarded
        self.log: list[str] = []  # one line per forwarded connection (for failure messages)
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def retarget(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError as exc:
                self.errors.append(f"connect to port {self.upstream_port}: {exc}")
                client.close()  # the target is down: so is the proxy's side
                continue
            self.accepted += 1
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream, self.upstream_port),
                name="tcp-proxy-pump", daemon=True,
            ).start()  # fmt: skip

    def _pump(self, a: socket.socket, b: socket.socket, port: int) -> None:
        peer = {a: b, b: a}
        moved = {a: 0, b: 0}
        how = "closed by the proxy"
        # epoll, not select(): the test process may hold more than 1024 descriptors.
        watch = selectors.DefaultSelector()
        try:
            watch.register(a, selectors.EVENT_READ)
            watch.register(b, selectors.EVENT_READ)
            while True:
                ready = watch.select(1.0)
                if self._closed or a.fileno() < 0 or b.fileno() < 0:
                    return
                for key, _ in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        how = f"EOF from {'agent side' if sock is a else 'target side'}"
                        return
                    peer[sock].sendall(data)
                    moved[sock] += len(data)
        except (OSError, ValueError) as exc:
            how = f"{type(exc).__name__}: {exc}"
            return
        finally:
            self.log.append(f"to port {port}: {moved[a]} bytes in, {moved[b]} out, {how}")
            watch.close()
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
