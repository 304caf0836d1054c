"""Medians, ratios and goals of one run, written as JSON and Markdown."""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness.env import CIPHERS, PATHS

Runs = list[dict[str, float]]


def median_of(runs: Runs) -> dict[str, float]:
    """Median of every key over the runs (each run is one measurement's numbers)."""
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def ratios(per_path: dict[str, dict[str, float]], key: str) -> dict[str, float]:
    """bastion/direct, bastion/jump and jump/direct for one figure, from the same run."""
    d, j, b = (per_path[p][key] for p in PATHS)
    return {"bastion/direct": b / d, "bastion/jump": b / j, "jump/direct": j / d}


def goals(fig: dict[str, Any], idle_steps: list[int]) -> list[dict[str, Any]]:
    """The issue's goals, each with what was measured and pass/fail."""
    out: list[dict[str, Any]] = []

    def goal(name: str, measured: float, target: str, ok: bool | None, note: str = "") -> None:
        out.append({"goal": name, "measured": round(measured, 3), "target": target,
                    "pass": ok, "note": note})  # fmt: skip

    for cipher in CIPHERS:
        r = fig["bulk"][cipher]["ratios"]["bastion/jump"]
        short = cipher.split("@")[0]
        goal(f"bulk of text ({short}) vs ProxyJump", r, ">= 0.8x (aim >= 1.0x)", r >= 0.8,
             "aim met" if r >= 1.0 else "aim (1.0x) not met")  # fmt: skip
    for kind, b in fig.get("bulk_binary", {}).items():
        r = b["ratios"]["bastion/jump"]
        goal(f"bulk of binary output ({kind}, aes128-gcm) vs ProxyJump", r,
             ">= 0.5x (aim >= 1.0x)", r >= 0.5, "aim met" if r >= 1.0 else "aim (1.0x) not met")
    text = fig["bulk"][CIPHERS[0]]["paths"]
    for label, per_path in [("text", text)] + [
            (k, b["paths"]) for k, b in fig.get("bulk_binary", {}).items()]:
        r = per_path["bastion"]["cpu_s_per_gb"] / max(per_path["jump"]["cpu_s_per_gb"], 1e-9)
        goal(f"bastion CPU s/GB vs the jump host's, bulk of {label} (aes128-gcm)", r, "<= 3x",
             r <= 3.0, f"{per_path['bastion']['cpu_s_per_gb']:.2f} vs "
             f"{per_path['jump']['cpu_s_per_gb']:.2f} CPU s/GB")  # fmt: skip
    r = fig["streams"]["ratios"]["bastion/jump"]
    goal(f"{fig['streams']['count']} concurrent streams aggregate vs ProxyJump", r, ">= 1.0x",
         r >= 1.0, "" if fig["streams"]["count"] >= 50 else "the goal is for 50 streams")
    for kind in ("exec", "pty"):
        rat = fig[f"echo_{kind}"]["ratios"]
        r = rat["bastion/jump"]
        note = ""
        if rat["jump/direct"] > 20:  # a stall on the jump host, not a round trip
            note = (f"ProxyJump's p50 is {rat['jump/direct']:.0f}x direct (a ~40 ms stall on "
                    f"the jump hop); the bastion is {rat['bastion/direct']:.1f}x direct")
        goal(f"echo round trip p50 ({kind}) vs ProxyJump", r, "<= 1.5x", r <= 1.5, note)
    idle = fig["idle"]["bastion"]
    top = max(idle_steps)
    kib = idle[str(top)]["kib_per_session"]
    held_1000 = top >= 1000
    goal(f"idle memory per session at {top} sessions (KiB)", kib, "1000 held, <= 150 KiB",
         (kib <= 150) if held_1000 else None,
         "" if held_1000 else "1000 sessions not held in this mode")
    p99_ms = fig["gate"]["p99_us"] / 1000
    goal("gate decision p99 (ms)", p99_ms, "<= 1 ms", p99_ms <= 1.0)
    plain = fig["masker"]["plain_mb_s"]
    goal(f"masker, 4 KiB chunks, plain traffic ({fig['masker']['engine']}) MB/s", plain,
         ">= 300 MB/s", plain >= 300)  # fmt: skip
    return out


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _row(label: str, per_path: dict[str, dict[str, float]], key: str, digits: int,
         rat: dict[str, float] | None) -> str:  # fmt: skip
    cells = [_f(per_path[p][key], digits) for p in PATHS]
    if rat is None:
        rat = ratios(per_path, key)
    ratio_cells = [f"{rat['bastion/direct']:.2f}x", f"{rat['bastion/jump']:.2f}x",
                   f"{rat['jump/direct']:.2f}x"]  # fmt: skip
    return f"| {label} | " + " | ".join(cells + ratio_cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    fig = result["figures"]
    s = result["settings"]
    m = result["machine"]
    lines = [
        f"# Bastion benchmark ({s['mode']})",
        "",
        f"{m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['openssh']}, asyncssh {m['asyncssh']}. Bastion with {s.get('workers', 1)} "
        f"worker process(es). Medians of {s['runs']} interleaved runs; "
        f"CPU measured {'per cgroup (exact)' if s['cpu_exact'] else 'from /proc (lower bound for sshd)'}.",  # noqa: E501
        f"Load average (1/5/15 min) at start {' '.join(result['loadavg']['start'])}, "
        f"at end {' '.join(result['loadavg']['end'])}: anything well above 0 means other work "
        "shared the cores and the figures are pessimistic and noisy.",
        "",
        "| figure | direct | ProxyJump | bastion | bastion/direct | bastion/ProxyJump "
        "| ProxyJump/direct |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    mib = s["bulk_bytes"] >> 20
    for cipher in CIPHERS:
        short = cipher.split("@")[0]
        b = fig["bulk"][cipher]
        lines.append(_row(f"bulk {mib} MiB {short}, MB/s", b["paths"], "mb_s", 0, b["ratios"]))
        lines.append(_row(f"bulk {short}, MB/s incl. connection set-up", b["paths"],
                          "mb_s_end_to_end", 0, None))  # fmt: skip
        lines.append(_row(f"bulk {short}, CPU s/GB of the middle", b["paths"], "cpu_s_per_gb",
                          2, None))  # fmt: skip
    for kind, b in fig.get("bulk_binary", {}).items():
        lines.append(_row(f"bulk {mib} MiB of {kind} (binary) aes128-gcm, MB/s", b["paths"],
                          "mb_s", 0, b["ratios"]))  # fmt: skip
        lines.append(_row(f"bulk of {kind}, CPU s/GB of the middle", b["paths"],
                          "cpu_s_per_gb", 2, None))  # fmt: skip
    st = fig["streams"]
    lines.append(_row(f"{s['streams']} concurrent streams x {s['stream_bytes'] >> 10} KiB, "
                      "aggregate MB/s", st["paths"], "mb_s", 0, st["ratios"]))  # fmt: skip
    lines.append(_row("streams, CPU s/GB of the middle", st["paths"], "cpu_s_per_gb", 2, None))
    su = fig["setup"]
    lines.append(_row("connection set-up, wall ms (ssh ... true)", su["paths"], "wall_ms", 1,
                      None))  # fmt: skip
    lines.append(_row("connection set-up, CPU ms of the middle", su["paths"], "cpu_ms", 1,
                      su["ratios"]))  # fmt: skip
    for kind in ("exec", "pty"):
        e = fig[f"echo_{kind}"]
        lines.append(_row(f"echo round trip {kind}, p50 µs", e["paths"], "p50_us", 0,
                          e["ratios"]))  # fmt: skip
        lines.append(_row(f"echo round trip {kind}, p99 µs", e["paths"], "p99_us", 0, None))
    c = fig["commands"]
    lines.append(_row(f"commands/s (`true`, {s['command_concurrency']} channels at a time, one "
                      "connection)", c["paths"], "per_s", 0, c["ratios"]))  # fmt: skip
    lines += ["", "The middle is the target's sshd for direct, the jump host's sshd for "
              "ProxyJump, and the bastion process for the bastion.", ""]  # fmt: skip
    rec = [(f"text ({c.split('@')[0]})", fig["bulk"][c]) for c in CIPHERS]
    rec += [(k, b) for k, b in fig.get("bulk_binary", {}).items()]
    lines += ["| bulk through the bastion | recording bytes per byte moved | bastion CPU s/GB |",
              "|---|---:|---:|"]
    for label, b in rec:
        p = b["paths"]["bastion"]
        if "recording_per_byte" in p:
            lines.append(f"| {label} | {p['recording_per_byte']:.3f} | "
                         f"{p['cpu_s_per_gb']:.2f} |")
    lines.append("")
    lines += ["## Idle sessions", "",
              "| sessions | bastion KiB/session (RSS growth) | bastion RSS MiB | open s |",
              "|---:|---:|---:|---:|"]  # fmt: skip
    for n, v in fig["idle"]["bastion"].items():
        lines.append(f"| {n} | {_f(v['kib_per_session'], 1)} | {_f(v['total_mib'], 1)} | "
                     f"{_f(v['open_seconds'], 1)} |")  # fmt: skip
    for n, v in fig["idle"].get("jump", {}).items():
        lines.append(f"\nProxyJump at {n} sessions: {_f(v['kib_per_session'], 0)} KiB per "
                     "session (PSS of the jump host's per-connection sshd processes).")  # fmt: skip
    g = fig["gate"]
    lines += ["", "## Gate and masker", "",
              f"Gate (policy engine over the {g['corpus_lines']}-line corpus): "
              f"{_f(g['decisions_per_s'])} decisions/s, p50 {g['p50_us']} µs, "
              f"p99 {g['p99_us']} µs, max {g['max_us']} µs.", "",
              "| masker traffic (4 KiB chunks) | engine | MB/s | p50 µs | p99 µs |",
              "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in fig["masker"]["rows"]:
        lines.append(f"| {r['traffic']} | {r['engine']} | {_f(r['mb_per_s'], 1)} | "
                     f"{_f(r['p50_us'], 1)} | {_f(r['p99_us'], 1)} |")  # fmt: skip
    lines += ["", "## Goals", "", "| goal | measured | target | result |", "|---|---:|---|---|"]
    for item in result["goals"]:
        verdict = {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[item["pass"]]
        note = f" ({item['note']})" if item["note"] else ""
        lines.append(f"| {item['goal']} | {item['measured']} | {item['target']} | "
                     f"{verdict}{note} |")  # fmt: skip
    return "\n".join(lines) + "\n"
