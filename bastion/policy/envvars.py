"""Environment assignments judged by what the variable does, not by a flat list of names.

Every ``NAME=value`` the gate sees (a prefix ``NAME=v cmd``, ``export``/``declare -x``/``local``
/``readonly``, ``env NAME=v cmd``, a bare assignment that persists in a shell) goes through
``judge``. Each variable, family or prefix has a *value grammar*:

* harmless: any value (``CI``, ``TZ``, ``LANG``, ``RUST_BACKTRACE``, every name not listed);
* code: the variable makes a program run code or switches the gate's own view (``BASH_ENV``,
  ``LD_PRELOAD``, ``PROMPT_COMMAND``, ``HOME``, ``IFS``): held whatever the value;
* command: the value is a command line a program runs (pagers, editors, ``GIT_SSH_COMMAND``,
  ``GIT_EXTERNAL_DIFF``): re-gated as a shell line (pagers read a pipe, editors and diff
  programs get file names the gate cannot see);
* options: the value is an option string (``NODE_OPTIONS``, ``JAVA_TOOL_OPTIONS``, ``RUBYOPT``,
  ``MAKEFLAGS``): every option must be on that tool's harmless list;
* trace/write path: ``GIT_TRACE=1`` is harmless, ``GIT_TRACE=/path`` writes that file (judged
  as a redirect ``> /path``);
* program path list (``PATH``): ``$PATH`` keeps its place, directories put before it must be
  trusted program directories, relative or unknown entries are held;
* module path list (``PYTHONPATH``, ``NODE_PATH``, ...): static entries (the workspace's code is
  what a build or test tool runs anyway);
* credential location (``KUBECONFIG``, ``AZURE_CONFIG_DIR``, ...): allowed inside the tool's own
  credential folder, held elsewhere (a kubeconfig can name an exec plugin);
* TLS and proxy switches: held unless they keep verification on.

A value that copies a secret-named variable into a variable whose name does not say secret
(``X=$GITHUB_TOKEN``) is held too: it would hide the secret from ``secretnames``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.policy.model import Finding
from bastion.policy.paths import normalise, path_glob_match
from bastion.policy.secretnames import secret_references, secret_variable

TRUSTED_BIN_DIRS = frozenset(
    {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin", "/snap/bin"}
)
# Directories package managers install programs into: trusted at the front of PATH. Writes into
# the home ones are held as persistence (the `startup` path class).
TRUSTED_PATH_DIRS = (
    *sorted(TRUSTED_BIN_DIRS), "/usr/games", "/usr/local/go/bin", "/usr/lib/go-*/bin",
    "/opt/*/bin", "/usr/lib/jvm/*/bin", "~/.local/bin", "~/bin", "~/.cargo/bin", "~/go/bin",
    "~/.dotnet", "~/.dotnet/tools", "~/.krew/bin", "~/.pyenv/bin", "~/.pyenv/shims",
    "~/.rbenv/bin", "~/.rbenv/shims", "~/.nvm/versions/node/*/bin", "~/.npm-global/bin",
    "~/.bun/bin", "~/.deno/bin", "~/.poetry/bin", "~/.yarn/bin", "~/.volta/bin", "~/.asdf/bin",
    "~/.asdf/shims", "~/.local/share/pnpm", "/home/linuxbrew/.linuxbrew/bin",
)
_SHELL_NAMES = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish"})


@dataclass
class Judgement:
    """What one assignment needs: floors, shell lines to re-gate, files it makes a program
    write."""

    findings: list[Finding] = field(default_factory=list)
    commands: list[tuple[str, bool, str]] = field(default_factory=list)  # (text, static, how)
    writes: list[tuple[str, bool]] = field(default_factory=list)  # (path, static)
    persists: bool = True  # a bare assignment or export, not a prefix of one command

    def hold(self, name: str, why: str) -> None:
        self.findings.append(Finding("review", "exec-env", f"sets {name}: {why}"))


Grammar = Callable[[str, str, bool, Judgement], None]


# -- value grammars ------------------------------------------------------------------------------
def _harmless(name: str, value: str, static: bool, j: Judgement) -> None:
    return None


_PATH_CHARS = re.compile(r"[A-Za-z0-9/._~+@%-]")


def _ifs(name: str, value: str, static: bool, j: Judgement) -> None:
    """IFS splits the results of expansions, which the gate treats as unknown anyway; as a
    prefix (``IFS= read -r line``) it only reaches that command. Kept for the rest of a shell
    session (a bare assignment, ``export``), a separator that can occur in a path would re-split
    ``$HOME`` and ``$PWD``, which the gate reads as one word: held (``IFS=$'\n'`` and
    ``IFS=,`` are not)."""
    if j.persists and (not static or _PATH_CHARS.search(value)):
        j.hold(name, "changes how the shell splits paths for the rest of the session")


def _code(why: str) -> Grammar:
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        j.hold(name, why)
    return judge


def _unless(ok: Callable[[str], bool], why: str) -> Grammar:
    """Held unless the (static) value passes ``ok``."""
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        if not static or not ok(value):
            j.hold(name, why)
    return judge


def _command(how: str, harmless: Callable[[str], bool] = lambda v: False) -> Grammar:
    """The value is a command line a program runs. A known harmless value passes; any other is
    held, and also re-gated as a shell line so that its own verdict (deny for ``rm -rf ~``)
    counts."""
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        if static and (not value.strip() or harmless(value.strip())):
            return  # empty: the program falls back to its default (git: no pager)
        shown = value if len(value) <= 60 else value[:57] + "..."
        j.hold(name, f"the program runs {shown!r} as its {how}")
        j.commands.append((value, static, how))
    return judge


def _harmless_pager(value: str) -> bool:
    words = value.split()
    program = words[0].rsplit("/", 1)
    if len(program) == 2 and program[0] not in TRUSTED_BIN_DIRS:
        return False
    if program[-1] in ("cat", "true", "more") and len(words) == 1:
        return True
    return program[-1] == "less" and all(
        w.startswith("-") and _LESS_OPTS.fullmatch(w) and not set(w) & set("kKoO+")
        for w in words[1:]
    )


def _harmless_editor(value: str) -> bool:
    return value in ("true", "false", ":", "/bin/true", "/bin/false", "/usr/bin/true",
                     "/usr/bin/false")


_PAGER = _command("pager", _harmless_pager)
_EDITOR = _command("editor", _harmless_editor)
_PROGRAM = _command("helper program", _harmless_editor)  # true/false/: run nothing
_BROWSER = _command("browser", lambda v: _harmless_editor(v) or v == "none")


def _options(allowed: re.Pattern[str], what: str) -> Grammar:
    """An option string: every word must be a known harmless option of that tool."""
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        if not static:
            value = _without_self(value, name)  # NODE_OPTIONS="$NODE_OPTIONS --max-old-..."
            if "$" in value or "`" in value:
                j.hold(name, f"its {what} are only known at run time")
                return
        try:
            words = shlex.split(value)
        except ValueError:
            j.hold(name, f"its {what} do not parse")
            return
        for w in words:
            if not allowed.fullmatch(w):
                j.hold(name, f"{what} {w!r} can make the program load or run other code")
                return
    return judge


_NODE_OPTS = re.compile(
    r"--(max[-_]old[-_]space[-_]size|max[-_]semi[-_]space[-_]size|stack[-_]trace[-_]limit|"
    r"max[-_]http[-_]header[-_]size|heapsnapshot[-_]near[-_]heap[-_]limit)=[0-9]+|"
    r"--(enable-source-maps|no-warnings|no-deprecation|trace-warnings|trace-deprecation|"
    r"trace-uncaught|throw-deprecation|pending-deprecation|openssl-legacy-provider|"
    r"experimental-vm-modules|experimental-json-modules|experimental-import-meta-resolve|"
    r"preserve-symlinks|preserve-symlinks-main|use-openssl-ca|use-bundled-ca|no-addons|"
    r"experimental-fetch|no-experimental-fetch|tls-min-v1\.[23]|frozen-intrinsics|"
    r"report-uncaught-exception|abort-on-uncaught-exception|expose-gc|no-global-search-paths)|"
    r"--(unhandled-rejections|dns-result-order|experimental-specifier-resolution|"
    r"es-module-specifier-resolution|disable-proto|title|conditions|input-type)=[\w.:-]+"
)
_JAVA_OPTS = re.compile(
    r"-Xm[sxn][0-9]+[kKmMgG]?|-Xss[0-9]+[kKmMgG]?|-Xshare:\w+|-ea|-da|-esa|-dsa|-server|"
    r"-client|-verbose:\w+|-Xint|-Xbatch|-Xrs|-XX:[+-](?!\w*(Agent|OnError|OnOutOfMemory))\w+|"
    r"-XX:(?!\w*(Agent|OnError|OnOutOfMemory|Flags|CompileCommand))\w+=[\w.%:-]*|"
    # -Dkey=value, except the JVM's own keys (class path, agents, security, TLS, JMX: only a
    # few harmless ones pass), logging configuration (it can instantiate classes) and proxies
    r"-D(?!((java|javax|jdk|sun|com\.sun)\.(?!awt\.headless|io\.tmpdir|net\.preferIPv[46]"
    r"(Stack|Addresses)\b)|[\w.]*(log4j|logback|logging\.config|proxy(Host|Port|Set)|"
    r"nonProxyHosts|agent)))[\w.-]+(=[\w.,:/@+%-]*)?"
)
_RUBY_OPTS = re.compile(r"-W[0-2]?|-w|-v|--(disable|enable)[=-][\w-]+|--jit|--yjit|-E[\w:-]+")
_PERL_OPTS = re.compile(r"-[wWXt]+|-C[0-9A-Za-z]*")
_MAKE_OPTS = re.compile(
    r"-j[0-9]*|[0-9]+|-k|-s|-i|-w|-n|-q|-r|-R|-S|-B|-e|-t|--no-print-directory|"
    r"--(jobs|load-average|output-sync)=[\w.]+|-l[0-9.]*|-O\w*|--silent|--keep-going|"
    r"--print-directory|[ksiwnqrRSBet]+|--jobserver-(auth|fds)=[\w:,/.-]+"
)
_GO_FLAGS = re.compile(
    r"-(mod|buildvcs|buildmode|compiler)=[\w-]+|-(count|p|parallel)=[0-9]+|-race|-v|-x|"
    r"-trimpath|-a|-cover|-short|-tags=[\w,.-]+|-timeout=[\w.]+|-ldflags=-[sw]( -[sw])?"
)
_LESS_OPTS = re.compile(r"-?[RrFXSNMmiIJKQsxwWeEfgGaBcdLnPuUVyz~-]+")


def _pywarnings(value: str) -> bool:
    """PYTHONWARNINGS filters ``action:message:category:module:lineno``; a dotted category is
    imported at start-up (runs that module's code)."""
    for spec in value.split(","):
        fields = spec.split(":")
        if len(fields) >= 3 and "." in fields[2]:
            return False
    return True


def _trace(name: str, value: str, static: bool, j: Judgement) -> None:
    """git's trace variables: 1/2/true or a file descriptor print; an absolute path appends
    to that file (a write); a Unix socket sends the trace elsewhere."""
    v = value.strip().lower()
    if not static:
        j.hold(name, "its trace target is only known at run time")
    elif v.startswith("af_unix:"):
        j.hold(name, "sends git's trace to a socket")
    elif value.startswith("/") or value.startswith("~"):
        j.writes.append((value, static))


def _write_path(name: str, value: str, static: bool, j: Judgement) -> None:
    if value and value != "-":
        j.writes.append((value, static))


def _entries(value: str) -> list[str]:
    # `$(pwd)` is the working directory, as `$PWD` is (which the parser already reads as `.`)
    for cwd in ("$(pwd)", "`pwd`", "$(pwd -P)", "$(pwd -L)"):
        value = value.replace(cwd, ".")
    return value.split(":")


def _without_self(value: str, name: str) -> str:
    return re.sub(rf"\$(\{{{name}\}}|{name}(?![A-Za-z0-9_]))", "", value)


def _self_ref(entry: str, name: str) -> bool:
    return entry in (f"${name}", f"${{{name}}}")


def _in_dirs(entry: str, globs: tuple[str, ...]) -> bool:
    path = normalise(entry)
    return any(path_glob_match(g, path) for g in globs)


def _program_path(name: str, value: str, static: bool, j: Judgement) -> None:
    """PATH: ``$PATH`` keeps its place; what comes before it is searched first and must be a
    trusted program directory; what comes after is only used for names not found, and must at
    least be absolute. Any other expansion, a relative or empty entry is held. (A value that is
    static as a whole has no real ``$PATH`` in it: such an entry is a folder named ``$PATH``.)"""
    seen_self = False
    for entry in _entries(value):
        if not static and _self_ref(entry, name):
            seen_self = True
            continue
        if not static and ("$" in entry or "`" in entry):
            j.hold(name, f"puts {entry!r}, a directory only known at run time, on the PATH")
            return
        if not entry.startswith(("/", "~")):
            j.hold(name, f"puts the relative directory {entry or '.'!r} on the PATH")
            return
        if not seen_self and not _in_dirs(entry, TRUSTED_PATH_DIRS):
            j.hold(name, f"puts {entry!r} before the system directories on the PATH")
            return


TRUSTED_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/lib/*", "/usr/local/lib",
                    "/usr/local/lib64", "/usr/local/cuda/lib64", "/usr/local/cuda-*/lib64",
                    "/usr/local/cuda/extras/CUPTI/lib64", "/opt/*/lib", "/opt/*/lib64")
TRUSTED_GOROOTS = ("/usr/local/go", "/usr/lib/go", "/usr/lib/go-*", "/opt/go", "~/go", "~/sdk/*",
                   "~/.go")


def _trusted_dirs(globs: tuple[str, ...], what: str) -> Grammar:
    """A list of directories a program loads code from: each must be a root-owned system place
    (the variable's own old value keeps its place)."""
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        for entry in _entries(value):
            if not static and _self_ref(entry, name):
                continue
            if "$" in entry or "`" in entry or not _in_dirs(entry, globs):
                j.hold(name, f"{what} from {entry or '.'!r}, not a system directory")
                return
    return judge


def _module_path(name: str, value: str, static: bool, j: Judgement) -> None:
    """PYTHONPATH and friends: where an interpreter imports code from. Static entries are what a
    test or build tool runs anyway; an entry only known at run time is held."""
    for entry in _entries(value):
        if _self_ref(entry, name):
            continue
        if "$" in entry or "`" in entry:
            j.hold(name, f"imports code from {entry!r}, only known at run time")
            return


def _credential_dir(*globs: str) -> Grammar:
    def judge(name: str, value: str, static: bool, j: Judgement) -> None:
        for entry in _entries(value):
            if _self_ref(entry, name):
                continue
            if "$" in entry or "`" in entry or not _in_dirs(entry, globs):
                j.hold(name, f"points the tool at credentials or config in {entry!r}, outside "
                       f"{' '.join(globs)} (such a file can run programs or leak its contents)")
                return
    return judge


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", ".localhost", "127.0.0.0/8",
                       ""})


def _no_proxy(value: str) -> bool:
    return all(e.strip().lower() in _LOOPBACK for e in value.split(","))


def _shell_path(value: str) -> bool:
    return value.rsplit("/", 1)[0] in TRUSTED_BIN_DIRS and value.rsplit("/", 1)[-1] in _SHELL_NAMES


def _prompt(value: str) -> bool:
    """PS0/PS1/PS2/PS4 undergo parameter expansion, command substitution and arithmetic when
    shown (PS4 under ``set -x``): only text without expansions is harmless."""
    return "$" not in value.replace("\\$", "") and "`" not in value


_TLS = "turns off or replaces TLS verification"
_PROXY = "sends the program's traffic through another host"
_SUPPLY = "installs packages from another index or without integrity checks"

_GRAMMAR: dict[str, Grammar] = {
    # the shell itself
    "BASH_ENV": _code("bash runs that file before every non-interactive script"),
    "ENV": _code("sh runs that file at start-up"),
    "PROMPT_COMMAND": _code("bash runs it before every prompt"),
    "PS0": _unless(_prompt, "the prompt string runs substitutions"),
    "PS1": _unless(_prompt, "the prompt string runs substitutions"),
    "PS2": _unless(_prompt, "the prompt string runs substitutions"),
    "PS4": _unless(_prompt, "the trace prompt runs substitutions under set -x"),
    "IFS": _ifs,
    "SHELLOPTS": _code("turns on shell options for every child shell"),
    "BASHOPTS": _code("turns on shell options for every child shell"),
    "GLOBIGNORE": _code("changes what globs expand to"),
    "CDPATH": _unless(lambda v: v == "", "makes cd go to another folder than the one named"),
    "HOME": _code("every tool then reads its configuration (and ~) from elsewhere"),
    "PWD": _code("the gate resolves $PWD as the working directory"),
    "OLDPWD": _code("changes where cd - and ~- go"),
    "XDG_CONFIG_HOME": _code("every tool then reads its configuration from elsewhere"),
    "XDG_CONFIG_DIRS": _code("every tool then reads its configuration from elsewhere"),
    "INPUTRC": _code("readline loads key bindings (macros) from that file"),
    "BASH_LOADABLES_PATH": _code("enable -f loads shared objects from there"),
    "HISTFILE": _code("changes or hides the shell history"),
    "HISTSIZE": _code("changes or hides the shell history"),
    "HISTFILESIZE": _code("changes or hides the shell history"),
    "HISTCONTROL": _code("changes or hides the shell history"),
    "HISTIGNORE": _code("changes or hides the shell history"),
    "SHELL": _unless(_shell_path, "programs that start a shell would start that program"),
    # the dynamic linker and libc
    "GCONV_PATH": _code("glibc loads character-set modules from there"),
    "GLIBC_TUNABLES": _code("glibc tunables (CVE-2023-4911)"),
    "LOCPATH": _code("glibc loads locale files from there"),
    "HOSTALIASES": _code("changes how host names resolve"),
    "TERMINFO": _code("terminal descriptions are loaded from there"),
    "TERMINFO_DIRS": _code("terminal descriptions are loaded from there"),
    # pagers and editors
    "PAGER": _PAGER, "GIT_PAGER": _PAGER, "MANPAGER": _PAGER, "SYSTEMD_PAGER": _PAGER,
    "BAT_PAGER": _PAGER, "PSQL_PAGER": _PAGER, "AWS_PAGER": _PAGER, "DELTA_PAGER": _PAGER,
    "EDITOR": _EDITOR, "VISUAL": _EDITOR, "GIT_EDITOR": _EDITOR, "GIT_SEQUENCE_EDITOR": _EDITOR,
    "KUBE_EDITOR": _EDITOR, "SYSTEMD_EDITOR": _EDITOR, "SUDO_EDITOR": _EDITOR,
    "FCEDIT": _EDITOR, "SVN_EDITOR": _EDITOR,
    "LESS": _options(_LESS_OPTS, "less options"),
    "LESSOPEN": _code("less runs it as an input filter"),
    "LESSCLOSE": _code("less runs it after a file"),
    "LESSKEY": _code("less loads key bindings (shell escapes) from that file"),
    "LESSKEYIN": _code("less loads key bindings (shell escapes) from that file"),
    "LESSSECURE": _unless(lambda v: v == "1", "turns off less's secure mode"),
    "MANOPT": _code("man options (-P, -H) can name programs to run"),
    # programs run by other programs
    "GIT_SSH_COMMAND": _PROGRAM, "GIT_SSH": _PROGRAM, "GIT_EXTERNAL_DIFF": _PROGRAM,
    "GIT_ASKPASS": _PROGRAM, "SSH_ASKPASS": _PROGRAM, "SUDO_ASKPASS": _PROGRAM,
    "GIT_PROXY_COMMAND": _PROGRAM, "KUBECTL_EXTERNAL_DIFF": _PROGRAM, "BROWSER": _BROWSER,
    "RSYNC_RSH": _PROGRAM, "RSYNC_CONNECT_PROG": _PROGRAM, "CVS_RSH": _PROGRAM,
    "RUSTC_WRAPPER": _PROGRAM, "CARGO_BUILD_RUSTC_WRAPPER": _PROGRAM, "RUSTC": _PROGRAM,
    "FZF_DEFAULT_COMMAND": _PROGRAM,
    # git's configuration and helpers
    "GIT_CONFIG": _code("git reads configuration (hooks, pagers, helpers) from that file"),
    "GIT_CONFIG_GLOBAL": _code("git reads configuration (hooks, pagers, helpers) from that file"),
    "GIT_CONFIG_SYSTEM": _code("git reads configuration (hooks, pagers, helpers) from that file"),
    "GIT_CONFIG_COUNT": _code("injects git configuration (core.pager, core.sshCommand, ...)"),
    "GIT_CONFIG_PARAMETERS": _code("injects git configuration (core.pager, alias.x=!...)"),
    "GIT_EXEC_PATH": _code("git runs its subcommands from that folder"),
    "GIT_TEMPLATE_DIR": _code("git init/clone copy hooks from that folder"),
    "GIT_DIR": _code("git uses another repository's configuration and hooks"),
    "GIT_COMMON_DIR": _code("git uses another repository's configuration and hooks"),
    "GIT_ALLOW_PROTOCOL": _code("allows transports such as ext:: that run commands"),
    "GIT_CURL_VERBOSE": _code("prints HTTP headers, credentials included"),
    "GIT_TRACE_REDACT": _unless(lambda v: v.lower() not in ("0", "false", "no", "off"),
                                "git traces then print credentials"),
    "GIT_SSL_NO_VERIFY": _code(_TLS), "GIT_SSL_CAINFO": _code(_TLS),
    "GIT_SSL_CAPATH": _code(_TLS), "GIT_SSL_CERT": _code(_TLS),
    # Python
    "PYTHONPATH": _module_path,
    "PYTHONSTARTUP": _code("python runs that file at interactive start-up"),
    "PYTHONHOME": _code("python loads its standard library from there"),
    "PYTHONINSPECT": _code("python drops into an interactive prompt"),
    "PYTHONUSERBASE": _code("python imports site packages (.pth files) from there"),
    "PYTHONPLATLIBDIR": _code("python loads its standard library from there"),
    "PYTHONEXECUTABLE": _code("changes which interpreter child processes start"),
    "PYTHONBREAKPOINT": _unless(lambda v: v == "0", "breakpoint() imports and calls that"),
    "PYTHONWARNINGS": _unless(_pywarnings, "a dotted warning category is imported"),
    "PYTHONHTTPSVERIFY": _unless(lambda v: v != "0", _TLS),
    "PYTHONPYCACHEPREFIX": _write_path,
    # Node.js, npm
    "NODE_OPTIONS": _options(_NODE_OPTS, "node options"),
    "NODE_PATH": _module_path,
    "NODE_TLS_REJECT_UNAUTHORIZED": _unless(lambda v: v == "1", _TLS),
    "NODE_EXTRA_CA_CERTS": _code(_TLS),
    "NODE_REPL_HISTORY": _write_path, "NODE_V8_COVERAGE": _write_path,
    "NODE_REDIRECT_WARNINGS": _write_path,
    "NODE_REPL_EXTERNAL_MODULE": _code("node loads that module as its REPL"),
    # Perl, Ruby, Lua, PHP, R, Java
    "PERL5OPT": _options(_PERL_OPTS, "perl options"),
    "PERL5LIB": _module_path, "PERLLIB": _module_path,
    "PERL5DB": _code("perl runs that code as its debugger"),
    "PERLDB_OPTS": _code("perl debugger options"),
    "RUBYOPT": _options(_RUBY_OPTS, "ruby options"),
    "RUBYLIB": _module_path, "GEM_PATH": _module_path, "GEM_HOME": _module_path,
    "LUA_INIT": _code("lua runs it at start-up"),
    "LUA_PATH": _module_path, "LUA_CPATH": _module_path, "CLASSPATH": _module_path,
    "PHPRC": _code("php loads an ini file (auto_prepend_file) from there"),
    "PHP_INI_SCAN_DIR": _code("php loads ini files from there"),
    "R_PROFILE": _code("R runs that file at start-up"),
    "R_PROFILE_USER": _code("R runs that file at start-up"),
    "IRBRC": _code("irb runs that file at start-up"),
    **{n: _options(_JAVA_OPTS, "JVM options") for n in (
        "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_OPTS", "MAVEN_OPTS",
        "GRADLE_OPTS", "SBT_OPTS", "ANT_OPTS")},
    # build tools
    "MAKEFLAGS": _options(_MAKE_OPTS, "make options"),
    "MFLAGS": _options(_MAKE_OPTS, "make options"),
    "GNUMAKEFLAGS": _options(_MAKE_OPTS, "make options"),
    "MAKEFILES": _code("make reads those makefiles first"),
    "GOFLAGS": _options(_GO_FLAGS, "go flags"),
    "TAR_OPTIONS": _code("tar reads options (--checkpoint-action, --to-command) from it"),
    "TF_CLI_CONFIG_FILE": _code("terraform installs providers as that file says"),
    "TERRAFORM_CONFIG": _code("terraform installs providers as that file says"),
    "TF_LOG_PATH": _write_path,
    "HELM_PLUGINS": _code("helm runs plugins from there"),
    # TLS, proxies, package indexes, crypto libraries
    "OPENSSL_CONF": _code("OpenSSL loads engines and providers named in that file"),
    "OPENSSL_ENGINES": _code("OpenSSL loads engines from there"),
    "OPENSSL_MODULES": _code("OpenSSL loads providers from there"),
    "SSLKEYLOGFILE": _code("writes TLS session keys to a file"),
    **{n: _code(_TLS) for n in (
        "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "AZURE_CLI_DISABLE_CONNECTION_VERIFICATION", "ADAL_PYTHON_SSL_NO_VERIFY", "AWS_CA_BUNDLE",
        "PIP_CERT", "HTTPLIB2_CA_CERTS", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "CURL_HOME",
        "WGETRC")},
    **{n: _code(_PROXY) for n in (
        "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
        "ftp_proxy", "FTP_PROXY", "RSYNC_PROXY", "npm_config_proxy", "npm_config_https_proxy",
        "NPM_CONFIG_PROXY", "NPM_CONFIG_HTTPS_PROXY")},
    "no_proxy": _unless(_no_proxy, "lets the program bypass the proxy for other hosts"),
    "NO_PROXY": _unless(_no_proxy, "lets the program bypass the proxy for other hosts"),
    **{n: _code(_SUPPLY) for n in (
        "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL", "GOINSECURE", "GONOSUMDB", "GONOSUMCHECK",
        "npm_config_registry", "NPM_CONFIG_REGISTRY", "YARN_REGISTRY")},
    "GOSUMDB": _unless(lambda v: v.lower() != "off", _SUPPLY),
    # the checksum database still verifies modules fetched directly
    "GOPROXY": _unless(lambda v: all(p in ("direct", "off", "https://proxy.golang.org")
                                     for p in re.split(r"[,|]", v)), _SUPPLY),
    "RUSTFLAGS": _unless(lambda v: not re.search(r"linker|link-arg|plugin|-Z", v),
                         "rustc runs the named linker or loads the plugin"),
    "CARGO_ENCODED_RUSTFLAGS": _unless(lambda v: not re.search(r"linker|link-arg|plugin|-Z", v),
                                       "rustc runs the named linker or loads the plugin"),
    # identities, agents, daemons, credential locations
    "SSH_AUTH_SOCK": _code("uses another ssh agent's keys"),
    "GNUPGHOME": _code("uses another GnuPG home (keys, agent, configuration)"),
    "DOCKER_HOST": _unless(lambda v: v in ("unix:///var/run/docker.sock",
                                           "unix:///run/docker.sock"),
                           "sends docker commands (and build contexts) to another daemon"),
    "KUBECONFIG": _credential_dir("~/.kube/*", "~/.kube/**"),
    "AZURE_CONFIG_DIR": _credential_dir("~/.azure", "~/.azure-*", "~/.azure/*"),
    "AWS_CONFIG_FILE": _credential_dir("~/.aws/*"),
    "AWS_SHARED_CREDENTIALS_FILE": _credential_dir("~/.aws/*"),
    "GOOGLE_APPLICATION_CREDENTIALS": _credential_dir("~/.config/gcloud/**"),
    "CLOUDSDK_CONFIG": _credential_dir("~/.config/gcloud", "~/.config/gcloud/**"),
    "DOCKER_CONFIG": _credential_dir("~/.docker", "~/.docker/*"),
    # PATH and the other directory lists of trusted programs
    "PATH": _program_path,
    "LD_LIBRARY_PATH": _trusted_dirs(TRUSTED_LIB_DIRS, "the dynamic linker loads libraries"),
    "GOROOT": _trusted_dirs(TRUSTED_GOROOTS, "go runs its compiler and tools"),
}
# Families: a prefix whose members all share one grammar.
_PREFIXES: tuple[tuple[str, Grammar], ...] = (
    ("LD_", _code("the dynamic linker loads or audits code as it says")),
    ("DYLD_", _code("the dynamic linker loads code as it says")),
    ("BASH_FUNC_", _code("defines a shell function for every child bash")),
    ("GIT_CONFIG_KEY_", _code("injects git configuration")),
    ("GIT_CONFIG_VALUE_", _code("injects git configuration")),
    ("GIT_TRACE", _trace),
    ("TF_CLI_ARGS", _code("adds options to every terraform command")),
    ("CARGO_TARGET_", _PROGRAM),  # CARGO_TARGET_<triple>_RUNNER / _LINKER run programs
    ("LUA_INIT", _code("lua runs it at start-up")),
    ("R_ENVIRON", _code("R reads that file at start-up")),
)
_CARGO_TARGET_SAFE = re.compile(r"^CARGO_TARGET_DIR$")
# Families where an unlisted member is held (fail closed): they are tools' own configuration
# channels, and new code-running members appear with new releases.
_CLOSED_FAMILIES = ("GIT_", "PYTHON", "NPM_CONFIG_", "npm_config_", "PERL", "RUBY", "JAVA",
                    "JDK_", "_JAVA", "LESS")
_OPEN_MEMBERS = frozenset({
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE", "GIT_TERMINAL_PROMPT", "GIT_FLUSH",
    "GIT_OPTIONAL_LOCKS", "GIT_MERGE_VERBOSITY", "GIT_HTTP_USER_AGENT", "GIT_WORK_TREE",
    "GIT_INDEX_FILE", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS",
    "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_DEFAULT_HASH", "GIT_REFLOG_ACTION",
    "GIT_MERGE_AUTOEDIT", "GIT_DIFF_OPTS", "GIT_PROTOCOL", "GIT_SSH_VARIANT",
    "GIT_CONFIG_NOSYSTEM", "GIT_ADVICE", "GIT_PROGRESS_DELAY", "GIT_LFS_SKIP_SMUDGE",
    "GIT_HTTP_LOW_SPEED_LIMIT", "GIT_HTTP_LOW_SPEED_TIME", "GIT_HTTP_MAX_REQUESTS",
    "GIT_REDACT_COOKIES", "GIT_SHALLOW_FILE", "GIT_DIFF_PATH_COUNTER", "GIT_DIFF_PATH_TOTAL",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONIOENCODING",
    "PYTHONUTF8", "PYTHONDEVMODE", "PYTHONFAULTHANDLER", "PYTHONTRACEMALLOC", "PYTHONOPTIMIZE",
    "PYTHONVERBOSE", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONCASEOK", "PYTHONMALLOC",
    "PYTHONMALLOCSTATS", "PYTHONCOERCECLOCALE", "PYTHONWARNDEFAULTENCODING",
    "PYTHONINTMAXSTRDIGITS", "PYTHONNODEBUGRANGES", "PYTHONPROFILEIMPORTTIME",
    "PYTHONASYNCIODEBUG", "PYTHONDEBUG", "PYTHON_COLORS", "PYTHON_BASIC_REPL", "PYTHON_GIL",
    "PYTHON_CPU_COUNT", "PYTHON_HISTORY",
    "NPM_CONFIG_LOGLEVEL", "npm_config_loglevel", "NPM_CONFIG_YES", "npm_config_yes",
    "NPM_CONFIG_FUND", "npm_config_fund", "NPM_CONFIG_AUDIT", "npm_config_audit",
    "NPM_CONFIG_UPDATE_NOTIFIER", "npm_config_update_notifier", "NPM_CONFIG_PROGRESS",
    "npm_config_progress", "NPM_CONFIG_CACHE", "npm_config_cache", "NPM_CONFIG_PRODUCTION",
    "npm_config_production", "PERL_UNICODE", "PERL_HASH_SEED", "PERL_BADLANG",
    "PERL_MM_USE_DEFAULT", "JAVA_HOME", "JDK_HOME", "RUBY_YJIT_ENABLE", "LESSCHARSET",
    "LESS_TERMCAP_mb", "LESS_TERMCAP_md", "LESS_TERMCAP_me", "LESS_TERMCAP_se",
    "LESS_TERMCAP_so", "LESS_TERMCAP_ue", "LESS_TERMCAP_us", "LESSHISTFILE", "LESSHISTSIZE",
})


def grammar_for(name: str) -> Grammar:
    """The value grammar of a variable (exact name, then family prefix, then the closed
    families, then harmless)."""
    g = _GRAMMAR.get(name)
    if g is not None:
        return g
    if name in _OPEN_MEMBERS or _CARGO_TARGET_SAFE.match(name):
        return _harmless
    for prefix, grammar in _PREFIXES:
        if name.startswith(prefix):
            return grammar
    if name.startswith(_CLOSED_FAMILIES):
        return _code("a configuration variable of a tool that the gate does not know")
    return _harmless


def judge(name: str, value: str, static: bool, persists: bool = True) -> Judgement:
    """Judge ``name=value``: floors to add, command lines to re-gate, files it writes.
    ``persists`` is False for a prefix assignment (``VAR=x cmd``), which reaches one command."""
    base = name.split("[", 1)[0]
    j = Judgement(persists=persists)
    grammar_for(base)(base, value, static, j)
    leaked = secret_references(value)
    if leaked and not secret_variable(base):
        j.hold(base, f"copies the secret variable {leaked[0]} into a variable whose name does "
               "not say secret")
    return j
