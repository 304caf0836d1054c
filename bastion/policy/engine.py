"""The pure decision function: (line, context) -> Decision.

Pipeline: lexical guards -> tree-sitter walk -> unwrap/normalise -> tool facts -> rules per unit
(first match wins) -> floors (structural findings no rule can lower) -> most severe unit wins.
There is no early allow: every unit is judged before the line's verdict is taken.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bastion import shipped
from bastion.policy import budget, chars
from bastion.policy.cwd import (
    CwdTracker,
    Dirs,
    implicit_target,
    is_relative,
    join,
    sensitive_somewhere,
    unit_dirs,
)
from bastion.policy.decl import ToolTable
from bastion.policy.hosts import HostClassifier
from bastion.policy.model import (
    SEVERITY,
    Action,
    Context,
    Decision,
    Finding,
    ReviewSpec,
    UnitDecision,
)
from bastion.policy.paths import PathClassifier, normalise
from bastion.policy.rules import Rule, UnitView
from bastion.policy.syntax import parse
from bastion.policy.toolgate import expand_units
from bastion.policy.tools import facts
from bastion.policy.unwrap import Unit, normalise_units

log = logging.getLogger(__name__)

# Package data (bastion/_shipped -> config/): works from a wheel as well as from a checkout.
DEFAULT_POLICY_PATH = shipped.policy_path()
_MAX_UNITS = 128
_WORKSPACE_ROOT = frozenset({".", "./", "*", "./*"})


@dataclass
class Policy:
    """Ordered rules plus path classes; ``decide`` is pure and never raises."""

    rules: tuple[Rule, ...]
    default: Action = "review"
    classifier: PathClassifier = field(default_factory=lambda: PathClassifier.build({}))
    source: str = "<memory>"
    tools: ToolTable = field(default_factory=ToolTable)  # option-level declarations
    hosts: HostClassifier = field(default_factory=HostClassifier)  # [hosts] classes
    _by_program: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    @staticmethod
    def default_path() -> Path:
        """The shipped policy file, ``config/policy.toml``."""
        return DEFAULT_POLICY_PATH

    def decide(self, line: str, ctx: Context, budget_s: float | None = None) -> Decision:
        """Judge ``line``; with ``budget_s``, a decision that needs more CPU time than that is
        ``review`` (rule ``decision-budget``) and stops working at once."""
        try:
            # Over budget twice: a garbage collection or a stolen CPU slice can inflate one
            # measurement, a hostile line is slow every time (so it costs two budgets at most).
            for attempt in (1, 2):
                try:
                    with budget.bounded(budget_s):
                        decision = self._decide(line, ctx)
                        budget.check()  # work that could not check on its way (the parse)
                    return decision
                except budget.BudgetExceeded:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except budget.BudgetExceeded:
            assert budget_s is not None
            unit = UnitDecision((), "review", budget.RULE,
                                f"the decision took longer than {budget_s * 1000:g} ms",
                                _render(line[:200]))
            return Decision("review", (budget.RULE,), (unit,),
                            f"review: the decision took longer than {budget_s * 1000:g} ms"
                            f" [{budget.RULE}]", ReviewSpec())
        except Exception as exc:  # fail closed: a bug in the engine holds the line
            log.exception("policy engine error")
            unit = UnitDecision((), "review", "engine-error",
                                f"internal error: {type(exc).__name__}", line[:200])
            return Decision("review", ("engine-error",), (unit,),
                            "review: the policy engine failed on this line [engine-error]",
                            ReviewSpec())

    # -- internals ---------------------------------------------------------------------------
    def _candidates(self, program: str) -> tuple[Rule, ...]:
        cached = self._by_program.get(program)
        if cached is None:
            cached = tuple(
                r for r in self.rules
                if not r.program or program in r.literal_programs
                or len(r.literal_programs) != len(r.program)
            )
            if len(self._by_program) < 4096:
                self._by_program[program] = cached
        return cached

    def _decide(self, line: str, ctx: Context) -> Decision:
        results: list[tuple[UnitDecision, Rule | None]] = []
        for f in chars.line_findings(line):
            results.append((UnitDecision((), f.action, f.rule, f.reason, _render(line)), None))
        if len(line.encode("utf-8", "surrogatepass")) > chars.MAX_PARSE_BYTES:
            results.append((UnitDecision((), "review", "too-long",
                                         f"longer than {chars.MAX_PARSE_BYTES} bytes: not parsed",
                                         _render(line[:200])), None))
            return _combine(results)
        parsed = parse(line, ctx.variables, ctx.integers)
        for f, text in parsed.findings:
            results.append((UnitDecision((), f.action, f.rule, f.reason, text), None))
        units = normalise_units(parsed.units)
        if len(units) > _MAX_UNITS:
            results.append((UnitDecision((), "review", "too-complex",
                                         f"more than {_MAX_UNITS} units", ""), None))
            units = units[:_MAX_UNITS]
        # Effects of declared tools (toolgate) come after the cap: one per path they name.
        units = expand_units(units, self.tools, self.classifier, ctx.login, hosts=self.hosts)
        # /home/<login>/x is ~/x: the shell reports absolute paths, the classes say ~
        start = normalise(ctx.cwd, ctx.login) if ctx.cwd else ("~" if ctx.channel == "exec"
                                                                else None)
        oldpwd = normalise(ctx.oldpwd, ctx.login) if ctx.oldpwd else None
        tracker = CwdTracker(start, oldpwd, ctx.cdpath or "CDPATH" in line)
        for unit in units:
            budget.check()
            results.append(self._judge(unit, ctx, tracker))
        return _combine(results)

    def _judge(
        self, unit: Unit, ctx: Context, tracker: CwdTracker
    ) -> tuple[UnitDecision, Rule | None]:
        view = self._view(unit, ctx, tracker)
        maybe: UnitView | None = None
        if any(c != _unmarked(c) for c in view.path_classes):
            # A path in an unknown directory: judge it as written, and hold it when it would be
            # judged more severely in the sensitive place its name could be (`cat id_rsa`,
            # `rm -rf lib`), but not when that changes nothing (`ls lib`).
            maybe = replace(view, path_classes=tuple(_maybe(c) for c in view.path_classes))
            view = replace(view, path_classes=tuple(_unmarked(c) for c in view.path_classes))
        rule = self._match(view, ctx)
        if rule is not None:
            action, rid, reason = rule.action, rule.id, rule.reason
        else:
            action, rid = self.default, "default"
            reason = f"no rule matches {view.argv[0] if view.argv else 'this'}"
        floors = list(unit.findings)
        if maybe is not None:
            there = self._match(maybe, ctx)
            if SEVERITY[there.action if there else self.default] > SEVERITY[action]:
                floors.append(Finding(
                    "review", "cwd-unknown",
                    "a relative path in a working directory the gate cannot know could name a"
                    f" sensitive file ({there.id if there else 'default'} there)"))
        dynamic_ok = rule is not None and rule.allow_dynamic
        if action == "allow" and not dynamic_ok and not all(view.static[1:]):
                floors.append(Finding("review", "dynamic-argument",
                                      "an argument is only known at run time"))
        if rule is not None and any(t.startswith("effect:") for t in unit.tags):
            reason = f"{reason}: {unit.text}"  # a declared tool's effect: say which option
        matched = rid
        for f in floors:
            if SEVERITY[f.action] > SEVERITY[action] or (
                SEVERITY[f.action] == SEVERITY[action] and rule is None
            ):
                action, rid, reason = f.action, f.rule, f.reason
        return (UnitDecision(view.argv, action, rid, reason, unit.text[:500], matched), rule)

    def _match(self, view: UnitView, ctx: Context) -> Rule | None:
        for candidate in self._candidates(view.argv[0] if view.argv else ""):
            if candidate.matches(view) and candidate.in_scope(ctx):
                return candidate
        return None

    def _view(self, unit: Unit, ctx: Context, tracker: CwdTracker) -> UnitView:
        login = ctx.login
        here = tracker.here(unit.guard)
        if unit.kind == "redirect":
            target = unit.argv[1]
            target_classes = (self._classes(target, unit.static[1], login, here, tracker),)
            return UnitView("redirect", tuple(unit.argv), tuple(unit.static), (), frozenset(), {},
                            (target,), target_classes, frozenset(unit.tags), (), None)
        if unit.kind == "assign" or not unit.argv:
            return UnitView(unit.kind, tuple(unit.argv) or ("<assign>",),
                            tuple(unit.static) or (True,), (), frozenset(), {}, (), (),
                            frozenset(unit.tags), tuple(unit.wrappers), unit.stdin)
        f = facts(unit)
        # A cd in a subshell or another shell only widens the set (sound); one that may run
        # many times (a loop, a function) makes a relative move unknown.
        tracker.step(unit.argv, unit.static, unit.in_loop or "in-function" in unit.tags,
                     unit.serial, unit.guard)
        dirs, per_index, dir_values = unit_dirs(here, unit.program, unit.argv, unit.static,
                                                unit.chdir)
        positionals = tuple(unit.argv[i] for i in f.positionals)
        # A declared tool's script/pattern operand (toolgate) is code, not a path.
        code = {int(t[9:]) for t in unit.tags if t.startswith("not-path:")}
        classes: list[frozenset[str]] = [
            self._classes(unit.argv[i], unit.static[i], login, per_index.get(i, dirs), tracker)
            for i in f.positionals if i not in code
        ]
        for i, value in dir_values:
            classes.append(self._classes(value, unit.static[i], login, here, tracker))
        writes, into = implicit_target(unit.program, unit.argv)
        if writes and into is not None:
            classes.append(self._classes(into, all(unit.static), login, dirs, tracker))
        elif writes and dirs is not None:
            # it writes into the directory it runs in: that directory is one of its paths (the
            # login's home as the line's own directory is the workspace root, as for ".")
            classes.extend(self.classifier.classify(d, login) for d in sorted(dirs) if d != "~")
        positional_at = frozenset(f.positionals)  # a set: argv may hold thousands of words
        for i, a in enumerate(unit.argv[1:], 1):
            if a.startswith("-") or i in positional_at:
                value = a.partition("=")[2]
            else:
                value = a.partition("=")[2] if "=" in a else ""
            if value.startswith(("/", "~", "./", "../", "file:")):
                classes.append(self._classes(value, unit.static[i], login,
                                             per_index.get(i, dirs), tracker))
        return UnitView("command", tuple(unit.argv), tuple(unit.static), f.path, f.flags,
                        f.options, positionals, tuple(classes), frozenset(unit.tags),
                        tuple(unit.wrappers), unit.stdin)

    def _classes(
        self, value: str, static: bool, login: str | None, dirs: Dirs, tracker: CwdTracker
    ) -> frozenset[str]:
        """Classes of a path argument: as written, and (when relative) in every directory the
        unit may run in; in an unknown directory, also the ``maybe:`` classes its name could
        have somewhere (``_judge`` holds the unit when they would make it more severe)."""
        if not static:
            return frozenset({"dynamic"})
        found = self.classifier.classify(value, login)
        if not is_relative(value):
            return found
        if value[:2] == "~-":
            dirs = tracker.tilde_minus()
        if dirs is None:
            return found | {_MAYBE + c for c in sensitive_somewhere(value, self.classifier.globs)}
        for d in dirs:
            if d == "~" and value in _WORKSPACE_ROOT:
                # The login's home as the line's own directory is the workspace root, as "."
                # and "*" always were: only a cd elsewhere changes what they are.
                continue
            found = found | self.classifier.classify(join(d, value), login)
        return found


_MAYBE = "maybe:"  # a class the path has if the unknown working directory is the wrong one


def _unmarked(classes: frozenset[str]) -> frozenset[str]:
    return frozenset(c for c in classes if not c.startswith(_MAYBE))


def _maybe(classes: frozenset[str]) -> frozenset[str]:
    return frozenset(c.removeprefix(_MAYBE) for c in classes)


def _render(line: str) -> str:
    """Escaped rendering so reviewers see invisible and control characters."""
    return line.encode("unicode_escape").decode("ascii")[:500]


def _combine(results: list[tuple[UnitDecision, Rule | None]]) -> Decision:
    if not results:
        return Decision("allow", (), (), "allow: nothing to run")
    final: Action = "allow"
    for u, _ in results:
        if SEVERITY[u.action] > SEVERITY[final]:
            final = u.action
    ordered = [u for u, _ in results if u.action == final] + [
        u for u, _ in results if u.action != final
    ]
    rules: list[str] = []
    for u in ordered:
        if u.rule not in rules:
            rules.append(u.rule)
    lead = ordered[0]
    what = " ".join(lead.argv) if lead.argv else lead.text
    more = sum(1 for u in ordered if u.action == final) - 1
    reason = f"{final}: {lead.reason} [{lead.rule}]" + (f" in `{what[:120]}`" if what else "")
    if more > 0:
        reason += f" (+{more} more)"
    review = _merge_review([r for u, r in results if u.action == "review" and r is not None
                            and r.id == u.rule]) if final == "review" else None
    return Decision(final, tuple(rules), tuple(u for u, _ in results), reason, review)


def _merge_review(rules: list[Rule]) -> ReviewSpec:
    approvers: list[str] = []
    approvals = 1
    timeout: float | None = None
    mode: str | None = None
    for r in rules:
        approvers.extend(a for a in r.approvers if a not in approvers)
        if r.approvals is not None:
            approvals = max(approvals, r.approvals)
        if r.timeout is not None:
            timeout = r.timeout if timeout is None else min(timeout, r.timeout)
        if r.mode == "wait" or (r.mode == "defer" and mode is None):
            mode = r.mode
    return ReviewSpec(tuple(approvers), approvals, timeout, mode)


def matched_rules(decision: Decision) -> frozenset[str]:
    """Ids of policy rules that matched some unit (even where a floor overrode them)."""
    return frozenset(u.matched for u in decision.units if u.matched is not None)


def example_context(rule: Rule) -> Context:
    """A context inside the rule's scope, used to run its examples."""
    labels: Mapping[str, str] = {k: v for k, v in rule.target_labels if not _is_glob(v)}
    target = next((t for t in rule.targets if not _is_glob(t)), "example-host")
    return Context(
        principals=tuple(sorted(rule.principals))[:1] or ("agents",),
        target=target,
        target_labels=dict(labels),
        login=next((g for g in rule.logins if not _is_glob(g)), "azureuser"),
        channel=next(iter(sorted(rule.channels)), "exec"),
    )


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")
