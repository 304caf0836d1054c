"""The one summary of ``scripts/reliability.sh``: the load's figures and each fault test's result.

    python -m bench.reliability.report OUT_DIR

reads ``OUT_DIR/load.json`` (from ``bench.reliability.load --json``), ``OUT_DIR/faults.xml``
(pytest's JUnit XML of the fault tests) and ``OUT_DIR/faults.jsonl`` (figures the network
fault tests write), prints them, and exits 0 only if the load passed and no fault test failed.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def fault_results(xml: Path) -> list[tuple[str, str]]:
    """(test id, passed/failed/skipped) for every test case in a JUnit XML file."""
    results = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            state = "FAILED"
        elif case.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        results.append((name.replace("tests.", "").replace(".", "/", 1), state))
    return results


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    ok = True
    load_path = out / "load.json"
    if load_path.exists():
        load = json.loads(load_path.read_text())
        check = load["check"]
        print(f"LOAD   {'PASS' if load['ok'] else 'FAIL'}: {load['agents']} agents x "
              f"{load['rounds']} rounds; sessions {load['sessions']}, commands "
              f"{load['commands_total']}, errors {load['errors']}, lost audit rows "
              f"{check['lost_rows']}, unrecorded sessions {check['unrecorded_sessions']}, "
              f"recordings verified {check['recordings_ok']}/{check['recordings']}, audit "
              f"{'intact' if check['audit_intact'] else 'BROKEN'} ({check['audit_rows']} rows), "
              f"RSS after rounds {load['rss_after_rounds_mib']} MiB")  # fmt: skip
        ok &= bool(load["ok"])
    else:
        print("LOAD   missing: the load script wrote no results")
        ok = False
    xml = out / "faults.xml"
    results = fault_results(xml) if xml.exists() else []
    failed = [name for name, state in results if state == "FAILED"]
    passed = sum(1 for _, state in results if state == "passed")
    print(f"FAULTS {'PASS' if results and not failed else 'FAIL'}: {passed} passed, "
          f"{len(failed)} failed, {len(results) - passed - len(failed)} skipped")  # fmt: skip
    for name, state in results:
        print(f"  {state:7} {name}")
    figures = out / "faults.jsonl"
    if figures.exists():
        for line in figures.read_text().splitlines():
            f = json.loads(line)
            print(f"  {f['fault']}: affected session -> {f['affected']}; other sessions kept "
                  f"echoing ({f['other_session_echoes']} echoes); audit {f['audit_rows']} rows "
                  f"intact, {f['recordings']} recordings verified, "
                  f"lost rows {f['lost_rows']}")  # fmt: skip
    ok &= bool(results) and not failed
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
