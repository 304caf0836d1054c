"""Option-level tool declarations: the argv parser, the declaration loader and the scanners."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.cli import main
from bastion.errors import ConfigError
from bastion.policy import Context, Policy, load_policy
from bastion.policy.decl import ToolTable, load_tool_files
from bastion.policy.options import parse_argv
from bastion.policy.scripts import scan_awk, scan_jq, scan_less, scan_sed

CTX = Context(principals=("agents",), target="web-01", login="azureuser")


@lru_cache(maxsize=1)
def _policy() -> Policy:
    return load_policy(Policy.default_path())


def _effects(line: list[str]) -> set[tuple[str, str]]:
    decl = _policy().tools.get(line[0])
    assert decl is not None
    parsed = parse_argv(decl, line, [True] * len(line))
    return {(e.kind, e.value) for e in parsed.effects} | {("script", s) for s, _, _ in
                                                           parsed.scripts}


# -- the parser: every spelling of a declared option means the same --------------------------
# sort's flags and a value option, spelled every way GNU getopt_long accepts.
_FLAGS = ["-u", "-r", "-n", "-s"]
_LONG = {"-u": "--unique", "-r": "--reverse", "-n": "--numeric-sort", "-s": "--stable"}


def _abbrev(long: str, cut: int) -> str:
    """A prefix of ``long`` that is still unambiguous among sort's options."""
    decl = _policy().tools.get("sort")
    assert decl is not None
    for n in range(3, len(long) + 1):
        prefix = long[:n]
        hits = {decl.options[x].canonical for x in decl.longs if x.startswith(prefix)}
        if len(hits) == 1 and n >= min(len(long), 3 + cut):
            return prefix
    return long


@settings(max_examples=150, deadline=None)
@given(
    flags=st.lists(st.sampled_from(_FLAGS), min_size=1, max_size=4, unique=True),
    style=st.integers(min_value=0, max_value=3),
    value_style=st.integers(min_value=0, max_value=4),
    cut=st.integers(min_value=0, max_value=6),
    target=st.sampled_from(["/etc/passwd", "out.txt", "~/.bashrc", "/tmp/x"]),
)
def test_spellings_of_an_option_mean_the_same(
    flags: list[str], style: int, value_style: int, cut: int, target: str
) -> None:
    """Clustered, separate, long and abbreviated flags, and -oFILE / -o FILE / --output=FILE /
    --out FILE / clustered -uoFILE all give sort the same effects."""
    base = ["sort", *flags, "-o", target, "in.txt"]
    if style == 0:
        words = ["".join(["-", *(f[1] for f in flags)])]
    elif style == 1:
        words = [_LONG[f] for f in flags]
    elif style == 2:
        words = [_abbrev(_LONG[f], cut) for f in flags]
    else:
        words = list(flags)
    if value_style == 0:
        value = ["-o" + target]
    elif value_style == 1:
        value = ["--output=" + target]
    elif value_style == 2:
        value = [_abbrev("--output", cut), target]
    elif value_style == 3 and style == 0:
        words = [words[0] + "o" + target]
        value = []
    else:
        value = ["-o", target]
    spelled = ["sort", *words, *value, "in.txt"]
    assert _effects(spelled) == _effects(base), spelled
    assert ("writes", target) in _effects(spelled)
    got = _policy().decide(" ".join(spelled), CTX).action
    want = _policy().decide(" ".join(base), CTX).action
    assert got == want, (spelled, got, want)


def _gnu_tools() -> list[str]:
    seen: dict[int, str] = {}
    for name, decl in sorted(_policy().tools.tools.items()):
        if decl.style == "gnu" and not decl.bundled:
            seen.setdefault(id(decl), name)
    return sorted(seen.values())


def _plain_flags(tool: str) -> tuple[list[str], list[str]]:
    """Short and long flags of a tool that take no value and have no effect of their own."""
    decl = _policy().tools.get(tool)
    assert decl is not None
    plain = [n for n, sp in decl.options.items() if sp.value == "none" and sp.effect == "none"
             and sp.operands is None and not sp.sandbox and n not in ("--help", "--version")]
    shorts = [n for n in plain if len(n) == 2 and n[1] != "+" and not n[1].isdigit()]
    return shorts, [n for n in plain if n.startswith("--")]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_gnu_declaration_clusters_and_abbreviates(data: st.DataObject) -> None:
    """For every declared gnu-style tool: a cluster of its flags means the flags given one by
    one, and the shortest unambiguous prefix of a long flag means the long flag."""
    tool = data.draw(st.sampled_from(_gnu_tools()))
    shorts, longs = _plain_flags(tool)
    decl = _policy().tools.get(tool)
    assert decl is not None
    if shorts:
        picked = data.draw(st.lists(st.sampled_from(shorts), min_size=1, max_size=4, unique=True))
        one = [tool, "-" + "".join(f[1] for f in picked), "a.txt", "b.txt"]
        many = [tool, *picked, "a.txt", "b.txt"]
        p1 = parse_argv(decl, one, [True] * len(one))
        p2 = parse_argv(decl, many, [True] * len(many))
        assert [s.canonical for s, _, _ in p1.given] == [s.canonical for s, _, _ in p2.given]
        assert _effects(one) == _effects(many), (one, many)
    if longs:
        long = data.draw(st.sampled_from(longs))
        canonical = decl.options[long].canonical
        prefix = next((long[:n] for n in range(3, len(long) + 1)
                       if {decl.options[x].canonical for x in decl.longs
                           if x.startswith(long[:n])} == {canonical}), long)  # --troff: exact
        p = parse_argv(decl, [tool, prefix, "a.txt"], [True] * 3)
        assert [s.canonical for s, _, _ in p.given] == [canonical], (tool, prefix)
        assert _effects([tool, prefix, "a.txt"]) == _effects([tool, long, "a.txt"])


@settings(max_examples=80, deadline=None)
@given(order=st.permutations(["-n", "-e", "f.txt"]))
def test_gnu_permutation_and_double_dash(order: list[str]) -> None:
    """Options may follow operands (permutation); after `--` a dash word is an operand."""
    if order.index("-e") == len(order) - 1:
        return  # -e needs a value after it
    line = ["sed", *order]
    i = line.index("-e")
    line.insert(i + 1, "p")
    assert _effects(line) == {("script", "p"), ("reads", "f.txt")}
    assert ("reads", "-n") in _effects(["sed", "p", "--", "-n"])


def test_ambiguous_and_unknown_options_are_not_understood() -> None:
    """`--s` is ambiguous for sort (--sort, --stable, ...): not understood, like -Q."""
    for line in (["sort", "--s", "f"], ["sort", "-Q", "f"], ["sort", "--frob", "f"],
                 ["sort", "--unique=yes", "f"], ["sort", "-o"]):
        assert any(k == "unknown" for k, _ in _effects(line)), line
    assert _policy().decide("sort --s f", CTX).action == "review"


def test_posix_style_stops_at_first_operand(tmp_path: Path) -> None:
    """In a posix-style tool, a dash word after the first operand is an operand."""
    f = tmp_path / "t.toml"
    f.write_text('[[tool]]\nname = "p"\nstyle = "posix"\noperands = "reads"\n'
                 '[tool.options]\n"-a" = "flag"\n', encoding="utf-8")
    decl = load_tool_files([f], "x").get("p")
    assert decl is not None
    parsed = parse_argv(decl, ["p", "-a", "x", "-a"], [True] * 4)
    assert [(e.kind, e.value) for e in parsed.effects] == [("reads", "x"), ("reads", "-a")]


def test_single_dash_and_subcommands(tmp_path: Path) -> None:
    """Go-style -name=value / --name value, and a subcommand tree with global options."""
    f = tmp_path / "t.toml"
    f.write_text(
        '[[tool]]\nname = "tf"\nstyle = "single-dash"\noperands = "unknown"\n'
        '[tool.options]\n"-chdir" = { value = "required", effect = "chdir" }\n'
        '[[tool.commands]]\nname = "plan"\noperands = "none"\n'
        '[tool.commands.options]\n"-out" = { value = "required", effect = "writes" }\n'
        '[[tool.commands]]\nname = "console"\noperands = "none"\n'
        '[tool.commands.options]\n"-state" = { value = "required", effect = "runs" }\n',
        encoding="utf-8")
    decl = load_tool_files([f], "x").get("tf")
    assert decl is not None
    p = parse_argv(decl, ["tf", "-chdir=infra", "plan", "--out", "/etc/x"], [True] * 5)
    assert p.path == ("plan",)
    assert {(e.kind, e.value) for e in p.effects} == {("chdir", "infra"), ("writes", "/etc/x")}
    p = parse_argv(decl, ["tf", "plan", "-chdir=x"], [True] * 3)  # globals only before
    assert [e.kind for e in p.effects] == ["unknown"]
    p = parse_argv(decl, ["tf", "destroy"], [True] * 2)
    assert [e.kind for e in p.effects] == ["unknown"]


def test_values_map_checks_every_occurrence(tmp_path: Path) -> None:
    """A `values` map is checked on every occurrence, before or after a subcommand."""
    f = tmp_path / "t.toml"
    f.write_text('[[tool]]\nname = "g"\noperands = "unknown"\n[tool.options]\n'
                 '"-c" = { value = "required", values = { "user.*" = "none" } }\n'
                 '[[tool.commands]]\nname = "status"\noperands = "reads"\n', encoding="utf-8")
    decl = load_tool_files([f], "x").get("g")
    assert decl is not None
    ok = parse_argv(decl, ["g", "-c", "user.name=x", "status"], [True] * 4)
    assert ok.effects == []
    bad = parse_argv(decl, ["g", "-cuser.name=x", "-c", "core.pager=sh", "status"], [True] * 5)
    assert [e.value for e in bad.effects] == ["g -c: value 'core.pager=sh' is not declared"]


def test_dynamic_words_are_not_understood() -> None:
    """An option word only known at run time cannot be parsed."""
    decl = _policy().tools.get("sort")
    assert decl is not None
    p = parse_argv(decl, ["sort", "$OPT", "f"], [True, True, True])
    assert not any(e.kind == "unknown" for e in p.effects)  # "$OPT" static here: an operand
    p = parse_argv(decl, ["sort", "-<dyn>", "f"], [True, False, True])
    assert any(e.kind == "unknown" for e in p.effects)


# -- the loader: one-line errors naming file, tool and key ----------------------------------
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[tool]]\nname = "x"\nstyle = "weird"\n', "tool x: style"),
        ('[[tool]]\nname = "x"\n[tool.options]\n"-a" = { effect = "writes" }\n',
         "tool x: options.'-a'.effect"),
        ('[[tool]]\nname = "x"\n[tool.options]\n"-abc" = "flag"\n', "one letter"),
        ('[[tool]]\nname = "x"\n[tool.options]\n"-a" = "flag"\n"--all -a" = "flag"\n',
         "declared twice"),
        ('[[tool]]\nname = "x"\nunknown = "allow"\n', "tool x: unknown"),
        ('[[tool]]\nname = "x"\nfrob = 1\n', "tool x: unknown key(s): frob"),
        ('[[tool]]\nname = "x"\noperands = { first = ["eats"] }\n', "tool x: operands.first"),
        ('[[tool]]\nname = "x"\nscanner = "perl"\n', "tool x: scanner"),
        ('[[tool]]\nname = "x"\n[tool.options]\n"-a" = "maybe"\n', "tool x: options.'-a'"),
        ('[[tool]]\nstyle = "gnu"\n', "every tool needs a name"),
        ('tools = 1\n', "unknown top-level key"),
        ("[[tool]\n", "not valid TOML"),
    ],
)
def test_loader_errors_name_file_tool_and_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_tool_files([f], "policy.toml")
    message = str(info.value)
    assert needle in message and str(f) in message and "\n" not in message


def test_duplicate_tool_and_policy_reference(tmp_path: Path) -> None:
    """A name declared in two files is refused; [policy] tools names a missing path."""
    a = tmp_path / "a.toml"
    a.write_text('[[tool]]\nname = "x"\naliases = ["y"]\n', encoding="utf-8")
    b = tmp_path / "b.toml"
    b.write_text('[[tool]]\nname = "y"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="already declared"):
        load_tool_files([a, b], "p")
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\ntools = ["nope"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"policy\.tools: no such file"):
        load_policy(policy)


def test_policy_loads_tools_relative_to_its_file(tmp_path: Path) -> None:
    """`[policy] tools = ["tools"]` is a directory next to the policy file, not the cwd."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.toml").write_text(
        '[[tool]]\nname = "cat"\noperands = "reads"\n', encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\ntools = ["tools"]\n[[rules]]\nid = "r"\naction = "allow"\n'
                      'program = ["cat"]\n[[rules]]\nid = "rd"\naction = "allow"\n'
                      'kind = "redirect"\nprogram = ["<"]\n', encoding="utf-8")
    p = load_policy(policy)
    assert isinstance(p.tools, ToolTable) and p.tools.get("cat") is not None
    assert p.decide("cat a", CTX).action == "allow"
    assert p.decide("cat -n a", CTX).action == "review"  # -n is not declared here
    assert p.decide("cat -n a", CTX).rules[0] == "tool-unknown"


def test_tool_examples_run_at_load(tmp_path: Path) -> None:
    """A declaration's [tool.examples] are decided at load; a wrong one names tool and line."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.toml").write_text(
        '[[tool]]\nname = "cat"\noperands = "reads"\n[tool.examples]\n'
        'allow = ["cat a"]\nreview = ["cat -n a"]\n', encoding="utf-8")
    policy = tmp_path / "policy.toml"
    rules = ('[[rules]]\nid = "r"\naction = "allow"\nprogram = ["cat"]\n[[rules]]\n'
             'id = "rd"\naction = "allow"\nkind = "redirect"\nprogram = ["<"]\n')
    policy.write_text('[policy]\ntools = ["tools"]\n' + rules, encoding="utf-8")
    load_policy(policy)
    policy.write_text('[policy]\ntools = ["tools"]\n' + rules.replace('"allow"', '"review"', 1),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tool cat .*'cat a' should be allow"):
        load_policy(policy)


# -- scanners ----------------------------------------------------------------------------------
def _kinds(effects: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(e.kind, e.value) for e in effects]


@pytest.mark.parametrize(
    ("script", "want"),
    [
        ("1,20p", []),
        ("s/a/b/g", []),
        ("s|/usr|/opt|g", []),
        ("/x/{s/a/b/;p}", []),
        ("\\%^/usr%d", []),
        ("y/abc/xyz/", []),
        ("1i\\\nheader", []),
        ("$a footer with e and w", []),
        ("s/e/w/", []),
        (":a;N;$!ba;s/\\n/ /g", []),
        ("e id", [("runs", "id")]),
        ("1e touch /tmp/m", [("runs", "touch /tmp/m")]),
        ("e", [("runs", "pattern space")]),
        ("s/x/id/e", [("runs", "pattern space")]),
        ("s,x,y,gpe", [("runs", "pattern space")]),
        ("s/x/y/w /etc/passwd", [("writes", "/etc/passwd")]),
        ("/x/w out.txt", [("writes", "out.txt")]),
        ("W ~/.bashrc", [("writes", "~/.bashrc")]),
        ("r /etc/shadow", [("reads", "/etc/shadow")]),
        ("\\,x, R ~/.ssh/id_rsa", [("reads", "~/.ssh/id_rsa")]),
        ("$!e ls", [("runs", "ls")]),
        ("/a/,/b/ { w x.txt\n}", [("writes", "x.txt")]),
    ],
)
def test_sed_scanner(script: str, want: list[tuple[str, str]]) -> None:
    assert _kinds(scan_sed(script)) == want


def test_sed_expressions_are_one_script() -> None:
    """sed joins -e scripts with newlines: `a\\` in one and its text in the next is text, and a
    block opened in one -e and closed in another is one block."""
    assert _policy().decide("sed -e '1a\\' -e 'e id' f", CTX).action == "allow"
    assert _policy().decide("sed -n -e '1{' -e 'e id' -e '}' f", CTX).action == "review"
    assert _policy().decide("sed -e p -e 'w ~/.bashrc' f", CTX).action == "review"


def test_sed_scanner_unknowns_and_sandbox() -> None:
    """Unknown commands, bad delimiters and unbalanced braces are not understood; --sandbox
    drops e/r/w (sed refuses such scripts)."""
    for bad in ("k", "s/a/b", "{p", "}", "s/a/b/Q", "r", "1,"):
        assert [e.kind for e in scan_sed(bad)][-1:] == ["unknown"], bad
    assert scan_sed("s/x/y/w /etc/x;e id", sandbox=True) == []


@pytest.mark.parametrize(
    ("program", "want"),
    [
        ("{print $1}", []),
        ("NR>1{s+=$3} END{print s}", []),
        ("{ print ($1 > $2) }", []),
        ('{print > "out.txt"}', [("writes", "out.txt")]),
        ('{print $1 >> "/tmp/c"}', [("writes", "/tmp/c")]),
        ("BEGIN { x = 4 / 2; print x }", []),
        ("/a\\/b/ { n++ }", []),
        ('BEGIN{system("id")}', [("runs", "system()")]),
        ('BEGIN{"id" | getline x}', [("runs", "| getline")]),
        ('{print | "sh"}', [("runs", "print |")]),
        ('BEGIN{print "x" |& "sh"}', [("runs", "|&")]),
        ('{f="/etc/x"; print > f}', [("unknown", ">")]),
        ('BEGIN{getline l < "/etc/shadow"}', [("reads", "/etc/shadow")]),
        ("BEGIN{getline l < f}", [("unknown", "getline <")]),
        ('BEGIN{print ENVIRON["HOME"]}', []),
        ('BEGIN{print ENVIRON["DB_PASSWORD"]}', [("secrets", "ENVIRON")]),
        ('@load "rwarray"', [("unknown", "@load")]),
        ('{print > "out" "/../../etc/x"}', [("unknown", ">")]),
        ('{print > "out.txt"; n++}', [("writes", "out.txt")]),
        ('BEGIN{while ((getline l < "a.txt") > 0) n++}', [("reads", "a.txt")]),
        ('BEGIN{getline l < "/tmp/" x}', [("unknown", "getline <")]),
    ],
)
def test_awk_scanner(program: str, want: list[tuple[str, str]]) -> None:
    assert _kinds(scan_awk(program)) == want


def test_awk_sandbox_keeps_environ() -> None:
    """gawk --sandbox disables system() and redirections, not ENVIRON."""
    assert _kinds(scan_awk('BEGIN{system("id"); print > "/etc/x"; print ENVIRON["DB_PASSWORD"]}',
                           sandbox=True)) == [("secrets", "ENVIRON")]


def test_jq_and_less_scanners() -> None:
    assert _kinds(scan_jq(".env")) == []
    assert _kinds(scan_jq('"env"')) == []
    assert _kinds(scan_jq("env | keys")) == [("secrets", "env")]
    assert _kinds(scan_jq("$ENV.GITHUB_TOKEN")) == [("secrets", "$ENV")]
    assert _kinds(scan_jq("$ENV.PATH")) == []  # one named variable, judged by its name
    assert _kinds(scan_jq("env.HOME")) == []
    assert _kinds(scan_jq('"\\(env.GITHUB_TOKEN)"')) == [("secrets", "env")]
    assert _kinds(scan_jq('"\\(env.HOME)"')) == []
    assert [e.kind for e in scan_jq('import "x" as x; .')] == ["unknown"]
    for safe in ("G", "F", "42", "/ERROR", "?x!y", "g"):
        assert scan_less(safe) == [], safe
    for bad in ("!id", "|id", "s /etc/x", "v", ":e x"):
        assert [e.kind for e in scan_less(bad)] == ["runs"], bad


# -- the gate end to end ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "action", "rule"),
    [
        ("sed -n '1,20p' f", "allow", "read-only-tools"),
        ("sed 's/x/y/w /dev/sda' f", "deny", "redirect-device"),
        ("sort -o ~/.bashrc f", "review", "write-startup-or-system"),
        ("sort --compress-program=sh f", "review", "tool-runs"),
        ("split --filter='rm -rf ~' f", "deny", "rm-catastrophic"),
        ("tee /dev/sda", "deny", "redirect-device"),
        ("uniq in ~/.profile", "review", "write-startup-or-system"),
        ("less '+!id' f", "review", "tool-runs"),
        ("man -P 'sh -c id' ls", "review", "tool-runs"),
        ("cat -Q f", "review", "tool-unknown"),
    ],
)
def test_gate_judges_effects(line: str, action: str, rule: str) -> None:
    d = _policy().decide(line, CTX)
    assert d.action == action and rule in d.rules, d.reason


def test_chdir_outside_the_workspace_holds() -> None:
    d = _policy().decide("tar -C /opt/x -xf x.tar", CTX)
    assert (d.action, d.rules[0]) == ("review", "tool-chdir")
    assert _policy().decide("tar -C /tmp/x -xf x.tar", CTX).action == "allow"


def test_check_explains_the_option_and_path_class(capsys: pytest.CaptureFixture[str]) -> None:
    """`bastion policy check` names the option that decided and the path's classes."""
    assert main(["policy", "check", "--", "sort -o ~/.bashrc f"]) == 1
    out = capsys.readouterr().out
    assert "sort -o writes ~/.bashrc" in out and "path classes: startup" in out
    assert main(["policy", "check", "--", "sort --frobnicate f"]) == 1
    assert "sort: option --frobnicate is not declared" in capsys.readouterr().out
