"""Paths are canonical before they are classified, and the shipped classes cover each family
of key, credential, start-up and persistence file, with near-misses left out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError
from bastion.policy import Policy, load_policy
from bastion.policy.paths import PathClassifier, canonical_forms, expand_braces, normalise

CLASSES = load_policy(Policy.default_path()).classifier
LOGIN = "azureuser"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("~/x/../.ssh/id_rsa", "~/.ssh/id_rsa"),
        ("/home/azureuser/../azureuser/.bashrc", "~/.bashrc"),
        ("/home/a/../b/.ssh", "/home/b/.ssh"),
        ("~/../../etc/shadow", "/etc/shadow"),
        ("~bob/.ssh/id_rsa", "/home/bob/.ssh/id_rsa"),
        ("~root/.ssh", "/root/.ssh"),
        ("~azureuser/.bashrc", "~/.bashrc"),
        ("//etc//shadow", "/etc/shadow"),
        ("/etc/shadow/.", "/etc/shadow"),
        ("~//.ssh//id_rsa", "~/.ssh/id_rsa"),
        ("././.env", ".env"),
        ("./a/./b/../.env", "a/.env"),
        ("a/../../x", "../x"),
        ("/proc/self/root/etc/shadow", "/etc/shadow"),
        ("/proc/1/root/../etc/shadow", "/etc/shadow"),
        ("/proc/thread-self/root/etc/passwd", "/etc/passwd"),
        ("/proc/self/task/7/root/etc/shadow", "/etc/shadow"),
        ("/proc/self/root/proc/self/root/root/.ssh/id_rsa", "/root/.ssh/id_rsa"),
        ("/proc/self/cwd/.env", ".env"),
        ("/proc/self/fd/3", "/dev/fd/3"),
        ("~+/src/app.py", "src/app.py"),
        ("/", "/"),
        ("", ""),
    ],
)
def test_normalise(raw: str, canonical: str) -> None:
    """Each spelling reduces to the one path the kernel would open."""
    assert normalise(raw, LOGIN) == canonical


def test_file_url_has_both_readings() -> None:
    """curl reads file:///etc/shadow as /etc/shadow; cat reads it as a relative file."""
    paths = [f.path for f in canonical_forms("file:///etc/shadow", LOGIN)]
    assert paths == ["file:/etc/shadow", "/etc/shadow"]
    assert "/etc/shadow" in [f.path for f in canonical_forms("FILE://localhost/etc/%73hadow")]
    assert "/etc/shadow" in [f.path for f in canonical_forms("file:/etc/shadow?x#y")]


def test_another_home_inherits_home_classes_but_not_workspace() -> None:
    """/home/bob/.bashrc is a start-up file (of bob), not our workspace."""
    got = CLASSES.classify("/home/bob/.bashrc", LOGIN)
    assert "startup" in got and "workspace" not in got
    assert "workspace" in CLASSES.classify("~/notes.txt", LOGIN)
    assert "home" in CLASSES.classify("/home/bob", LOGIN)


SECRET = [
    # private keys by family
    "~/.ssh/id_rsa", "~/.ssh/id_ed25519", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_deploy",
    "~/.ssh/id_rsa.bak", "~/.ssh/github_ed25519", "~/.ssh/backup_rsa", "/etc/ssh/ssh_host_rsa_key",
    "/srv/keys/id_rsa", "keys/id_ed25519", "server.pem", "tls.key", "cert.p12", "cert.pfx",
    "store.jks", "app.keystore", "db.kdbx", "putty.ppk", "AuthKey_ABC.p8", "SERVER.PEM",
    "tests/fixtures/server.pem", "/etc/ssl/private/ssl-cert-snakeoil.key", "~/.gnupg/secring.gpg",
    "/etc/letsencrypt/live/example.com/privkey.pem", "cert-key.pem", "ca-key.pem", "haproxy.pem",
    # cloud and cluster credentials
    "~/.azure/msal_token_cache.json", "~/.azure", "~/.config/gcloud/credentials.db",
    "~/.config/gcloud/application_default_credentials.json", "~/.aws/credentials",
    "~/.kube/config", "~/.kube/staging", "/home/bob/.kube/config", "/etc/kubernetes/admin.conf",
    "/var/lib/waagent/ovf-env.xml", "~/.docker/config.json", "~/.vault-token",
    "~/.terraform.d/credentials.tfrc.json", "infra/prod.tfvars", "infra/terraform.tfstate",
    # developer tool tokens
    "~/.git-credentials", "~/.netrc", "~/.npmrc", "~/.pypirc", "~/.config/gh/hosts.yml",
    "~/.pgpass", "~/.cargo/credentials.toml",
    # dotenv
    ".env", ".env.local", ".env.production", "app/.env.staging", ".envrc",
    # system and process secrets
    "/etc/shadow", "/etc/gshadow", "/proc/1/environ", "/proc/self/environ",
    "/proc/thread-self/environ", "/proc/self/task/12/environ", "~/.bash_history",
    # canonical spellings of the above
    "~/x/../.ssh/id_rsa", "/proc/self/root/etc/shadow", "file:///home/azureuser/.ssh/id_rsa",
    "~bob/.ssh/id_rsa", "/root/.ssh/id_ed25519", "//etc//shadow", "/proc/self/cwd/.env",
    # a climbing relative path may reach /etc or a home: the cwd is not known here
    "../../etc/shadow", "../../../home/azureuser/.ssh/id_rsa", "/proc/1/cwd/../../etc/shadow",
    # container, cluster and CI-runner secrets
    "/var/run/secrets/kubernetes.io/serviceaccount/token", "/run/secrets/db_password",
    "rootfs/etc/shadow", "/proc/1/mem", "~/actions-runner/.credentials", "/etc/krb5.keytab",
    "vpn/client.ovpn", "/etc/wireguard/wg0.conf", "/etc/rancher/k3s/k3s.yaml", "~/.m2/settings.xml",
    "~/.config/rclone/rclone.conf", "~/.s3cfg",
]
NOT_SECRET = [
    "~/.ssh/id_rsa.pub", "~/.ssh/id_ed25519.pub", "~/.ssh/known_hosts", "~/.ssh/config",
    "src/keys.py", "docs/keys.md", "key_test.go", "docs/.env.example", ".env.sample",
    ".env.template", ".envrc.example", "/etc/ssl/certs/ISRG_Root_X1.pem",
    ".venv/lib/python3.11/site-packages/certifi/cacert.pem", "~/.kube/cache/discovery/x.json",
    "README.md", "environ.py", "/proc/1/status", "../README.md", "../../var/log/syslog",
    "~/.azure-pipelines.yml", "main.tf",
    "variables.tf", "ca.crt", "~/.bashrc", "pem/README", "rsa_test.py", "cert.pem",
    "/etc/letsencrypt/live/example.com/fullchain.pem", "chain.pem", "ca.pem", "ca-bundle.pem",
]


@pytest.mark.parametrize("path", SECRET)
def test_secret_family(path: str) -> None:
    assert "secret" in CLASSES.classify(path, LOGIN)


@pytest.mark.parametrize("path", NOT_SECRET)
def test_secret_near_miss(path: str) -> None:
    assert "secret" not in CLASSES.classify(path, LOGIN)


STARTUP = [
    "~/.bashrc", "~/.bash_aliases", "~/.bash_login", "~/.profile", "~/.zshenv", "~/.zlogin",
    "~/.vimrc", "~/.vim/plugin/x.vim", "~/.config/nvim/init.lua", "~/.config/git/config",
    "~/.gitconfig", ".git/config", "repo/.git/hooks/pre-commit", "~/.config/systemd/user/x.service",
    "~/.config/autostart/x.desktop", "~/.local/lib/python3.11/site-packages/evil.pth",
    ".venv/lib/python3.11/site-packages/x.pth", "/usr/lib/python3/dist-packages/sitecustomize.py",
    "usercustomize.py", "~/.ssh/rc", "~/.ssh/environment", "~/.ssh/authorized_keys", "~/.npmrc",
    "~/.pip/pip.conf", "~/.config/pip/pip.conf", "~/.curlrc", "~/.wgetrc", "~/.inputrc",
    "~/.tmux.conf", "/var/spool/cron/crontabs/azureuser", "/etc/cron.d/x", "/etc/crontab",
    "/etc/profile.d/x.sh", "/etc/ld.so.preload", "/etc/udev/rules.d/99-x.rules",
    "/etc/sudoers.d/x", "/etc/pam.d/sshd", "/etc/systemd/system/x.timer",
    "/etc/update-motd.d/99-x", "~/.config/fish/config.fish", "~/.pam_environment",
    "~/.xprofile", "~/.local/bin/git", "/home/bob/.bashrc", "/root/.profile", ".envrc",
    "/etc/apt/apt.conf.d/99x", "/proc/self/root/home/azureuser/.bashrc", "../.bashrc",
    "~/.lesskey", "~/.mailcap", "~/.bash_completion", "~/.gdbinit", "~/.cargo/config.toml",
    "/etc/environment.d/90-x.conf", "/etc/rc2.d/S99x", "/etc/bash_completion.d/x",
    "~/.cargo/bin/git", "~/go/bin/kubectl", "~/.nvm/versions/node/v20.1.0/bin/npm",
]
NOT_STARTUP = [
    "src/bashrc.py", "docs/vimrc.md", ".gitignore", ".github/workflows/ci.yml", "hooks/x.sh",
    "site-packages.txt", ".venv/lib/python3.11/site-packages/pkg/mod.py", "~/notes/.profile.md",
    "~/.cache/pip/x", "/tmp/.bashrc", "../README.md", "../../var/log/syslog",
]


@pytest.mark.parametrize("path", STARTUP)
def test_startup_family(path: str) -> None:
    assert "startup" in CLASSES.classify(path, LOGIN)


@pytest.mark.parametrize("path", NOT_STARTUP)
def test_startup_near_miss(path: str) -> None:
    assert "startup" not in CLASSES.classify(path, LOGIN)


@pytest.mark.parametrize(
    ("glob", "secret"),
    [("~/.ssh/id_*", True), ("~/.ssh/*.pub", False), ("~/.ssh/id_*.pub", False),
     (".env*", True), (".env.*", True), ("*.pem", True), ("certs/*.key", True),
     ("src/*.py", False), (".*", False), ("dist/*", False), ("~/.kube/*", True),
     ("config/*.json", False), ("*.tfstate", True), ("id_*", True),
     # the shell's leading-dot rule: a wildcard never expands to `.git-credentials` or `.env`
     ("*credentials*", False), (".*credentials*", True), ("*env", False), ("~/*/.env", True)],
)
def test_glob_arguments(glob: str, secret: bool) -> None:
    """A glob argument is secret when it can expand to a secret, unless every expansion is
    excluded (the public halves). Expansion follows bash (no dotglob): a component that starts
    with a wildcard never names a dotfile."""
    assert ("secret" in CLASSES.classify(glob, LOGIN)) is secret


def test_dirstack_tilde_is_dynamic() -> None:
    """~- is $OLDPWD and ~2 the directory stack: unknown to the gate."""
    assert "dynamic" in CLASSES.classify("~-/x", LOGIN)
    assert "dynamic" in CLASSES.classify("~2/x", LOGIN)


def test_braces_and_exclusions() -> None:
    """{a,b} expands to a family of globs; !glob takes paths out of the class again."""
    assert expand_braces("*.{pem,key}") == ["*.pem", "*.key"]
    assert expand_braces("~/.{a,b{c,d}}") == ["~/.a", "~/.bc", "~/.bd"]
    c = PathClassifier.build({"k": ["**/id_*", "!**/*.pub"]})
    assert c.classify("x/id_rsa") == frozenset({"k", "relative", "workspace"})
    assert "k" not in c.classify("x/id_rsa.pub")


def test_last_matching_entry_decides_after_an_exclusion() -> None:
    """As in .gitignore: a later glob takes an excluded path back into the class."""
    c = PathClassifier.build({"k": ["**/*.pem", "!**/*cert*.pem", "**/*key*.pem"]})
    assert "k" in c.classify("server.pem")
    assert "k" not in c.classify("cert.pem")
    assert "k" in c.classify("cert-key.pem")
    assert "k" in c.classify("*cert*.pem")  # could expand to cert-key.pem


def test_exclusion_with_question_mark_is_refused() -> None:
    """An exclusion with ? or [...] could exclude more than its author meant: a clear error."""
    with pytest.raises(ConfigError, match="exclusion"):
        PathClassifier.build({"k": ["**/*", "!**/*.pu?"]})


_parts = st.sampled_from(["a", "b", ".ssh", "id_rsa", "home", "azureuser", "etc", "shadow",
                          "proc", "self", "1", "root", "cwd", ".", "..", ""])
_paths = st.tuples(st.sampled_from(["", "/", "~/", "~bob/"]),
                   st.lists(_parts, min_size=0, max_size=8)).map(lambda t: t[0] + "/".join(t[1]))


@settings(max_examples=300, deadline=None)
@given(_paths)
def test_normalise_is_idempotent(path: str) -> None:
    """A canonical path is its own canonical form."""
    once = normalise(path, LOGIN)
    assert normalise(once, LOGIN) == once


@settings(max_examples=300, deadline=None)
@given(_paths, st.sampled_from(["./", "/", "x/../"]), st.integers(min_value=0, max_value=8))
def test_noise_components_do_not_change_the_reading(path: str, noise: str, at: int) -> None:
    """Inserting `./`, an empty component or `x/..` after a separator changes nothing."""
    cuts = [i + 1 for i, c in enumerate(path) if c == "/"]
    if not cuts:
        return
    i = cuts[at % len(cuts)]
    assert normalise(path[:i] + noise + path[i:], LOGIN) == normalise(path, LOGIN)
