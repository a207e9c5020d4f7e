"""report.html: the page a person opens first. Self-contained (plots embedded as base64 PNG, no scripts,
no network), so it can be mailed or attached to a CI run as one file.

Order of the page follows what a reader must know first: jobs that silently ran on the CPU (FALLBACK), jobs
that failed and why, then the summary table, the plots, the environment and the doctor's verdicts.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.report.labels import backend_label, many_environments
from harness.report.load import Results
from harness.report.machines import machine_table_html
from harness.report.ranked import collapsed_reasons, summary_html


@dataclass
class PlotEntry:
    name: str
    caption: str
    path: Path | None = None  # None when the plot failed or had nothing to draw
    error: str = ""


SUMMARY_COLUMNS = [
    ("job_id", "job"), ("backend", "backend"), ("model", "model"), ("device_requested", "device asked"),
    ("device_actual", "device used"), ("status", "status"), ("valid", "valid"), ("scenario", "scenario"),
    ("level", "level"), ("preprocess", "preprocess"), ("frames", "frames"),
    ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"),
    ("infer_ms", "infer ms"), ("model_fps", "model FPS"), ("pipeline_fps", "pipeline FPS"), ("load_s", "load s"),
    ("first_ms", "first ms"), ("peak_rss_mb", "peak RSS MB"), ("peak_gpu_mb", "peak GPU MB"), ("ap", "AP"),
    ("ap50", "AP50"), ("ar100", "AR100"), ("dets_per_frame", "boxes/frame"),
    # precision: what was asked, what ran, the floor against fp32, and the model's facts
    ("precision_requested", "precision asked"), ("precision", "precision ran"), ("ap50_vs_fp32", "AP50 / fp32"),
    ("below_floor", "below floor"), ("params_m", "params M"), ("gflops", "GFLOPs"), ("model_mb", "model MB"),
    ("input_size", "input"),
]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{margin-bottom:4px} .meta{color:#666;font-size:13px;margin-bottom:16px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0 20px}
th,td{border:1px solid #ddd;padding:4px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0} td.l,th.l{text-align:left}
tr.row-fallback td{background:#fff3cd} tr.row-failed td,tr.row-crashed td,tr.row-timeout td{background:#f8d7da}
tr.row-invalid td{color:#777;background:repeating-linear-gradient(135deg,#fff,#fff 6px,#f3f3f3 6px,#f3f3f3 12px)}
td small{color:#777;white-space:nowrap} .banner.invalid{background:#f3f3f3;border:2px solid #999}
.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:14px}
.banner.fallback{background:#fff3cd;border:2px solid #e0a800} .banner.failed{background:#f8d7da;border:2px solid #c82333}
.banner.note{background:#e8f1fb;border:1px solid #8bb3e0}
figure{margin:18px 0} figure img{max-width:100%;border:1px solid #eee} figcaption{color:#555;font-size:13px}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px} pre{background:#f7f7f7;padding:8px;overflow:auto}
table.ranked{font-size:13.5px} ul.verdict{margin:-12px 0 12px;font-size:13px;color:#444}
h3{margin:14px 0 2px;font-size:15px}
.ok{color:#1e7e34;font-weight:600} .bad{color:#c82333;font-weight:600} .warn{color:#b58100;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


#: a plot file above this size is embedded as a JPEG preview linked to the full PNG beside the page
PREVIEW_ABOVE_BYTES = 200_000
#: the preview's width in pixels (the page is at most 1500 px wide)
PREVIEW_WIDTH = 1500


def _img_tag(path: Path, alt: str) -> str:
    """The plot embedded in the page (self-contained); a large one (the frame grid: photographs) as a JPEG
    preview linking to its PNG, so the page stays under 1 MB."""
    raw = path.read_bytes()
    if len(raw) <= PREVIEW_ABOVE_BYTES:
        data = base64.b64encode(raw).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
    import io

    from PIL import Image

    with Image.open(io.BytesIO(raw)) as img:
        preview = img.convert("RGB")
        if preview.width > PREVIEW_WIDTH:  # no wider than the page shows it; the link has every pixel
            preview.thumbnail((PREVIEW_WIDTH, preview.height), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        preview.save(buf, format="JPEG", quality=80, optimize=True)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    href = f"{path.parent.name}/{path.name}"
    return (f'<a href="{_e(href)}" title="full-size PNG"><img src="data:image/jpeg;base64,{data}" '
            f'alt="{_e(alt)}"></a>')


def _invalid(row: dict[str, Any]) -> bool:
    """A row the validity rules marked invalid (older folders have no ``valid`` column: not invalid)."""
    v = row.get("valid")
    return v is False or str(v).strip().lower() == "false"


def _scenario_cell(c: str, r: dict[str, Any], text: str) -> str:
    """Scenarios: the 95 % bootstrap interval under p50/p90, and the validity with its notes."""
    if c in ("p50_ms", "p90_ms"):
        lo, hi = r.get(f"{c[:3]}_ci_low_ms"), r.get(f"{c[:3]}_ci_high_ms")
        if isinstance(lo, float) and isinstance(hi, float) and not (math.isnan(lo) or math.isnan(hi)):
            text += f"<br><small title='95 % bootstrap interval'>[{_fmt(lo)}, {_fmt(hi)}]</small>"
    if c == "valid" and text:
        text = (f'<span class="bad" title="{_e(r.get("validity_notes"))}">INVALID</span>' if _invalid(r)
                else '<span class="ok">valid</span>')
    return text


def _has_values(column: Any) -> bool:
    """A column with at least one cell (an empty text cell reads as "", an empty number as NaN)."""
    return bool((column.notna() & (column.astype(str) != "")).any())


def _summary_table(results: Results) -> str:
    runs = results.runs
    cols = [(c, t) for c, t in SUMMARY_COLUMNS if c in runs.columns and (c in ("job_id", "status") or _has_values(runs[c]))]
    with_env = many_environments(runs)  # envs-b: backend @ environment, and which framework version
    if with_env and "framework_version" in runs.columns and ("backend", "backend") in cols:
        cols.insert(cols.index(("backend", "backend")) + 1, ("framework_version", "framework"))
    head = "".join(f'<th class="{"l" if c in ("job_id", "backend", "model", "status") else ""}">{_e(t)}</th>'
                   for c, t in cols)
    body = []
    for r in runs.to_dict("records"):
        status = str(r.get("status", ""))
        cells = []
        for c, _ in cols:
            v = r.get(c)
            cls = "l" if c in ("job_id", "backend", "model", "status", "framework_version") else ""
            text = _e(backend_label(r, with_env) if c == "backend" else _fmt(v))
            if c == "status":
                below = str(r.get("below_floor")).strip().lower() == "true"  # never a green ok under the floor
                kind = "bad" if below else "ok" if status == "ok" else "warn" if status == "fallback" else "bad"
                text = f'<span class="{kind}">{text}{", below floor" if below else ""}</span>'
            text = _scenario_cell(c, r, text)
            cells.append(f'<td class="{cls}">{text}</td>')
        invalid = " row-invalid" if _invalid(r) else ""
        body.append(f'<tr class="row-{_e(status)}{invalid}">{"".join(cells)}</tr>')
    return (f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


def _flagged(runs: Any, column: str) -> Any:
    """The rows whose bool column says True (the reader fills a fallback column an older folder lacks)."""
    if column not in runs.columns:
        return runs.iloc[0:0]
    return runs[runs[column].map(lambda v: v is True or str(v).strip().lower() == "true")]


def _precision_banners(results: Results) -> str:
    """Precision fallbacks and variants below the accuracy floor, read from their columns."""
    runs = results.runs
    precision = _flagged(runs, "precision_fallback")
    out = []
    if len(precision):
        items = "".join(f"<li><b>{_e(r['job_id'])}</b>: asked for <code>{_e(r.get('precision_requested'))}</code>, "
                        f"ran <code>{_e(r.get('precision'))}</code>. {_e(r.get('cause'))}</li>"
                        for r in precision.to_dict("records"))
        out.append(f'<div class="banner fallback"><b>PRECISION FALLBACK: {len(precision)} job(s) ran at another '
                   "precision than asked.</b> Their numbers are that precision's. See docs/precision.md."
                   f"<ul>{items}</ul></div>")
    below = _flagged(runs, "below_floor")
    if len(below):
        items = "".join(f"<li><b>{_e(r['job_id'])}</b>: AP50 {_fmt(r.get('ap50'))} = "
                        f"{_fmt(r.get('ap50_vs_fp32'))} of {_e(r.get('fp32_job'))}'s (floor "
                        f"{_fmt(r.get('accuracy_floor'))})</li>" for r in below.to_dict("records"))
        out.append(f'<div class="banner failed"><b>BELOW THE ACCURACY FLOOR: {len(below)} precision variant(s)'
                   f" lost more AP50 against fp32 than the floor allows.</b><ul>{items}</ul></div>")
    return "".join(out)


def _banners(results: Results) -> str:
    runs = results.runs
    out = []
    out.append(_precision_banners(results))
    fb = _flagged(runs, "device_fallback")
    if len(fb):
        items = "".join(f"<li><b>{_e(r['job_id'])}</b>: asked for <code>{_e(r.get('device_requested'))}</code>, ran on "
                        f"<code>{_e(r.get('device_actual'))}</code>. {_e(r.get('cause'))}</li>"
                        for r in fb.to_dict("records"))
        out.append(f'<div class="banner fallback"><b>FALLBACK: {len(fb)} job(s) asked for a GPU and ran on the CPU.'
                   f"</b> Their numbers are CPU numbers. Run <code>harness doctor</code> to see why.<ul>{items}</ul></div>")
    invalid = [r for r in runs.to_dict("records") if r.get("status") in ("ok", "fallback") and _invalid(r)]
    if invalid:  # one line per distinct reason, with the jobs it covers (the same reason is never repeated)
        items = "".join(f"<li>{_e(reason)} <small>({len(jobs)} job(s): {_e(', '.join(jobs))})</small></li>"
                        for reason, jobs in collapsed_reasons(invalid))
        out.append(f'<div class="banner invalid"><b>INVALID: {len(invalid)} job(s) were measured on a machine that was '
                   "busy, slowed or too briefly watched</b>; their numbers describe that, not the detector. Rerun them "
                   f"on a quiet machine (or longer, with --min-duration).<ul>{items}</ul></div>")
    bad = runs[~runs["status"].isin(["ok", "fallback"])]
    if len(bad):
        items = "".join(f"<li><b>{_e(r['job_id'])}</b> ({_e(r['status'])}): {_e(r.get('cause'))}</li>"
                        for r in bad.to_dict("records"))
        out.append(f'<div class="banner failed"><b>{len(bad)} job(s) did not finish.</b><ul>{items}</ul></div>')
    return "".join(out)


def _doctor_html(doctor: Any) -> str:
    if doctor is None:
        return "<p>No doctor report in env.json (harness doctor was not available for this run).</p>"
    if isinstance(doctor, dict) and "error" in doctor and len(doctor) == 1:
        return f'<p class="bad">The doctor failed: {_e(doctor["error"])}</p>'
    rows = []
    backends = doctor.get("backends") if isinstance(doctor, dict) else None
    entries: list[tuple[str, Any]] = []
    if isinstance(backends, dict):
        entries = list(backends.items())
    elif isinstance(backends, list):
        entries = [(str(b.get("backend") or b.get("name") or i), b) for i, b in enumerate(backends) if isinstance(b, dict)]
    for name, entry in entries:
        if not isinstance(entry, dict):
            rows.append(f'<tr><td class="l">{_e(name)}</td><td class="l" colspan="2">{_e(entry)}</td></tr>')
            continue
        verdict = str(entry.get("status") or entry.get("verdict") or "")
        cls = {"gpu-ready": "ok", "cpu-only": "warn", "mismatch": "bad", "unknown": "warn"}.get(verdict, "")
        reason = entry.get("reason") or entry.get("why") or ""
        fix = entry.get("fix") or ""
        rows.append(f'<tr><td class="l">{_e(name)}</td><td class="l"><span class="{cls}">{_e(verdict)}</span></td>'
                    f'<td class="l">{_e(reason)}</td><td class="l">{_e(fix)}</td></tr>')
    table = ("<table><thead><tr><th class='l'>backend</th><th class='l'>verdict</th><th class='l'>why</th>"
             "<th class='l'>fix</th>"
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>") if rows else ""
    raw = json.dumps(doctor, indent=1, default=str)
    return f"{table}<details><summary>full doctor report</summary><pre>{_e(raw)}</pre></details>"


def _env_html(env: dict[str, Any]) -> str:
    machine = env.get("machine") or {}
    pkgs = env.get("packages") or {}
    items = [("created", env.get("created")), ("command", env.get("command")), ("python", env.get("python")),
             ("platform", env.get("platform"))] + [(k, v) for k, v in machine.items()]
    rows = "".join(f'<tr><td class="l">{_e(k)}</td><td class="l">{_e(v)}</td></tr>' for k, v in items if v is not None)
    pk = "".join(f'<tr><td class="l">{_e(k)}</td><td class="l">{_e(v)}</td></tr>' for k, v in pkgs.items())
    return (f"<table><tbody>{rows}</tbody></table><details><summary>package versions ({len(pkgs)})</summary>"
            f"<table><tbody>{pk}</tbody></table></details>")


def _pairs(mapping: dict[str, Any]) -> str:
    """A small mapping as ``key = value`` lines of one cell (a reader scans it; JSON was unreadable there)."""
    return "<br>".join(f"{_e(k)} = <code>{_e(v if not isinstance(v, (dict, list)) else json.dumps(v, default=str))}"
                       "</code>" for k, v in mapping.items() if v is not None and v != "")


def _placement_html(results: Results) -> str:
    """Placement evidence, the post-processing policy (one column per setting) and the versions, per job."""
    policies = {str(r["job_id"]): results.policy(str(r["job_id"])).to_dict() for r in results.runs.to_dict("records")}
    keys = list(dict.fromkeys(k for pol in policies.values() for k in pol))
    rows = []
    for r in results.runs.to_dict("records"):
        job = results.jobs.get(str(r["job_id"]))
        pol = policies[str(r["job_id"])]
        versions = job.info.get("versions", {}) if job is not None else {}
        cells = "".join(f"<td>{_e('all' if pol.get(k) is None else pol.get(k))}</td>" for k in keys)
        rows.append(f'<tr><td class="l">{_e(r["job_id"])}</td><td class="l">{_e(r.get("placement_evidence", ""))}</td>'
                    f'{cells}<td class="l">{_pairs(versions)}</td></tr>')
    heads = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
    return ("<table><thead><tr><th class='l'>job</th><th class='l'>placement evidence</th>"
            f"{heads}<th class='l'>framework versions</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _min_durations(results: Results) -> dict[str, float]:
    """Each job's --min-duration (the duration criterion of the verdict), from its saved spec."""
    out = {}
    for job_id, job in results.jobs.items():
        value = getattr(getattr(getattr(job, "spec", None), "scenario", None), "min_duration_s", None)
        if value:
            out[job_id] = float(value)
    return out


def render_html(results: Results, plots: Sequence[PlotEntry], *, video: Path | None = None,
                notes: Sequence[str] = (), sections: Sequence[Any] = ()) -> str:
    """The page; ``sections`` are the scenario sections (:mod:`harness.report.scenarios`), shown after the plots."""
    runs = results.runs
    n_ok = int((runs["status"] == "ok").sum())
    title = f"Detector comparison: {len(runs)} job(s)"
    sources = sorted({str(s) for s in runs.get("video", [])})
    meta = (f"{_e(results.env.get('created', ''))} &middot; {n_ok}/{len(runs)} ok &middot; source(s): "
            f"{_e(', '.join(sources))} &middot; folder <code>{_e(results.out)}</code>")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1><div class='meta'>{meta}</div>",
             # the answer first: ranked, with its trust marks, before any banner or wide table
             summary_html(runs, results.agreement, min_duration=_min_durations(results)),
             _banners(results)]
    for note in notes:
        parts.append(f'<div class="banner note">{_e(note)}</div>')
    parts.append("<h2>All columns</h2>" + _summary_table(results))
    parts.append("<p class='meta'>Latency is per frame: preprocess + inference + postprocess (decoding excluded), "
                 "after the warm-up. Model FPS comes from those stages; pipeline FPS from the wall clock of the whole "
                 "loop. AP uses every saved box; agreement and drawings use the policy's score threshold.</p>")
    parts.append(machine_table_html(runs))  # ray: latency and FPS per machine and backend
    parts.append("<h2>Plots</h2>")
    for p in plots:
        if p.path is not None and p.path.is_file():
            parts.append(f"<figure id='plot-{_e(p.name)}'>{_img_tag(p.path, p.caption)}"
                         f"<figcaption>{_e(p.caption)}</figcaption></figure>")
        elif p.error:
            parts.append(f"<p class='warn'>Plot {_e(p.name)} could not be drawn: {_e(p.error)}</p>")
    for section in sections:
        parts.append(f"<h2 id='scenario-{_e(section.scenario)}'>{_e(section.title)}</h2>{section.html}")
        plot = section.plot
        if plot.path is not None and plot.path.is_file():
            parts.append(f"<figure>{_img_tag(plot.path, plot.caption)}<figcaption>{_e(plot.caption)}</figcaption></figure>")
        elif plot.error:
            parts.append(f"<p class='warn'>Plot {_e(plot.name)} could not be drawn: {_e(plot.error)}</p>")
    if video is not None and video.is_file():
        parts.append(f"<h2>Annotated video</h2><p><a href='{_e(video.name)}'>{_e(video.name)}</a> (beside this page): "
                     "every job's boxes and per-frame latency, tiled.</p>")
    parts.append("<h2>Placement, policy and versions per job</h2>" + _placement_html(results))
    parts.append("<h2>Environment</h2>" + _env_html(results.env))
    parts.append("<h2>GPU readiness (harness doctor)</h2>" + _doctor_html(results.env.get("doctor")))
    parts.append("<p class='meta'>Files: runs.csv (one row per job), frames.csv (per-frame timings), "
                 "detections/&lt;job&gt;.json (COCO results; a job id too long for a file name gets a shortened "
                 "one, listed in jobs.json), agreement.csv, accuracy.csv, jobs.json, env.json. "
                 "Rebuild this page with <code>harness report DIR</code>.</p></body></html>")
    return "\n".join(parts)
