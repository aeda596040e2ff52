"""The faults table: fault × runner → class (expected), time to verdict, what the runner did after the fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def fault_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per fault cell record (those whose observations carry a ``fault``), sorted; [] when there is none."""
    rows = []
    for record in records:
        fault = (record.get("observations") or {}).get("fault")
        if not isinstance(fault, Mapping):
            continue
        got, expected = fault.get("class") or record.get("outcome") or "?", fault.get("expected_class")
        if expected:
            mark = "as expected" if got in str(expected).split(" or ") else f"EXPECTED {expected}"
        else:  # a condition: the scenario's own expectation decided the cell
            mark = f"{record.get('outcome') or '?'} against the scenario's own expectation"
        verdict = fault.get("time_to_verdict")
        seconds = f"{verdict:.0f}s" if isinstance(verdict, int | float) else "-"
        after = (fault.get("behaviour") or {}).get("sentence") or ("no fault injected" if not fault.get("fired")
                                                                   else "-")
        end = fault.get("aftermath_end")
        rows.append((str(record.get("scenario")), str(record.get("runner")),
                     f"{record.get('scenario')} × {record.get('runner')} → {got} ({mark}); "
                     f"verdict {seconds} after the fault "
                     f"({fault.get('fault')}); then: {after}" + (f" [{end}]" if end else "")))
    return [line for _, _, line in sorted(rows)]
