"""What the load's agents do, and the operator who approves their held commands.

Each agent has its own certificate (key ID ``load-aNNN``) and runs a fixed plan of exec
commands over a few SSH connections: allowed ones (one printing a generated GitHub-shaped
token that must come back masked), denied ones and held ones that wait for the auto-approver.
Some agents also open a PTY shell (line-gated by the bastion) and type an allowed, a denied and
a held line. Every command carries a unique tag so the audit rows can be matched to it.

Anything that differs from the plan (status, output, a missing hold line, a leaked secret, an
exception) is an *unexpected error* with a one-line description.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sqlite3
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncssh
import pyotp

HELD = re.compile(rb"held for review as ([0-9A-Z-]{19}) ")
PROMPT = re.compile(rb"\$ (?:\x1b\[K)?$")
CSRF = re.compile(r"name='csrf' value='([^']+)'")
COOKIE = "bastion_csrf"
EXIT_DENIED = 126
TOTP_STEP = 30


def fake_github_token() -> str:
    """A generated value shaped like a GitHub token (not a credential)."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


@dataclass(frozen=True)
class Step:
    """One command of an agent's plan and what must come of it."""

    tag: str  # unique in the run: the audit row for this command contains it
    line: str
    decision: str  # allow / deny / review: what the audit row must say
    expect_out: str  # text stdout must contain ("" for deny)
    secret: str | None = None  # a value that must not come back unmasked
    shell: bool = False  # typed into a PTY shell rather than sent as an exec command


def plan(agent: int, commands: int, token: str) -> list[Step]:
    """A fixed mix; of 20: 2 held, 5 denied, 13 allowed (two print the generated token)."""
    steps = []
    for i in range(commands):
        tag = f"a{agent:03d}c{i:02d}"
        kind = i % 10
        if kind == 4:
            steps.append(Step(tag, f"az group delete -n rg-{tag} --yes; echo approved-{tag}",
                              "review", f"approved-{tag}"))  # fmt: skip
        elif kind in (2, 7) or i == commands - 1:
            steps.append(Step(tag, f"rm -rf /etc/load-{tag}", "deny", ""))
        elif kind == 5:
            steps.append(Step(tag, f"echo {token} {tag}", "allow", tag, secret=token))
        elif kind == 8:
            steps.append(Step(tag, f"seq 1 {agent * 100 + i} | wc -l; echo {tag}", "allow",
                              f"{agent * 100 + i}\n{tag}"))  # fmt: skip
        else:
            steps.append(Step(tag, f"echo load-{tag}", "allow", f"load-{tag}"))
    return steps


def shell_plan(agent: int) -> list[Step]:
    tag = f"a{agent:03d}s"
    return [
        Step(f"{tag}0", f"echo shell-{tag}0", "allow", f"\nshell-{tag}0", shell=True),
        Step(f"{tag}1", f"rm -rf /etc/load-{tag}1", "deny", "denied by policy", shell=True),
        Step(f"{tag}2", f"az group delete -n rg-{tag}2 --yes; echo approved-{tag}2", "review",
             f"\napproved-{tag}2", shell=True),
    ]  # fmt: skip


@dataclass
class Tally:
    """What the run did and what went wrong."""

    connections: int = 0
    exec_sessions: int = 0
    shell_sessions: int = 0
    commands: dict[str, int] = field(default_factory=lambda: {"allow": 0, "deny": 0, "review": 0})
    errors: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)  # every command sent (exec and shell)
    approvals: int = 0

    def error(self, what: str) -> None:
        self.errors.append(what)


class Approver:
    """A test operator on the bastion's approval page: GET the page (CSRF cookie and token),
    POST approve with the current TOTP code. A code counts once per operator and time step,
    so a pool of operators shares the work; when all have decided in this step, wait."""

    def __init__(
        self,
        base_url: str,
        operators: dict[str, str],
        tally: Tally,
        db_path: Path | None = None,
    ) -> None:
        self.base_url = base_url
        self.db_path = db_path  # where the operator link's key is (see operator_token)
        self.tally = tally
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.totp = {name: pyotp.TOTP(secret) for name, secret in operators.items()}
        self.last_step = dict.fromkeys(operators, -1)
        self.lock = asyncio.Lock()

    def submit(self, request_id: str) -> None:
        self.queue.put_nowait(request_id)

    async def _operator(self) -> tuple[str, str]:
        """An operator with an unspent code for now (or the next step), and that code."""
        while True:
            async with self.lock:
                now = int(time.time()) // TOTP_STEP
                for name, last in self.last_step.items():
                    step = max(last + 1, now)
                    if step <= now + 1:  # the bastion accepts now ± 1 step
                        self.last_step[name] = step
                        return name, self.totp[name].at(step * TOTP_STEP)
            await asyncio.sleep(1.0)

    async def _approve(self, http: aiohttp.ClientSession, request_id: str) -> None:
        """GET the page (its CSRF cookie and token), POST approve with a fresh code. Each
        approval keeps its own cookie, as separate browser tabs would; retried a few times."""
        url = f"{self.base_url}/approvals/{request_id}"
        link = ""
        if self.db_path is not None:  # the page decides only from the signed operator link
            link = await asyncio.to_thread(operator_token, self.db_path, request_id)
            url += f"?op={link}"
        problem = ""
        for _attempt in range(5):
            async with http.get(url) as page:
                html = await page.text()
                cookie = page.cookies.get(COOKIE)
            token = CSRF.search(html)
            if page.status != 200 or token is None or cookie is None:
                problem = f"page HTTP {page.status}, token {token is not None}, cookie {cookie}"
                await asyncio.sleep(1.0)
                continue
            name, code = await self._operator()
            form = {"csrf": token.group(1), "operator": name, "totp": code, "op": link,
                    "action": "approve", "reason": "load test"}  # fmt: skip
            headers = {"Cookie": f"{COOKIE}={cookie.value}"}
            async with http.post(url, data=form, headers=headers, allow_redirects=False) as done:
                body = await done.text()
            if done.status == 303:
                self.tally.approvals += 1
                return
            problem = f"HTTP {done.status}: {_alert(body)}"
            if "already" in body and "approved" in body:
                break
        self.tally.error(f"approve {request_id}: {problem}")

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        jar = aiohttp.DummyCookieJar()  # cookies are handled per approval in _approve
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
            pending: set[asyncio.Task[None]] = set()
            while not (stop.is_set() and self.queue.empty()):
                try:
                    request_id = await asyncio.wait_for(self.queue.get(), 0.5)
                except TimeoutError:
                    continue
                task = asyncio.create_task(self._approve(http, request_id))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)


def operator_token(db_path: Path, request_id: str) -> str:
    """What the operator link of a chat notice carries: the load's approver plays an operator
    who received it (the agent only ever sees the status link, which cannot decide)."""
    from bastion.approval.broker import sign_operator_link

    uri = f"file:{db_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=15)) as conn:
        key = conn.execute("SELECT key FROM approval_keys WHERE name = 'link'").fetchone()[0]
        row = conn.execute(
            "SELECT expires_at FROM approval_requests WHERE id = ?", (request_id,)
        ).fetchone()
    return sign_operator_link(bytes(key), request_id, float(row[0]))


def _alert(html: str) -> str:
    found = re.search(r"role='alert'[^>]*>([^<]*)<", html)
    return found.group(1) if found else html[:200].replace("\n", " ")


@dataclass
class Identity:
    key_id: str
    keys: list[tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]]


def make_identity(ca: asyncssh.SSHKey, index: int) -> Identity:
    """A fresh ed25519 key and a 12-hour certificate for principal ``agents``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_id = f"load-a{index:03d}"
    now = int(time.time())
    cert = ca.generate_user_certificate(
        key, key_id, principals=["agents"], serial=10_000 + index,
        valid_after=now - 300, valid_before=now + 12 * 3600,
    )  # fmt: skip
    return Identity(key_id, [(key, cert)])


class AgentRun:
    """One agent: its connections, exec commands and (maybe) a PTY shell."""

    def __init__(
        self,
        index: int,
        identity: Identity,
        connect: Callable[[Identity], object],
        approver: Approver,
        tally: Tally,
        commands: int,
        connections: int,
        shell: bool,
    ) -> None:
        self.index = index
        self.identity = identity
        self.connect = connect
        self.approver = approver
        self.tally = tally
        self.steps = plan(index, commands, fake_github_token())
        self.connections = max(1, min(connections, commands))
        self.shell = shell

    async def run(self) -> None:
        per = -(-len(self.steps) // self.connections)
        for start in range(0, len(self.steps), per):
            await self._connection(self.steps[start : start + per])
        if self.shell:
            await self._shell()

    async def _open(self) -> asyncssh.SSHClientConnection:
        conn = await self.connect(self.identity)  # type: ignore[misc]
        self.tally.connections += 1
        return conn  # type: ignore[no-any-return]

    async def _connection(self, steps: list[Step]) -> None:
        try:
            conn = await self._open()
        except (OSError, asyncssh.Error) as exc:
            self.tally.error(f"{self.identity.key_id}: connect: {exc}")
            return
        try:
            for step in steps:
                await self._exec(conn, step)
        finally:
            conn.close()
            await conn.wait_closed()

    async def _exec(self, conn: asyncssh.SSHClientConnection, step: Step) -> None:
        self.tally.steps.append(step)
        who = f"{self.identity.key_id} {step.tag}"
        try:
            proc = await conn.create_process(step.line, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            self.tally.error(f"{who}: open channel: {exc}")
            return
        self.tally.exec_sessions += 1
        held: list[str] = []

        async def stderr() -> bytes:
            seen = b""
            while chunk := await proc.stderr.read(4096):
                seen += chunk
                found = HELD.search(seen)
                if found and not held:
                    held.append(found.group(1).decode())
                    self.approver.submit(held[0])
            return seen

        try:
            out, err = await asyncio.gather(proc.stdout.read(), stderr())
            await proc.wait_closed()
        except (OSError, asyncssh.Error) as exc:
            self.tally.error(f"{who}: {exc}")
            return
        self._check(who, step, out, err, proc.exit_status, held)

    def _check(
        self, who: str, step: Step, out: bytes, err: bytes, status: int | None, held: list[str]
    ) -> None:
        self.tally.commands[step.decision] += 1
        text = out.decode(errors="replace")
        problems = []
        if step.decision == "deny":
            if status != EXIT_DENIED or b"denied by policy" not in err or out:
                problems.append(f"not denied (exit {status})")
        else:
            if status != 0:
                problems.append(f"exit {status}")
            if step.expect_out not in text:
                problems.append(f"output {text[-120:]!r}")
            if step.decision == "review" and not held:
                problems.append("no hold line")
        if step.secret and step.secret in text:
            problems.append("secret not masked")
        if problems:
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self.tally.error(f"{who}: {', '.join(problems)}; stderr: {detail[0][:200]}")

    async def _shell(self) -> None:
        who = f"{self.identity.key_id} shell"
        try:
            conn = await self._open()
        except (OSError, asyncssh.Error) as exc:
            self.tally.error(f"{who}: connect: {exc}")
            return
        try:
            proc = await conn.create_process(term_type="xterm", term_size=(160, 40), encoding=None)
            self.tally.shell_sessions += 1
            term = Term(proc)
            await term.read_until(PROMPT)
            for step in shell_plan(self.index):
                self.tally.steps.append(step)
                self.tally.commands[step.decision] += 1
                mark = term.type(step.line.encode() + b"\r")
                if step.decision == "review":
                    seen = await term.read_until(HELD, start=mark)
                    found = HELD.search(seen)
                    assert found is not None
                    self.approver.submit(found.group(1).decode())
                out = await term.read_until(PROMPT, start=mark + len(step.line) + 1)
                if step.expect_out.encode() not in out:
                    self.tally.error(f"{who} {step.tag}: got {out[-160:]!r}")
            term.type(b"exit\r")
            await term.rest()
            await proc.wait_closed()
        except (OSError, asyncssh.Error, TimeoutError, EOFError) as exc:
            self.tally.error(f"{who}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
            await conn.wait_closed()


class Term:
    """A PTY channel's output transcript, read until a pattern (bounded in time)."""

    def __init__(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        self.proc = proc
        self.out = b""

    def type(self, data: bytes) -> int:
        mark = len(self.out)
        self.proc.stdin.write(data)
        return mark

    async def read_until(self, pattern: re.Pattern[bytes], start: int = 0) -> bytes:
        async def loop() -> bytes:
            while not pattern.search(self.out[start:]):
                chunk = await self.proc.stdout.read(65536)
                if not chunk:
                    raise EOFError(f"channel closed; output so far: {self.out[-300:]!r}")
                self.out += chunk
            return self.out[start:]

        try:
            return await asyncio.wait_for(loop(), 600)
        except TimeoutError:
            raise TimeoutError(f"no {pattern.pattern!r}; got {self.out[-300:]!r}") from None

    async def rest(self) -> None:
        async def drain() -> None:
            while chunk := await self.proc.stdout.read(65536):
                self.out += chunk

        await asyncio.wait_for(drain(), 60)
