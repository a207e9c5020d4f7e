"""The machine x backend table: the same detector's latency and FPS on each machine, like a cross-hardware
benchmark table. Shown when the jobs ran on more than one machine or on a Ray cluster.

A machine is a row: the suite's machine kind when a job named one, else the host; two Ray nodes of one host
(a simulated cluster) stay apart by their node id. Each cell lists the measured jobs of that machine and
backend (p50 latency and model FPS; the device and model when several jobs share the cell), so nothing is
averaged across settings that differ.
"""

from __future__ import annotations

import html
import math
from typing import Any

from harness.core.registry import backend_order_key

MEASURED = ("ok", "fallback")


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def machine_label(row: dict[str, Any], hosts_with_several_nodes: set[str]) -> str:
    """How a row's machine is named in the table."""
    host = _text(row.get("hostname")) or "?"
    node = _text(row.get("node"))
    where = f"{host}/{node[:8]}" if host in hosts_with_several_nodes and node and node != "local" else host
    machine = _text(row.get("machine"))
    return f"{machine} ({where})" if machine else where


def machine_rows(runs: Any) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{machine label: {backend: [measured rows]}}`` for the table; empty when it has nothing to show."""
    if "hostname" not in runs.columns or "status" not in runs.columns:
        return {}
    rows = [r for r in runs.to_dict("records") if r.get("status") in MEASURED]
    if not rows:
        return {}
    nodes: dict[str, set[str]] = {}
    for r in rows:
        nodes.setdefault(_text(r.get("hostname")), set()).add(_text(r.get("node")))
    several = {host for host, ids in nodes.items() if len(ids) > 1}
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        table.setdefault(machine_label(r, several), {}).setdefault(str(r.get("backend")), []).append(r)
    on_cluster = any(_text(r.get("executor")) == "ray" for r in rows)
    return table if len(table) > 1 or on_cluster else {}


def _cell(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        p50, fps = r.get("p50_ms"), r.get("model_fps")
        text = (f"{float(p50):.1f} ms · {float(fps):.1f} FPS" if _text(p50) and _text(fps) else "?")
        if len(rows) > 1:
            text += f" <span class='meta'>({html.escape(_text(r.get('device_actual')))}, " \
                    f"{html.escape(_text(r.get('model')))})</span>"
        lines.append(text)
    return "<br>".join(lines)


def machine_table_html(runs: Any) -> str:
    """The table as HTML (a heading and a table), or "" when the run has one machine and no cluster."""
    table = machine_rows(runs)
    if not table:
        return ""
    backends = sorted({b for cells in table.values() for b in cells}, key=backend_order_key)
    head = "<th class='l'>machine</th><th class='l'>CPU / GPU</th>" + "".join(
        f"<th>{html.escape(b)}</th>" for b in backends)
    body = []
    for label, cells in table.items():
        first = next(iter(cells.values()))[0]
        hardware = " / ".join(x for x in (_text(first.get("cpu_model")), _text(first.get("gpu_name"))) if x)
        tds = "".join(f"<td>{_cell(cells[b]) if b in cells else ''}</td>" for b in backends)
        body.append(f"<tr><td class='l'>{html.escape(label)}</td><td class='l'>{html.escape(hardware)}</td>{tds}</tr>")
    return ("<h2>Machines x backends</h2><p class='meta'>p50 latency per frame and model FPS of each measured "
            "job, by the machine it ran on (runs.csv: node, hostname, cpu_model, gpu_name).</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
