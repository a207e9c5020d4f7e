"""A served job beside its in-process twin: what serving costs, measured on the same frames.

A job is *served* when its model is an endpoint URL (the v2 client); its twin is the in-process job of the
same run on the same source, scenario and level, preferring the backend the server said it hosts. Per pair:
latency (p50, and for the server scenario the end-to-end p99 and whether it met the bound), the serving
overhead per stage (served minus in-process: the client's encode is *pre*, the request is *infer*, parsing
the reply is *post*), the request split into the server's own compute and the rest (``net_ms``: transfer,
HTTP, queueing in the server), and agreement of the boxes. Written to ``serving.csv`` and shown in the report.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

SERVER_STAGES = ("server_decode_ms", "server_pre_ms", "server_infer_ms", "server_post_ms")
COLUMNS = ["served_job", "twin_job", "scenario", "level", "frames", "served_p50_ms", "twin_p50_ms",
           "overhead_p50_ms", "overhead_pre_ms", "overhead_infer_ms", "overhead_post_ms", "net_ms",
           "server_compute_ms", "served_e2e_p99_ms", "twin_e2e_p99_ms", "served_bound_met", "twin_bound_met",
           "agreement", "mean_iou"]
#: what each column of the report's table says
LABELS = {"served_job": "served job", "twin_job": "in-process twin", "level": "level",
          "served_p50_ms": "served p50 ms", "twin_p50_ms": "in-process p50 ms", "overhead_p50_ms": "overhead p50 ms",
          "overhead_pre_ms": "overhead pre ms", "overhead_infer_ms": "overhead infer ms",
          "overhead_post_ms": "overhead post ms", "net_ms": "net ms (request - server)",
          "server_compute_ms": "server compute ms", "served_e2e_p99_ms": "served e2e p99 ms",
          "twin_e2e_p99_ms": "in-process e2e p99 ms", "served_bound_met": "served within bound",
          "twin_bound_met": "in-process within bound", "agreement": "boxes agreeing", "mean_iou": "mean IoU"}


def is_served(model: Any) -> bool:
    return str(model or "").lower().startswith(("http://", "https://", "grpc://"))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _diff(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return None if x is None or y is None else round(x - y, 4)


def _key(v: Any) -> Any:
    """A runs.csv cell as compared between jobs: numbers as numbers, empty and NaN as ""."""
    n = _num(v)
    if n is not None:
        return n
    text = str(v if v is not None else "").strip()
    return "" if text.lower() == "nan" else text


def _same(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    return _key(a.get(key)) == _key(b.get(key))


def serving_rows(results: Any) -> list[dict[str, Any]]:
    """One row per served job that has an in-process twin in the same folder."""
    runs = [dict(r) for r in results.runs.to_dict("records")] if results.runs is not None else []
    ok = [r for r in runs if r.get("status") in ("ok", "fallback")]
    agreement = results.agreement
    pairs = [dict(r) for r in agreement.to_dict("records")] if agreement is not None else []
    frames = results.frames
    rows = []
    for served in (r for r in ok if is_served(r.get("model"))):
        twins = [t for t in ok if not is_served(t.get("model"))
                 and all(_same(served, t, k) for k in ("video", "scenario", "level", "frames"))]
        if not twins:
            continue
        job = results.jobs.get(served["job_id"])
        hosted = (job.model_info.get("server_backend") if job is not None else None) or ""
        twin = next((t for t in twins if t.get("backend") == hosted), twins[0])
        mine = frames[frames["job_id"] == served["job_id"]] if frames is not None and len(frames) else None
        have = mine is not None and all(c in mine.columns for c in (*SERVER_STAGES, "net_ms"))
        pair = next((p for p in pairs if {p.get("job_a"), p.get("job_b")} == {served["job_id"], twin["job_id"]}), {})
        shares = [_num(pair.get("matched_share_a")), _num(pair.get("matched_share_b"))]
        rows.append({
            "served_job": served["job_id"], "twin_job": twin["job_id"], "scenario": served.get("scenario"),
            "level": served.get("level"), "frames": served.get("frames"),
            "served_p50_ms": _num(served.get("p50_ms")), "twin_p50_ms": _num(twin.get("p50_ms")),
            "overhead_p50_ms": _diff(served.get("p50_ms"), twin.get("p50_ms")),
            "overhead_pre_ms": _diff(served.get("pre_ms"), twin.get("pre_ms")),
            "overhead_infer_ms": _diff(served.get("infer_ms"), twin.get("infer_ms")),
            "overhead_post_ms": _diff(served.get("post_ms"), twin.get("post_ms")),
            "net_ms": round(float(mine["net_ms"].astype(float).mean()), 4) if have else None,
            "server_compute_ms": round(float(mine[list(SERVER_STAGES)].astype(float).sum(axis=1).mean()), 4)
            if have else None,
            "served_e2e_p99_ms": _num(served.get("e2e_p99_ms")), "twin_e2e_p99_ms": _num(twin.get("e2e_p99_ms")),
            "served_bound_met": served.get("bound_met"), "twin_bound_met": twin.get("bound_met"),
            "agreement": min(s for s in shares if s is not None) if any(s is not None for s in shares) else None,
            "mean_iou": _num(pair.get("mean_iou")),
        })
    return rows


def write_serving(out_dir: Path | str, writer: Any) -> None:
    """serving.csv through the folder's writer (nothing when no served job has a twin)."""
    import pandas as pd

    from harness.report.load import load_results

    rows = serving_rows(load_results(Path(out_dir)))
    if rows:
        writer.write_table("serving", pd.DataFrame(rows, columns=COLUMNS))


def serving_html(results: Any) -> str:
    """The report's table of served jobs and their twins ("" when there is none)."""
    rows = serving_rows(results)
    if not rows:
        return ""
    shown = [c for c in COLUMNS if c not in ("scenario", "frames") and any(r.get(c) not in (None, "") for r in rows)]
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in shown)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in shown) + "</tr>"
                   for r in rows)
    return ("<p>Each job that called a model over the network beside the same model in-process, on the same "
            "frames: the overhead is served minus in-process per stage (encode = pre, the request = infer, "
            "parsing the reply = post); the request splits into the server's own compute and the rest (net: "
            "transfer, HTTP, the server's queue). docs/serving.md says what is timed where.</p>"
            f"<table><tr>{head}</tr>{body}</table>")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)
