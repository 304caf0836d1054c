"""Delivery never blocks approvals: hanging and failing endpoints are bounded, retried, recorded,
and shown by ``bastion approvals show``; a full queue drops instead of waiting."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson
from notify_fakes import BrokerEnv, Receiver, fake_token, open_broker, write_secret

from bastion.notify import NotifierHub, make_notifier, parse_notify_config
from bastion.notify.store import load_deliveries


def _webhook_hub(tmp_path: Path, url: str, **block: object) -> NotifierHub:
    write_secret(tmp_path / "hook", fake_token("whs"))
    specs = parse_notify_config(
        {"notify": [{"type": "webhook", "url": url, "secret_file": "hook", **block}]}, tmp_path
    )
    return NotifierHub([make_notifier(s) for s in specs], backoff=0.05, sweep_interval=0.1)


async def _delivery_state(env: BrokerEnv, request_id: str, want: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = await load_deliveries(env.broker.db.conn, request_id)
        if rows and rows[0].state == want:
            return rows[0].error
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery never reached {want}: {rows}")


async def test_hanging_endpoint_does_not_delay_submit_or_decide(
    tmp_path: Path, env: BrokerEnv
) -> None:
    """With a webhook that never answers, submit and decide stay fast; the attempt times out."""
    hanging = Receiver(hang=True)
    await hanging.start()
    hub = _webhook_hub(tmp_path, hanging.url + "/hook", timeout="1s", retries=0)
    await hub.start(env.broker)
    try:
        await env.enrol("alice", groups=["sre"])
        started = time.monotonic()
        request = await env.submit()
        await hanging.wait(1)  # the POST is in flight and hanging
        await env.broker.decide(request.id, operator="alice", totp=env.code("alice"), approve=True)
        assert (await env.broker.wait(request.id)).state == "approved"
        assert time.monotonic() - started < 0.9  # less than one notifier timeout
        error = await _delivery_state(env, request.id, "failed")
        assert error == "no answer within 1s"
    finally:
        await hub.stop()
        await hanging.stop()


async def test_failing_endpoint_is_retried_then_marked_failed(
    tmp_path: Path, env: BrokerEnv
) -> None:
    """An endpoint answering 500 is tried 1 + retries times with backoff, then recorded failed."""
    failing = Receiver(status=500)
    await failing.start()
    hub = _webhook_hub(tmp_path, failing.url + "/hook", retries=2)
    await hub.start(env.broker)
    try:
        request = await env.submit()
        error = await _delivery_state(env, request.id, "failed")
        assert error == "webhook answered HTTP 500"
        assert len(failing.posts) == 3
        (row,) = await load_deliveries(env.broker.db.conn, request.id)
        assert row.attempts == 3
    finally:
        await hub.stop()
        await failing.stop()


async def test_failed_notifier_shows_in_approvals_show(tmp_path: Path) -> None:
    """`bastion approvals show ID` (another process) lists the failed delivery and its error."""
    config = tmp_path / "bastion.toml"
    ca_pub = tmp_path / "ca.pub"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ca_pub.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    config.write_text(
        '[server]\nstate_dir = "state"\n[auth]\ntrusted_user_ca_keys = ["ca.pub"]\n'
        '[http]\npublic_url = "https://bastion.test"\n'
    )
    env = await open_broker(tmp_path / "state" / "bastion.db")
    failing = Receiver(status=503)
    await failing.start()
    hub = _webhook_hub(tmp_path, failing.url + "/hook", retries=0, name="pager")
    await hub.start(env.broker)
    try:
        request = await env.submit()
        await _delivery_state(env, request.id, "failed")
        for extra in ((), ("--json",)):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bastion.cli", "approvals", "show", request.id,
                "--config", str(config), *extra,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err
            if extra:
                (note,) = orjson.loads(out)["notifications"]
                assert (note["notifier"], note["state"], note["error"]) == (
                    "pager", "failed", "webhook answered HTTP 503"
                )  # fmt: skip
            else:
                assert (
                    "notifications:\n  - pager approval.requested: failed after 1 attempt(s) "
                    "(webhook answered HTTP 503)"
                ) in out.decode()
    finally:
        await hub.stop()
        await failing.stop()
        await env.audit.close()


async def test_full_queue_drops_instead_of_blocking(tmp_path: Path, env: BrokerEnv) -> None:
    """With a queue of 1 and a hanging endpoint, further submits still return at once."""
    hanging = Receiver(hang=True)
    await hanging.start()
    hub = _webhook_hub(tmp_path, hanging.url + "/hook", timeout="30s", retries=0)
    hub.queue_size = 1
    hub._intake = asyncio.Queue(1)
    await hub.start(env.broker)
    try:
        started = time.monotonic()
        for i in range(6):
            await env.submit(command=f"az group delete -n rg{i} --yes",
                             units=(("az", "group", "delete", "-n", f"rg{i}"),))  # fmt: skip
        assert time.monotonic() - started < 2.0
        await hanging.wait(1)
        await asyncio.sleep(0.3)
        states = [
            d.state
            for r in await env.broker.list(limit=10)
            for d in await load_deliveries(env.broker.db.conn, r.id)
        ]
        assert "dropped" in states
    finally:
        await hub.stop()
        await hanging.stop()
