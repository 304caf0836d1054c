"""Cost of the exec floors (bastion.interactive.execguard) next to the policy decision.

The gate runs ``exec_floor`` after ``policy.decide`` on every exec command; this prints both
per line, with and without a PTY, for everyday lines and a 47 KB argument list.

    .venv/bin/python bench/bench_execguard.py
"""

from __future__ import annotations

import time

from bastion.interactive.execguard import ExecContext, exec_floor
from bastion.policy import Context, load_policy
from bastion.policy.engine import DEFAULT_POLICY_PATH

FILES = " ".join(f"src/file{i}.py" for i in range(3000))
LINES = [
    "git log --oneline -20",
    "sudo git commit -m x",
    "ls -la /var/log | grep nginx",
    "PAGER=cat git log",
    f"git add {FILES}",
    f"sudo git add {FILES}",
]


def per_call(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n


def main() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    ctx = Context(principals=("agents",), target="web-01", login="azureuser", channel="exec")
    for line in LINES:
        argvs = [u.argv for u in policy.decide(line, ctx).units]
        n = 300 if len(line) < 1000 else 10
        for pty in (False, True):
            ectx = ExecContext(pty=pty)
            floor = per_call(lambda: exec_floor(line, argvs, ectx), n)  # noqa: B023
            decide = per_call(lambda: policy.decide(line, ctx), n)  # noqa: B023
            print(f"{line[:28]:30} pty={pty!s:5} floor {floor * 1e6:8.1f} us"
                  f"  decide {decide * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
