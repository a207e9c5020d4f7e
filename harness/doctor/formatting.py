"""The report as text for a terminal: the machine first, then one verdict table.

Works from the JSON-able report (not the dataclasses), so that a report read back from ``env.json``, or
sent from another Python environment or cluster node, prints the same. :func:`format_reports` prints
several reports labelled by environment in one table; :func:`format_report` is the one-report case.
"""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

from harness.doctor.libraries import CudaLibrary
from harness.doctor.rules import display_name
from harness.doctor.verdicts import combined_exit_status

_EXIT_LEGEND = "(0 all GPU-ready, 1 a mismatch to fix, 3 not GPU-ready)"


def _short_path(path: str) -> str:
    i = path.find("site-packages/")
    return path[i:] if i >= 0 else path


def _machine_lines(report: Mapping[str, Any], width: int, title: str) -> list[str]:
    sysf = report.get("system", {})
    drv = sysf.get("driver", {})
    lines = [title]

    def row(label: str, value: str) -> None:
        lines.extend(textwrap.wrap(value, width, initial_indent=f"  {label:<22}", subsequent_indent=" " * 24,
                                   break_on_hyphens=False) or [f"  {label}"])

    if drv.get("present"):
        row("NVIDIA driver", f"{drv.get('version') or '?'} (from {drv.get('source')}), CUDA up to "
                             f"{drv.get('cuda') or '?'} ({drv.get('cuda_source') or '-'})")
    else:
        row("NVIDIA driver", "none found: " + "; ".join(drv.get("errors", [])))
    gpus = drv.get("gpus") or []
    row("GPUs", ", ".join(f"{g['index']}: {g['name']}" for g in gpus) or str(drv.get("gpu_count", 0)))
    cvd = sysf.get("cuda_visible_devices")
    row("CUDA_VISIBLE_DEVICES", "(unset)" if cvd is None else repr(cvd) + f" -> {sysf.get('visible_gpus')} visible")
    libs = sysf.get("libraries", [])
    if not libs:
        row("CUDA libraries", "none found")
    for i, lib in enumerate(libs):
        what = CudaLibrary(**lib)
        text = f"{what.label()}, {what.provenance() if what.origin == 'pip' else what.origin}"
        if what.loadable is False:
            text += f", NOT LOADABLE: {what.error}"
        row("CUDA libraries" if i == 0 else "", text)
        lines.append(" " * 26 + _short_path(what.path))
    return lines


def _built_for(facts: Mapping[str, Any]) -> str:
    if facts.get("cuda_build") is False:
        return "CPU only"
    if facts.get("built_cuda"):
        return f"CUDA {facts['built_cuda']}" + (f", cuDNN {facts['built_cudnn']}" if facts.get("built_cudnn") else "")
    return "-"


def _verdict_lines(label: str | None, report: Mapping[str, Any], width: int) -> list[str]:
    lines = []
    env = f"{label[:11]:<12}" if label is not None else ""
    verdicts = report.get("backends", {})
    if label is not None and not report.get("explicit"):
        # several environments: a framework an environment was not made for is noise, not a finding
        absent = [name for name, v in verdicts.items() if v.get("status") == "not-installed"]
        verdicts = {name: v for name, v in verdicts.items() if name not in absent}
        if absent:
            lines.append(f"{env}(not installed there: {', '.join(absent)})")
    for name, v in verdicts.items():
        f = v.get("facts") or {}
        fw = f"{display_name(f.get('framework', '')) if f.get('framework') else '?'} {f.get('version') or ''}".strip()
        seen = "-" if f.get("gpus") is None else str(f.get("gpus"))
        status = v.get("status", "?")
        lines.append(f"{env}{name:<12}{fw[:21]:<22}{_built_for(f)[:25]:<26}{seen:<6}"
                     f"{status.upper() if status == 'mismatch' else status}")
        details = f.get("details") or {}
        lines_of = [("why", v.get("reason")), ("fix", v.get("fix"))]
        if details.get("importers"):  # the model formats the framework reads (OpenCV DNN's readNetFrom*)
            lines_of.append(("importers", ", ".join(details["importers"])))
        for tag, text in lines_of:
            if text:
                lines.extend(textwrap.wrap(text, width, initial_indent=f"    {tag}: ", subsequent_indent=" " * 9,
                                           break_on_hyphens=False))
    return lines


def _format(entries: Sequence[tuple[str | None, Mapping[str, Any]]], width: int) -> str:
    lines: list[str] = []
    for label, report in entries:
        if "system" not in report:  # an environment the doctor could not ask: its row says why
            continue
        lines += _machine_lines(report, width, "Machine" if label is None else f"Machine (environment {label})")
        lines.append("")
    env_header = f"{'env':<12}" if entries and entries[0][0] is not None else ""
    lines.append(f"{env_header}{'backend':<12}{'framework':<22}{'built for':<26}{'GPUs':<6}verdict")
    for label, report in entries:
        lines += _verdict_lines(label, report, width)
    if len(entries) == 1 and entries[0][0] is None:
        report = entries[0][1]
        lines += ["", f"exit status {report.get('exit_status')} {_EXIT_LEGEND}; {report.get('duration_s')} s"]
    else:
        code = combined_exit_status(int(r.get("exit_status", 3)) for _, r in entries)
        each = ", ".join(f"{label} {r.get('exit_status')} in {r.get('duration_s')} s" for label, r in entries)
        lines += [""] + textwrap.wrap(f"exit status {code} {_EXIT_LEGEND}; {each}", width)
    return "\n".join(lines)


def format_report(report: Mapping[str, Any], width: int = 100) -> str:
    """The report as text for a terminal ``width`` columns wide."""
    return _format([(None, report)], width)


def format_reports(reports: Mapping[str, Mapping[str, Any]], width: int = 100) -> str:
    """Several reports (one per Python environment or node, keyed by its label) as one verdict table."""
    return _format(list(reports.items()), width)
