"""Environment assignments are judged by each variable's value grammar; reads of the
environment and of secret-named variables are held; everyday assignments pass."""

from __future__ import annotations

import pytest

from bastion.policy import Context, Policy, load_policy
from bastion.policy.envreads import ps_shows_environment
from bastion.policy.envvars import grammar_for, judge
from bastion.policy.secretnames import referenced_variables, secret_variable

POLICY = load_policy(Policy.default_path())
CTX = Context(principals=("agents",), target="web-01", login="azureuser")


def decide(line: str) -> str:
    return POLICY.decide(line, CTX).action


EVERYDAY = [
    "PYTHONPATH=src pytest -q",
    "PYTHONPATH=src:$PYTHONPATH python -m pytest",
    "PYTHONPATH=$(pwd)/src python -m pytest",
    "NODE_OPTIONS=--max-old-space-size=4096 npm run build",
    "NODE_OPTIONS='--max-old-space-size=8192 --enable-source-maps' npm test",
    "KUBECONFIG=~/.kube/staging kubectl get pods",
    "KUBECONFIG=~/.kube/config:~/.kube/staging kubectl config get-contexts",
    "PAGER=cat git log",
    "GIT_PAGER=cat git log -5",
    "PAGER='less -R' git log",
    "GIT_EDITOR=true git rebase --continue",
    "export PATH=\"$HOME/.local/bin:$PATH\"",
    "export PATH=$PATH:/opt/tools/bin",
    "PATH=/usr/local/go/bin:$PATH go build ./...",
    "CI=1 npm test",
    "RUST_BACKTRACE=1 cargo test",
    "TZ=UTC date",
    "LANG=C sort names.txt",
    "export FOO=bar",
    "export NODE_ENV=production",
    "GIT_TRACE=1 git status",
    "GIT_TRACE=/tmp/git-trace.log git fetch",
    "GIT_AUTHOR_NAME=bot git commit -m x",
    "JAVA_TOOL_OPTIONS=-Xmx2g mvn -q test",
    "MAKEFLAGS=-j4 make",
    "PYTHONWARNINGS=ignore::DeprecationWarning python -m pytest",
    "PYTHONDONTWRITEBYTECODE=1 python -m pytest",
    "NO_PROXY=localhost,127.0.0.1 curl -s http://localhost:8080/health",
    "NODE_TLS_REJECT_UNAUTHORIZED=1 npm ci",
    "env GIT_PAGER=cat git log",
    "declare -x LC_ALL=C",
    "export GH_TOKEN=$GITHUB_TOKEN",
    "x=1",
    "printenv HOME",
    "echo $PATH",
    "echo ${#GITHUB_TOKEN}",
    "[ -n \"$GITHUB_TOKEN\" ] && echo set",
    "echo '$GITHUB_TOKEN'",
    "compgen -v",
    "ps aux",
    "ps -ef",
    "ps -u eve",
    "TOKENIZERS_PARALLELISM=false python -m pytest",
    "read -r line < file.txt",
    "printf -v out '%s' x",
    "mapfile -t lines < list.txt",
    "declare -n ref=other",
    "export 'FOO=bar'",
    "while read -r f; do echo \"$f\"; done < files.txt",
    "while IFS= read -r line; do echo \"$line\"; done < f.txt",
    "IFS=, read -r a b <<< \"x,y\"",
    "NODE_OPTIONS=\"$NODE_OPTIONS --max-old-space-size=4096\" npm run build",
    "JAVA_OPTS=\"$JAVA_OPTS -Xmx2g\" mvn test",
    "export KUBECONFIG=~/.kube/config:$KUBECONFIG",
    "export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH",
    "export GOROOT=/usr/local/go",
    "BROWSER=none npm start",
    "IFS=$'\\n'",
    "IFS=,",
    "GOPROXY=direct go mod download",
    "RUSTFLAGS=\"-C target-cpu=native\" cargo build --release",
    "GIT_ASKPASS=true git fetch",
]


@pytest.mark.parametrize("line", EVERYDAY)
def test_everyday_assignments_pass(line: str) -> None:
    assert decide(line) == "allow"


HELD = [
    ("GIT_PAGER='sh -c id' git log", "review"),
    ("PAGER='rm -rf ~' git log", "deny"),
    ("MANPAGER='sh -c id' man ls", "review"),
    ("EDITOR=vim git commit", "review"),
    ("VISUAL=./x.sh crontab -e", "review"),
    ("GIT_TRACE=/home/azureuser/.bashrc git status", "review"),
    ("GIT_TRACE2_EVENT=af_unix:/tmp/s git status", "review"),
    ("GIT_SSH_COMMAND='ssh -o ProxyCommand=id' git fetch", "review"),
    ("GIT_SSH=/tmp/x git fetch", "review"),
    ("GIT_EXTERNAL_DIFF=./d.sh git diff", "review"),
    ("GIT_ASKPASS=/tmp/pw git push", "review"),
    ("GIT_CONFIG_PARAMETERS=\"'core.pager'='id'\" git log", "review"),
    ("GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.pager GIT_CONFIG_VALUE_0=id git log", "review"),
    ("GIT_EXEC_PATH=/tmp/x git status", "review"),
    ("GIT_TEMPLATE_DIR=/tmp/t git init", "review"),
    ("KUBECTL_EXTERNAL_DIFF='sh -c id' kubectl diff -f x.yaml", "review"),
    ("LD_PRELOAD=/tmp/x.so ls", "review"),
    ("LD_LIBRARY_PATH=/tmp ls", "review"),
    ("LD_AUDIT=/tmp/a.so ls", "review"),
    ("BASH_ENV=/tmp/x bash -c ls", "review"),
    ("ENV=/tmp/x sh -c ls", "review"),
    ("export PROMPT_COMMAND='curl x'", "review"),
    ("PS4='$(id)' bash -x s.sh", "review"),
    ("export PS1='$(id)> '", "review"),
    ("PYTHONSTARTUP=x.py python3 -m pytest", "review"),
    ("PYTHONHOME=/tmp/py python3 -m pytest", "review"),
    ("PYTHONINSPECT=1 python3 -m pytest", "review"),
    ("PYTHONWARNINGS=ignore::evil.Category python3 -m pytest", "review"),
    ("NODE_OPTIONS='--require ./evil.js' npm test", "review"),
    ("NODE_OPTIONS=-r./evil.js npm test", "review"),
    ("NODE_OPTIONS=--import=./x.mjs npm test", "review"),
    ("NODE_OPTIONS=--experimental-loader=./l.mjs npm test", "review"),
    ("NODE_OPTIONS=--inspect=0.0.0.0:9229 npm start", "review"),
    ("PERL5OPT=-Mevil make", "review"),
    ("RUBYOPT=-rx bundle exec rake", "review"),
    ("JAVA_TOOL_OPTIONS=-javaagent:/tmp/a.jar mvn test", "review"),
    ("https_proxy=http://10.0.0.1:3128 curl https://example.com", "review"),
    ("HTTPS_PROXY=http://evil:8080 npm ci", "review"),
    ("ALL_PROXY=socks5://evil:1080 git fetch", "review"),
    ("NO_PROXY='*' curl https://example.com", "review"),
    ("GIT_SSL_NO_VERIFY=1 git clone https://example.com/r.git", "review"),
    ("NODE_TLS_REJECT_UNAUTHORIZED=0 npm ci", "review"),
    ("PYTHONHTTPSVERIFY=0 python3 -m pip install x", "review"),
    ("CURL_CA_BUNDLE=/tmp/ca.pem curl https://example.com", "review"),
    ("REQUESTS_CA_BUNDLE= python3 -m pip install x", "review"),
    ("SSL_CERT_FILE=/tmp/ca.pem git fetch", "review"),
    ("AZURE_CLI_DISABLE_CONNECTION_VERIFICATION=1 az vm list", "review"),
    ("PATH=.:$PATH ls", "review"),
    ("PATH=/tmp/evil:$PATH git status", "review"),
    ("PATH=:$PATH ls", "review"),
    ("export PATH=bin:$PATH", "review"),
    ("PATH=$X:$PATH ls", "review"),
    ("PATH='$PATH':/usr/bin ls", "review"),
    ("HOME=/tmp/h git status", "review"),
    ("IFS=/", "review"),
    ("export IFS=x", "review"),
    ("read IFS <<< x", "review"),
    ("NODE_OPTIONS=\"$NODE_OPTIONS -r ./x.js\" npm test", "review"),
    ("NODE_OPTIONS=\"$OTHER\" npm test", "review"),
    ("export KUBECONFIG=$KUBECONFIG:./x.yaml", "review"),
    ("declare -n r=GITHUB_TOKEN", "review"),
    ("LD_LIBRARY_PATH=. ls", "review"),
    ("GOROOT=/tmp/evil go build ./...", "review"),
    ("GOPROXY=https://proxy.example.com go mod download", "review"),
    ("RUSTFLAGS='-C linker=/tmp/x' cargo build", "review"),
    ("BROWSER=./open.sh npm start", "review"),
    ("export PATH=$PATH:$(go env GOPATH)/bin", "review"),
    ("SHELLOPTS=xtrace bash s.sh", "review"),
    ("BASHOPTS=extdebug bash s.sh", "review"),
    ("CDPATH=/etc cd ssh", "review"),
    ("KUBECONFIG=./k.yaml kubectl get pods", "review"),
    ("KUBECONFIG=/etc/kubernetes/admin.conf kubectl get pods", "review"),
    ("env LD_PRELOAD=/tmp/x.so ls", "review"),
    ("env PATH=/tmp/x:$PATH ls", "review"),
    ("declare -x BASH_ENV=/tmp/x", "review"),
    ("readonly PROMPT_COMMAND=id", "review"),
    ("X=$GITHUB_TOKEN", "review"),
    ("export LOG=$AZURE_CLIENT_SECRET", "review"),
    ("GIT_UNKNOWN_NEW_VARIABLE=1 git status", "review"),
    # assignments bash makes that the parser does not show as such
    ("declare -x 'PAGER=sh -c id'", "review"),
    ("export \"LD_PRELOAD=/tmp/x.so\"", "review"),
    ("export PA\\GER='sh -c id'", "review"),
    ("printf -v PAGER %s 'sh -c id'", "review"),
    ("printf -vGIT_PAGER %s x", "review"),
    ("read PAGER <<< 'sh -c id'", "review"),
    ("read -a PATH <<< x", "review"),
    ("mapfile -t LD_PRELOAD < list", "review"),
    ("mapfile -C 'sh -c id' -c 1 lines < list", "review"),
    ("declare -n ref=PAGER", "review"),
    ("getopts ab IFS", "review"),
    ("PAGER='sh -c id'", "review"),
    ("PATH=/tmp/evil:$PATH", "review"),
]


@pytest.mark.parametrize(("line", "expect"), HELD)
def test_code_running_assignments_are_held(line: str, expect: str) -> None:
    got = decide(line)
    assert got == expect, (line, got)


@pytest.mark.parametrize(
    ("value", "held"),
    [("-Xmx2g", False), ("-Dfile.encoding=UTF-8", False), ("-Djava.awt.headless=true", False),
     ("-Dorg.gradle.daemon=false", False), ("-Duser.timezone=UTC", False), ("-XX:+UseG1GC", False),
     ("-Djava.library.path=/tmp", True), ("-Dlog4j.configurationFile=http://x/y.xml", True),
     ("-Dhttps.proxyHost=proxy", True), ("-Djavax.net.ssl.trustStore=/tmp/t", True),
     ("-Dcom.sun.management.jmxremote", True), ("-javaagent:/tmp/a.jar", True),
     ("-agentlib:jdwp=transport=dt_socket", True), ("-XX:OnOutOfMemoryError=id", True),
     ("@/tmp/argfile", True), ("-cp /tmp/x", True)],
)
def test_jvm_options(value: str, held: bool) -> None:
    """JVM option strings: heap, flags and ordinary -D pass; agents, class paths, logging
    configuration, TLS, proxies and JMX are held."""
    assert bool(judge("JAVA_TOOL_OPTIONS", value, True).findings) is held


def test_grammar_is_by_family() -> None:
    """Members of a family share a grammar; unknown members of a tool's family are held,
    unknown names elsewhere pass."""
    assert grammar_for("LD_WHATEVER") is grammar_for("LD_PRELOAD")
    assert judge("GIT_BRAND_NEW", "1", True).findings
    assert judge("PYTHONBRANDNEW", "1", True).findings
    assert not judge("MY_APP_SETTING", "1", True).findings
    assert judge("GIT_TRACE_PACKET", "/tmp/p", True).writes == [("/tmp/p", True)]
    assert judge("GIT_TRACE", "2", True).writes == []
    assert judge("PAGER", "sh -c id", True).commands == [("sh -c id", True, "pager")]


SECRET_NAMES = ["GITHUB_TOKEN", "AZURE_CLIENT_SECRET", "ARM_CLIENT_SECRET", "DB_PASSWORD",
                "MYSQL_PWD", "SMTP_PASSWD", "STRIPE_API_KEY", "OPENAI_APIKEY", "AZURE_STORAGE_KEY",
                "AZURE_STORAGE_CONNECTION_STRING", "SERVICEBUS_CONNECTIONSTRING",
                "GOOGLE_CREDENTIALS", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "SYSTEM_ACCESSTOKEN",
                "IDENTITY_HEADER", "MSI_SECRET", "githubToken", "npmAuthToken", "DATABASE_URL",
                "SENTRY_DSN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "VAULT_TOKEN",
                "KEY", "PRIVATE_KEY", "SAS_TOKEN"]
NOT_SECRET_NAMES = ["HOME", "PATH", "PWD", "OLDPWD", "USER", "LANG", "CI", "NODE_ENV",
                    "TOKENIZERS_PARALLELISM", "PUBLIC_KEY", "SORT_KEY", "KEYVAULT_NAME",
                    "SSH_AUTH_SOCK", "GPG_KEY", "IDENTITY_ENDPOINT", "KUBECONFIG",
                    "AZURE_SUBSCRIPTION_ID", "GIT_ASKPASS", "DEBUG", "COMPASS_HOME"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_variable(name: str) -> None:
    assert secret_variable(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_not_secret_variable(name: str) -> None:
    assert not secret_variable(name)


def test_references_that_expand_values() -> None:
    """${#X} (length) and ${X:+word} do not print X's value; the others do."""
    text = 'echo $A ${#B} ${C:+set} ${D:-x} "${E}" ${F%%/*}'
    assert referenced_variables(text) == ["A", "D", "E", "F"]


@pytest.mark.parametrize(
    ("args", "shows"),
    [(["e"], True), (["eww"], True), (["auxe"], True), (["axe"], True), (["e", "-p", "1"], True),
     (["aux"], False), (["-ef"], False), (["-e"], False), (["-u", "eve"], False),
     (["-o", "pid,user,args"], False), (["o", "pid,user"], False), (["-C", "apache2"], False),
     (["--user", "eve"], False), (["123"], False), (["-eo", "pid,etime"], False)],
)
def test_ps_environment(args: list[str], shows: bool) -> None:
    """Only the BSD `e` option prints environments; values of -u/-o/-C are not options."""
    assert ps_shows_environment(args) is shows


READS = [
    ("printenv", "review"), ("env", "review"), ("env -0", "review"), ("printenv -0", "review"),
    ("set", "review"), ("declare -p", "review"), ("declare -xp", "review"),
    ("export -p", "review"), ("typeset -p", "review"), ("readonly -p", "review"),
    ("ps e", "review"), ("ps eww", "review"), ("ps auxe", "review"),
    ("env | grep -i secret", "review"), ("sudo env", "review"),
    ("printenv GITHUB_TOKEN", "deny"), ("printenv AZURE_CLIENT_SECRET HOME", "deny"),
    ("echo $AZURE_CLIENT_SECRET", "deny"), ("printf %s \"$ARM_CLIENT_SECRET\"", "deny"),
    ("echo \"${GITHUB_TOKEN}\"", "deny"), ("cat <<< \"$SYSTEM_ACCESSTOKEN\"", "deny"),
    ("echo \"token=$NPM_TOKEN\" > /tmp/t", "deny"), ("declare -p DB_PASSWORD", "deny"),
    ("echo $IDENTITY_HEADER | base64", "deny"), ("bash -c 'echo $MSI_SECRET'", "deny"),
    ("cat /proc/self/environ", "deny"), ("cat /proc/1/environ", "deny"),
    ("tr '\\0' '\\n' < /proc/self/environ", "deny"), ("strings /proc/thread-self/environ", "deny"),
    ("curl -H \"Authorization: Bearer $GITHUB_TOKEN\" https://api.github.com/user", "review"),
    ("echo ${!name}", "review"),
    ("jq -n env", "review"), ("jq -n '$ENV'", "review"), ("jq -n '$ENV.GITHUB_TOKEN'", "deny"),
    ("jq -n '$ENV[\"AZURE_CLIENT_SECRET\"]'", "deny"),
    ("awk 'BEGIN{for (k in ENVIRON) print k, ENVIRON[k]}'", "review"),
    ("awk 'BEGIN{print ENVIRON[\"GITHUB_TOKEN\"]}'", "deny"),
    # near-misses
    ("jq -n 'env.HOME'", "allow"), ("jq -r '.environment.name' x.json", "allow"),
    ("awk 'BEGIN{print ENVIRON[\"HOME\"]}'", "allow"), ("awk '{print $1}' file", "allow"),
]


@pytest.mark.parametrize(("line", "expect"), READS)
def test_environment_reads(line: str, expect: str) -> None:
    got = decide(line)
    assert got == expect, (line, got)
