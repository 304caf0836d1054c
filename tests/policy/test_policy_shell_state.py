"""Shell evaluation and the working directory with a gated shell's state (issue 17 items 2, 4):
what earlier lines left (ShellState) feeds the next line's Context."""

from __future__ import annotations

import pytest

from bastion.interactive.programs import ShellState
from bastion.policy import Context, Decision, Policy, load_policy
from bastion.policy.cwd import CHDIR_OPTIONS, CwdTracker, sensitive_somewhere, unit_dirs
from bastion.policy.evaluation import VarState, arith_problem, name_problem


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(Policy.default_path())


def shell_ctx(state: ShellState) -> Context:
    return Context(principals=("agents",), target="web-01", login="azureuser", channel="shell",
                   cwd=state.cwd, oldpwd=state.oldpwd, cdpath=state.cdpath,
                   variables=dict(state.variables), integers=tuple(sorted(state.integers)))


def decide(policy: Policy, line: str, state: ShellState) -> Decision:
    return policy.decide(line, shell_ctx(state))


def test_values_carry_across_lines_and_are_forgotten(policy: Policy) -> None:
    state = ShellState(cwd="/home/azureuser/src")
    assert decide(policy, "echo $((n+1))", state).action == "review"  # n: not known yet
    state.learn("n=5")
    assert state.variables == {}  # running: not yet
    state.finished(0)
    assert state.variables == {"n": "5"}
    assert decide(policy, "echo $((n+1))", state).action == "allow"
    state.learn("read -r n < input.txt")
    state.finished(0)
    assert "n" not in state.variables
    decision = decide(policy, "echo $((n+1))", state)
    assert decision.action == "review" and "eval-arithmetic" in decision.rules
    state.learn("a=1; b=2")
    state.finished(0)
    state.learn("eval \"$cmd\"")  # eval may set anything
    state.finished(0)
    assert state.variables == {}


def test_an_interrupted_unit_leaves_its_variables_unknown(policy: Policy) -> None:
    """Ctrl-C in `sleep 100; n=5` stops the list before n=5: n keeps its old (file) value."""
    state = ShellState(cwd="/home/azureuser/src")
    state.learn("read -r n < input.txt")
    state.finished(0)
    state.learn("sleep 100; n=5")
    state.finished(130)
    assert "n" not in state.variables
    assert decide(policy, "echo $((n))", state).action == "review"
    state.learn("sleep 1; n=5")
    state.finished(None)  # no status reported
    assert "n" not in state.variables


def test_integer_attribute_carries_across_lines(policy: Policy) -> None:
    state = ShellState(cwd="/home/azureuser/src")
    state.learn("declare -i total=0")
    state.finished(0)
    assert "total" in state.integers
    # total is -i: assigning a file's content evaluates it as arithmetic
    assert decide(policy, "total=$(cat n.txt)", state).action == "review"
    assert decide(policy, "total=total+1", state).action == "allow"


def test_shell_cwd_resolves_relative_paths(policy: Policy) -> None:
    state = ShellState()
    state.moved_to("/home/azureuser/.ssh")
    assert decide(policy, "cat id_rsa", state).action == "deny"
    assert decide(policy, "cat deploy", state).action == "deny"  # ~/.ssh/deploy: a key
    state.learn("cd ../src")
    state.moved_to("/home/azureuser/src")
    assert state.oldpwd == "/home/azureuser/.ssh"
    assert decide(policy, "cat deploy", state).action == "allow"  # ~/src/deploy
    assert decide(policy, "cd - && cat deploy", state).action == "deny"
    assert decide(policy, "cat ~-/deploy", state).action == "deny"
    assert decide(policy, "cd .. && cat .ssh/deploy", state).action == "deny"


def test_shell_at_home_is_like_exec(policy: Policy) -> None:
    """A shell reporting /home/<login> judges `.` as exec at ~ does (the workspace root)."""
    state = ShellState()
    state.moved_to("/home/azureuser")
    exec_ctx = Context(principals=("agents",), target="web-01", login="azureuser")
    for line in ("grep -rn TODO .", "rm -rf .", "ls *", "cat .ssh/id_rsa"):
        assert decide(policy, line, state).action == policy.decide(line, exec_ctx).action, line


def test_oldpwd_is_known_only_after_a_single_cd(policy: Policy) -> None:
    """`cd ~/.ssh && cd /tmp` leaves $OLDPWD at ~/.ssh, not at the previous prompt's cwd."""
    state = ShellState()
    state.moved_to("/home/azureuser/src")
    state.learn("cd ~/.ssh && cd /tmp")
    state.moved_to("/tmp")
    assert state.oldpwd is None
    assert decide(policy, "cat ~-/credentials", state).action == "review"
    state.learn("cd .")  # sets $OLDPWD to /tmp although the cwd did not change
    state.moved_to("/tmp")
    assert state.oldpwd is None
    state.learn("cd ~/src")
    state.moved_to("/home/azureuser/src")
    assert state.oldpwd == "/tmp"


def test_unknown_cwd_holds_only_sensitive_names(policy: Policy) -> None:
    state = ShellState()  # the shell has not reported a directory
    held = decide(policy, "cat credentials", state)  # ~/.aws/credentials, somewhere
    assert held.action == "review" and "cwd-unknown" in held.rules
    assert decide(policy, "cat README.md", state).action == "allow"
    assert decide(policy, "pytest -q tests", state).action == "allow"


def test_cdpath_makes_a_bare_cd_unknown(policy: Policy) -> None:
    state = ShellState(cwd="/home/azureuser/src")
    state.learn("export CDPATH=/etc:/root")
    state.finished(0)
    assert state.cdpath
    assert "cwd-unknown" in decide(policy, "cd ssh && cat ssh_host_rsa_key", state).rules
    assert decide(policy, "cd ./build && ls", state).action == "allow"  # ./ skips CDPATH


def test_loop_bodies_are_judged_once(policy: Policy) -> None:
    """The loop body is walked twice to learn its assignments; its units are counted once."""
    ctx = Context(principals=("agents",), target="web-01", login="azureuser")
    decision = policy.decide("for i in 1 2; do echo $i; done", ctx)
    assert [u.argv[0] for u in decision.units] == ["echo"]
    assert policy.decide("n=1; for f in a b; do echo $((n)); n=$(cat \"$f\"); done",
                         ctx).action == "review"


@pytest.mark.parametrize(
    ("expr", "safe"),
    [("1+2", True), ("i++", False), ("x", False), ("RANDOM%6", True), ("a[1]", False),
     ("$(nproc)*2", True), ("$(cat f)", False), ("16#ff", True), ("'a[$(id)]'", False),
     ("${#s}", True), ("$((3))+$[4]", True), ("n=5, n*2", True), ("c ? x=1 : 2", False)],
)
def test_arith_problem(expr: str, safe: bool) -> None:
    assert (arith_problem(expr, VarState()) is None) is safe


def test_name_problem() -> None:
    state = VarState.start({"i": "2"})
    assert name_problem("HOME", state) is None
    assert name_problem("a[i+1]", state) is None
    assert name_problem("a[$(id)]", state) is not None
    assert name_problem("a[j]", state) is not None  # j: not known
    assert name_problem("1x", state) is not None


def test_tracker_and_tool_options() -> None:
    t = CwdTracker("~")
    t.step(["cd", "src"], [True, True], False)
    assert t.dirs == frozenset({"~", "~/src"})  # the cd may fail: the old directory stays
    t.step(["cd", "$d"], [True, False], False)
    assert t.dirs is None
    dirs, per_index, values = unit_dirs(frozenset({"~"}), "tar",
                                        ["tar", "-cf", "x.tar", "-C", "/etc", "shadow"],
                                        [True] * 6)
    assert dirs == frozenset({"~"}) and per_index[5] == frozenset({"~", "/etc"})
    assert values == [(4, "/etc")]
    assert unit_dirs(frozenset({"~"}), "git", ["git", "-C", "a", "-C", "b", "status"],
                     [True] * 6)[0] == frozenset({"~/a/b"})
    assert set(CHDIR_OPTIONS) >= {"git", "make", "tar"}


def test_sensitive_somewhere() -> None:
    globs = {"secret": ("**/.ssh/id_rsa", "/etc/shadow"), "system": ("/etc/**",),
             "workspace": ("~/**",)}
    assert sensitive_somewhere("id_rsa", globs) == {"secret"}
    assert sensitive_somewhere(".ssh/id_rsa", globs) == {"secret"}
    assert sensitive_somewhere("shadow", globs) == {"secret"}
    assert sensitive_somewhere("README.md", globs) == frozenset()
    assert sensitive_somewhere("../x", globs) == {"parent"}


# Every place bash evaluates arithmetic, fed from every kind of source: a value the gate cannot
# see is held wherever it is evaluated; a known number passes everywhere.
ARITH_PLACES = ("echo $((X))", "echo $[X]", "(( X ))", "let y=X", "[[ X -eq 1 ]]",
                "[[ 1 -lt $X ]]", "echo ${s:X}", "echo ${s:0:X}", "a[X]=1", "echo ${a[X]}",
                "declare -i n=X", "for ((i=0; i<X; i++)); do :; done", "test -v a[X]")
UNKNOWN_SOURCES = ("read -r X < in.txt; ", "X=$(cat in.txt); ", "printf -v X %s \"$1\"; ",
                   "mapfile -t X < in.txt; ", "", "X=1; X=$(head -1 f) || :; ",
                   "X=1; if true; then read -r X; fi; ")
KNOWN_SOURCES = ("X=5; ", "X=$((2+3)); ", "X=$(nproc); ", "for X in 1 2; do :; done; ",
                 "declare -i X=7; ")


@pytest.mark.parametrize("place", ARITH_PLACES)
@pytest.mark.parametrize("source", UNKNOWN_SOURCES)
def test_unknown_values_are_held_wherever_evaluated(policy: Policy, place: str,
                                                    source: str) -> None:
    ctx = Context(principals=("agents",), target="web-01", login="azureuser")
    decision = policy.decide(source + place, ctx)
    assert decision.action != "allow", source + place
    assert {"eval-arithmetic", "eval-name"} & set(decision.rules), decision.rules


@pytest.mark.parametrize("place", ARITH_PLACES)
@pytest.mark.parametrize("source", KNOWN_SOURCES)
def test_known_numbers_pass_wherever_evaluated(policy: Policy, place: str, source: str) -> None:
    ctx = Context(principals=("agents",), target="web-01", login="azureuser")
    decision = policy.decide(source + place, ctx)
    assert not {"eval-arithmetic", "eval-name"} & set(decision.rules), (source + place,
                                                                       decision.reason)


def test_learning_a_huge_unit_is_bounded_and_forgets() -> None:
    """ShellState.learn runs on the event loop: a unit too big to follow in its budget makes
    the session's values unknown instead of stalling the loop."""
    import time

    state = ShellState(cwd="/home/azureuser/src", variables={"n": "5"})
    huge = "case $x in " + " ".join(f"{i}) y=$((y+{i}));;" for i in range(1500)) + " esac"
    t = time.thread_time()
    state.learn(huge)
    assert time.thread_time() - t < 0.2
    assert state.variables == {} and state.cdpath
    state.learn("n=5")
    state.finished(0)
    assert state.variables == {"n": "5"}


def test_and_guard_makes_the_directory_exact(policy: Policy) -> None:
    """After `cd DIR &&` the command runs in DIR only; elsewhere the old directory stays."""
    ctx = Context(principals=("agents",), target="web-01", login="azureuser")
    assert policy.decide("cd /tmp && rm -rf .ssh", ctx).action == "allow"  # /tmp/.ssh
    for line in ("cd /tmp; rm -rf .ssh", "cd /tmp || rm -rf .ssh", "(cd /tmp) && rm -rf .ssh",
                 "cd /tmp | cat && rm -rf .ssh", "cd /tmp && { cd ~; rm -rf .ssh; }"):
        assert policy.decide(line, ctx).action != "allow", line  # ~/.ssh is possible


def test_a_nameref_stops_value_tracking_for_the_session(policy: Policy) -> None:
    """`declare -n r=x; read -r r` changes x: after a nameref, no value is trusted."""
    state = ShellState(cwd="/home/azureuser/src")
    state.learn("x=5")
    state.finished(0)
    state.learn("declare -n r=x")
    state.finished(0)
    assert state.aliased and state.variables == {}
    state.learn("x=5")
    state.finished(0)
    assert state.variables == {}
    assert decide(policy, "echo $((x))", state).action == "review"
