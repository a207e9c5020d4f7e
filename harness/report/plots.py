"""The report's plots, each a function of a loaded results folder that returns a matplotlib Figure.

matplotlib runs on the Agg backend (no display needed, safe in workers and CI). Every job keeps one colour
in every plot, so a reader can follow a backend from the latency box to the FPS bar to the frame grid.
Functions return ``None`` when the folder has nothing to draw for them (no accuracy columns, one job only
for an agreement matrix...), so the caller can leave the plot out instead of showing an empty axis.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

from harness.core.detections import Detections
from harness.report.labels import backend_label, many_environments
from harness.report.load import Results

#: matplotlib's tab10, in order: job i gets colour i
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _plt() -> Any:
    """pyplot on Agg, unless pyplot was set up already (a notebook's inline backend is kept)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def job_colors(job_ids: Sequence[str]) -> dict[str, str]:
    return {j: PALETTE[i % len(PALETTE)] for i, j in enumerate(job_ids)}


def short_label(row: Any, with_env: bool = False) -> str:
    """``backend device->actual`` plus what tells jobs of one backend apart (model, preprocess, tag);
    ``with_env``: ``backend @ environment`` (a run with jobs in several environments)."""
    job_id = str(row["job_id"])
    backend = backend_label(row, with_env) if str(row.get("backend", "")) else job_id
    dev_req, dev_act = str(row.get("device_requested", "")), str(row.get("device_actual", ""))
    device = dev_req if (not dev_act or dev_act == dev_req) else f"{dev_req}->{dev_act}"
    label = f"{backend} {device}".strip()
    model = str(row.get("model", ""))
    if model and model not in ("ssdlite-pedestrian", "reference"):
        label += f" [{model[:28]}]"
    scenario = str(row.get("scenario", "") or "")  # scenarios: which scenario and level
    if scenario and scenario != "single-stream":
        label += f" {scenario} {row.get('level', '')}".rstrip()
    label += _precision_label(row)
    return label


def _precision_label(row: Any) -> str:
    """`` int8`` for a job that asked for a precision; `` bf16->fp32`` when it ran another."""
    asked = str(row.get("precision_requested", "") or "")
    ran = str(row.get("precision", "") or "")
    if not asked:
        return ""
    if ran in ("", asked):
        return f" {asked}"
    return f" auto={ran}" if asked == "auto" else f" {asked}->{ran}"


def labels_for(results: Results, job_ids: Sequence[str]) -> dict[str, str]:
    rows = {str(r["job_id"]): r for r in results.runs.to_dict("records")}
    with_env = many_environments(results.runs)  # envs-b: opencv @ ocv4 beside opencv @ default
    labels = {j: short_label(rows[j], with_env) if j in rows else j for j in job_ids}
    seen: dict[str, int] = {}
    for lab in labels.values():
        seen[lab] = seen.get(lab, 0) + 1
    return {j: (j if seen[lab] > 1 else lab) for j, lab in labels.items()}  # ambiguous -> full job id


def plain_ticks(axis: Any) -> None:
    """A log axis labelled 20, 50, 100, 200 rather than 10^2: a reader compares numbers, not exponents."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def latency_samples(results: Results, job_id: str) -> tuple[Any, bool]:
    """A job's latency samples as runs.csv computed its percentiles, and whether they are per batch.

    An offline job's frames.csv rows repeat their batch's stage times once per frame; its percentiles are
    per batch (what a frame waits for its result), so the plot takes one sample per batch, or its p90 would
    disagree with runs.csv's.
    """
    rows = results.frames[results.frames["job_id"] == job_id]
    job = results.jobs.get(job_id)
    own = job.frames if job is not None else None  # the job's own frames file keeps the scenario's columns
    if own is not None and "batch_index" in own.columns and own["batch_index"].notna().any():
        per_batch = own.drop_duplicates(subset=["batch_index"], keep="first")
        return per_batch[["pre_ms", "infer_ms", "post_ms"]].sum(axis=1).to_numpy(), True
    return rows["total_ms"].dropna().to_numpy(), False


def loadgen_percentile(values: Any, q: float) -> float:
    from harness.measure.metrics.latency import loadgen_percentile as percentile

    return float(percentile(values, q))


def latency_distribution(results: Results) -> Any:
    """Per-frame latency (pre + infer + post) per job as box plots, p50/p90 marked: the spread, not just a mean.

    The axis spans the jobs' 1-99 % ranges (the whiskers), so a few stalls cannot squeeze every box into a
    corner; frames beyond the axis are counted beside their job, with the slowest one's latency.
    """
    import numpy as np

    plt = _plt()
    jobs = [j for j in results.job_ids() if (results.frames["job_id"] == j).any()]
    if not jobs:
        return None
    labels, colors = labels_for(results, jobs), job_colors(results.job_ids())
    samples = [latency_samples(results, j) for j in jobs]
    data = [d for d, _ in samples]
    batched = [b for _, b in samples]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(jobs) + 1.6))
    pos = list(range(len(jobs), 0, -1))
    import matplotlib

    horizontal = ({"orientation": "horizontal"} if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
                  else {"vert": False})
    box = ax.boxplot(data, positions=pos, widths=0.6, whis=(1, 99), showfliers=True, patch_artist=True,
                     flierprops={"markersize": 2, "alpha": 0.4}, **horizontal)
    for patch, j in zip(box["boxes"], jobs):
        patch.set_facecolor(colors[j])
        patch.set_alpha(0.55)
    filled = [d for d in data if len(d)]
    low = min(float(np.percentile(d, 1)) for d in filled)
    high = max(float(np.percentile(d, 99)) for d in filled)
    medians = [float(np.median(d)) for d in filled]
    if min(medians) > 0 and max(medians) / min(medians) > 8:  # one slow job would flatten the others
        ax.set_xscale("log")
        ax.set_xlim(low * 0.8, high * 3)
        plain_ticks(ax.xaxis)
    else:
        ax.set_xlim(left=0, right=high * 1.6)
    edge = ax.get_xlim()[1]
    for y, d, per_batch in zip(pos, data, batched):
        if not len(d):
            continue
        # runs.csv's method (LoadGen's: always one of the samples), so the labels read as the CSV does
        p50, p90, p99 = (loadgen_percentile(d, q) for q in (50, 90, 99))
        ax.plot([p90], [y], marker="|", color="black", markersize=14)
        text = f"p50 {p50:.1f}  p90 {p90:.1f} ms" + (" per batch" if per_batch else "")
        beyond = d[d > edge]
        if len(beyond):  # off the axis: say how many and how slow, and point at them
            ax.plot([edge], [y], marker=">", color="black", markersize=6, clip_on=False)
            text += f"\n{len(beyond)} frame(s) off the axis, up to {float(beyond.max()):.0f} ms"
        shown = d[d <= edge]
        anchor = float(shown.max()) if len(shown) else float(p99)  # right of the last point drawn
        ax.annotate(text, (anchor, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7.5)
    ax.set_yticks(pos, [labels[j] for j in jobs])
    unit = "per frame" if not any(batched) else ("per batch" if all(batched) else "per frame (offline: per batch)")
    ax.set_xlabel(f"latency {unit}, ms (preprocess + inference + postprocess; whiskers 1-99 %, | = p90)")
    ax.set_title("Latency distribution per job")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def fps_bars(results: Results) -> Any:
    """Model FPS (from pre+infer+post) and pipeline FPS (wall clock with decode) side by side per job."""
    plt = _plt()
    rows = results.measured
    if rows.empty:
        return None
    jobs = [str(j) for j in rows["job_id"]]
    labels = labels_for(results, jobs)
    import numpy as np

    x = np.arange(len(jobs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(jobs) + 2), 4.6))
    colors = job_colors(results.job_ids())
    model = rows["model_fps"].astype(float).to_numpy()
    pipe = rows["pipeline_fps"].astype(float).to_numpy()
    b1 = ax.bar(x - 0.2, model, 0.4, color=[colors[j] for j in jobs], label="model FPS")
    b2 = ax.bar(x + 0.2, pipe, 0.4, color=[colors[j] for j in jobs], alpha=0.45, hatch="//", label="pipeline FPS")
    for bars in (b1, b2):
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(x, [labels[j] for j in jobs], rotation=20, ha="right")
    ax.set_ylabel("frames per second")
    ax.set_title("Throughput: model FPS (solid), pipeline FPS (hatched)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, max(np.nanmax(model), np.nanmax(pipe)) * 1.2 if len(jobs) else 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


#: marker shapes for scatter plots: jobs with the same numbers stay visible on top of each other
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "h", "<", ">")


def accuracy_vs_latency(results: Results, metric: str | None = None) -> Any:
    """AP (or AP50) against p90 latency: the trade-off chart. None when no job has accuracy numbers.

    Jobs are named in a legend beside the axes, not next to their points: backends running the same weights
    land on the same AP at nearly the same latency, and labels there would cover each other.
    """
    rows = results.measured
    metric = metric or next((m for m in ("ap50", "ap") if m in rows.columns and rows[m].notna().any()), None)
    if metric is None:
        return None
    rows = rows[rows[metric].notna()]
    plt = _plt()
    colors = job_colors(results.job_ids())
    labels = labels_for(results, [str(j) for j in rows["job_id"]])
    from matplotlib.transforms import offset_copy

    fig, ax = plt.subplots(figsize=(9.5, 4.8), layout="constrained")
    records = rows.to_dict("records")
    x_all = [float(r["p90_ms"]) for r in records]
    y_span = max(float(rows[metric].max()) - float(rows[metric].min()), 0.05)
    log_x = min(x_all) > 0 and max(x_all) / min(x_all) > 8
    placed: list[tuple[float, float]] = []
    for i, r in enumerate(records):
        j = str(r["job_id"])
        x, y = float(r["p90_ms"]), float(r[metric])
        # the same weights land on the same point: each marker that would sit on an earlier one is shifted
        # sideways by its count, so every job's marker stays visible (the legend names them)
        near = sum(1 for px, py in placed if abs(py - y) < 0.02 * y_span
                   and (abs(math.log(px / x)) < 0.06 if log_x and px > 0 and x > 0 else abs(px - x) < 0.03 * max(x_all)))
        placed.append((x, y))
        where = offset_copy(ax.transData, fig=fig, x=9 * near, y=0, units="points") if near else ax.transData
        ax.scatter(x, y, s=80, color=colors[j], marker=MARKERS[i % len(MARKERS)], transform=where,
                   edgecolor="black", alpha=0.85, zorder=3, label=labels[j])
    ax.set_xlabel("p90 latency per frame, ms (lower is better)")
    ax.set_ylabel({"ap50": "AP50 (IoU 0.5)", "ap": "AP@[.5:.95]"}.get(metric, metric) + " (higher is better)")
    ax.set_title("Accuracy vs latency")
    p90 = rows["p90_ms"].astype(float)
    if float(p90.min()) > 0 and float(p90.max()) / float(p90.min()) > 8:  # as the latency plot: one slow job
        ax.set_xscale("log")
        ax.set_xlim(float(p90.min()) * 0.7, float(p90.max()) * 1.4)
        plain_ticks(ax.xaxis)
    else:
        ax.set_xlim(left=0, right=float(p90.max()) * 1.15)
    ax.set_ylim(0, min(1.0, float(rows[metric].max()) * 1.25 + 0.02))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8, title="job", title_fontsize=8)
    return fig


def latency_over_time(results: Results, window: int = 15) -> Any:
    """Latency of every frame in order, with a rolling median: warm-up tails and drift (thermal, GC) show."""
    plt = _plt()
    jobs = [j for j in results.job_ids() if (results.frames["job_id"] == j).any()]
    if not jobs:
        return None
    labels, colors = labels_for(results, jobs), job_colors(results.job_ids())
    fig, ax = plt.subplots(figsize=(10, 4.6))
    top = 0.0
    for j in jobs:
        f = results.frames[results.frames["job_id"] == j].sort_values("frame")
        y = f["total_ms"]
        ax.plot(f["frame"], y, color=colors[j], alpha=0.25, linewidth=0.8)
        ax.plot(f["frame"], y.rolling(window, min_periods=1, center=True).median(), color=colors[j], linewidth=1.8,
                label=labels[j])
        top = max(top, float(y.quantile(0.995)))
    meds = [float(results.frames.loc[results.frames["job_id"] == j, "total_ms"].median()) for j in jobs]
    if min(meds) > 0 and max(meds) / min(meds) > 8:
        ax.set_yscale("log")
        plain_ticks(ax.yaxis)
    else:
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.set_xlabel("frame index")
    ax.set_ylabel("latency, ms")
    ax.set_title(f"Per-frame latency over the run (faint: each frame; bold: rolling median of {window})")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def agreement_matrix(results: Results) -> Any:
    """Share of each row job's boxes that the column job also found (IoU >= threshold, same class)."""
    ag = results.agreement
    if ag is None or ag.empty or not {"job_a", "job_b", "matched_share_a", "matched_share_b"} <= set(ag.columns):
        return None
    jobs = [j for j in results.job_ids() if j in set(ag["job_a"].astype(str)) | set(ag["job_b"].astype(str))]
    if len(jobs) < 2:
        return None
    import numpy as np

    n = len(jobs)
    share = np.full((n, n), np.nan)
    iou = np.full((n, n), np.nan)
    idx = {j: i for i, j in enumerate(jobs)}
    for r in ag.to_dict("records"):
        a, b = str(r["job_a"]), str(r["job_b"])
        if a in idx and b in idx:
            share[idx[a], idx[b]] = r["matched_share_a"]
            share[idx[b], idx[a]] = r["matched_share_b"]
            iou[idx[a], idx[b]] = iou[idx[b], idx[a]] = r.get("mean_iou", np.nan)
    plt = _plt()
    labels = labels_for(results, jobs)
    fig, ax = plt.subplots(figsize=(1.25 * n + 3.5, 1.0 * n + 2.4))
    import matplotlib

    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(share), vmin=0.0, vmax=1.0, cmap=cmap)
    for i in range(n):
        for k in range(n):
            if i == k or math.isnan(share[i, k]):
                text = "" if i == k else "n/a"
            else:
                text = f"{share[i, k]:.1%}" + (f"\nIoU {iou[i, k]:.3f}" if not math.isnan(iou[i, k]) else "")
            ax.text(k, i, text, ha="center", va="center", fontsize=8)
    names = [labels[j] for j in jobs]
    ax.set_xticks(range(n), names, rotation=25, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    thr = ag["iou_threshold"].iloc[0] if "iou_threshold" in ag.columns else 0.5
    sthr = ag["score_threshold"].iloc[0] if "score_threshold" in ag.columns else None
    ax.set_title(f"Agreement: share of the row's boxes the column also found\n(IoU >= {thr:g}"
                 + (f", score >= {sthr:g}" if sthr is not None else "") + "; text: share and mean IoU of matches)",
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def worst_frames(results: Results, limit: int = 3) -> list[int]:
    """Frames where jobs disagree most: agreement.csv's worst frames first, then the largest spread of box counts."""
    picked: list[int] = []
    ag = results.agreement
    if ag is not None and "worst_frames" in ag.columns:
        for cell in ag["worst_frames"].dropna().astype(str):
            for token in cell.split():
                m = re.match(r"(\d+)", token)
                if m and int(m.group(1)) not in picked:
                    picked.append(int(m.group(1)))
    f = results.frames
    if len(f) and len(picked) < limit:
        spread = f.groupby("frame")["n_dets"].agg(lambda s: s.max() - s.min()).sort_values(ascending=False)
        for frame, value in spread.items():
            if value <= 0:
                break
            if int(frame) not in picked:
                picked.append(int(frame))
    return picked[:limit]


def frames_to_show(results: Results, count: int = 3) -> list[int]:
    """``count`` frames every measured job ran: the worst disagreements, then evenly spread ones."""
    jobs = results.job_ids()
    f = results.frames[results.frames["job_id"].isin(jobs)]
    if f.empty:
        return []
    common = set.intersection(*(set(f.loc[f["job_id"] == j, "frame"].astype(int)) for j in jobs
                                if (f["job_id"] == j).any()))
    if not common:
        return []
    ordered = sorted(common)
    chosen = [x for x in worst_frames(results, count) if x in common]
    for q in (0.15, 0.5, 0.85, 0.0, 1.0):
        if len(chosen) >= count:
            break
        cand = ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]
        if cand not in chosen:
            chosen.append(cand)
    return sorted(chosen[:count])


def open_recorded_source(path: str) -> Any:
    """The frame source a job recorded: its absolute path, or an asset name when that is all it recorded."""
    from harness.data.assets import resolve
    from harness.data.video import open_source

    p = Path(path)
    return open_source(p if p.exists() else resolve(path))


def decode_frames(path: str, indices: Sequence[int]) -> dict[int, Any]:
    """Decode the given frame indices (BGR) from a video or image folder, reading forward once."""
    wanted = set(int(i) for i in indices)
    if not wanted:
        return {}
    source = open_recorded_source(path)
    out: dict[int, Any] = {}
    for frame in source.frames(max(wanted) + 1):
        if frame.index in wanted:
            out[frame.index] = frame.image
            if len(out) == len(wanted):
                break
    return out


def boxes_at(results: Results, job_id: str, frame: int) -> Detections:
    """The job's boxes on one frame at its policy's operating point (score threshold, classes, top-k): the
    boxes drawn everywhere, and the ones the runner counted in frames.csv's ``n_dets``."""
    return results.shown(job_id, frame)


def detection_grid(results: Results, frames: Sequence[int] | None = None, max_jobs: int = 8) -> Any:
    """A few frames (rows) x every job (columns), each job's boxes drawn at the policy score threshold."""
    jobs = results.job_ids()[:max_jobs]
    if not jobs:
        return None
    frames = list(frames) if frames is not None else frames_to_show(results)
    if not frames:
        return None
    source = results.source_path(jobs[0])
    if not source:
        return None
    images = decode_frames(source, frames)
    frames = [f for f in frames if f in images]
    if not frames:
        return None
    import numpy as np

    plt = _plt()
    from matplotlib.patches import Rectangle

    labels, colors = labels_for(results, jobs), job_colors(results.job_ids())
    h, w = next(iter(images.values())).shape[:2]
    cell_w = 4.0  # large enough tiles that a crowded frame's boxes stay apart
    fig, axes = plt.subplots(len(frames), len(jobs), figsize=(cell_w * len(jobs), cell_w * h / w * len(frames) + 0.8),
                             squeeze=False)
    for r, fi in enumerate(frames):
        rgb = images[fi][:, :, ::-1]
        for c, j in enumerate(jobs):
            ax = axes[r][c]
            ax.imshow(rgb)
            boxes = boxes_at(results, j, fi)
            placed: list[tuple[float, float, float, float]] = []
            label_w, label_h = 0.085 * w, 0.045 * h  # a score label's extent in the frame's pixels
            order = np.argsort(-np.asarray(boxes.scores, dtype=float)) if len(boxes) else []
            xywh = boxes.to("xywh")
            for k in order:  # the most confident first: when labels would overlap, theirs are the ones shown
                x, y, bw, bh = (float(v) for v in xywh[k])
                ax.add_patch(Rectangle((x, y), bw, bh, fill=False, edgecolor=colors[j], linewidth=1.6))
                rect = (x, y - label_h, x + label_w, y)
                if any(rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3] for o in placed):
                    continue  # its box is drawn; its score would cover another's label
                placed.append(rect)
                ax.text(x, y - 2, f"{float(boxes.scores[k]):.2f}", color="white", fontsize=7,
                        bbox={"facecolor": colors[j], "pad": 0.5, "linewidth": 0})
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[j], fontsize=9, color=colors[j])
            ax.set_xlabel(f"frame {fi}: {len(boxes)} boxes", fontsize=8)
    thr = results.policy(jobs[0]).score_threshold
    fig.suptitle(f"Detections at the policy score threshold ({thr}) on frames where jobs disagree most "
                 "(or spread over the run)", fontsize=10)
    fig.tight_layout()
    return fig


# precision ---------------------------------------------------------------------------------------

#: marker per effective precision in the speed-accuracy plot
PRECISION_MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^"}


def speed_accuracy(results: Results) -> Any:
    """Per model, AP50 against median latency of every precision variant and backend, with each fp32 job's
    accuracy floor drawn: which variant is fastest while keeping the floor. None without precision variants."""
    rows = results.measured
    needed = {"precision", "precision_requested", "ap50", "p50_ms"}
    if rows.empty or not needed <= set(rows.columns):
        return None
    rows = rows[rows["ap50"].notna()]
    if rows.empty or (rows["precision_requested"] == "").all():  # a text column: empty cells read as ""
        return None
    plt = _plt()
    colors = job_colors(results.job_ids())
    models = sorted({str(m) for m in rows["model"]})
    fig, axes = plt.subplots(1, len(models), figsize=(6.8 * len(models) + 2.6, 4.8), squeeze=False,
                             layout="constrained")
    labels = labels_for(results, [str(j) for j in rows["job_id"]])
    for ax, model in zip(axes[0], models):
        sub = rows[rows["model"].astype(str) == model]
        for r in sub.to_dict("records"):
            j = str(r["job_id"])
            below = str(r.get("below_floor", "")).lower() == "true"
            ax.scatter(float(r["p50_ms"]), float(r["ap50"]), s=90, color=colors[j],
                       marker=PRECISION_MARKERS.get(str(r.get("precision")), "X"), zorder=3,
                       edgecolor="red" if below else "black", linewidth=2.2 if below else 0.8,
                       label=labels[j] + (" (below floor)" if below else ""))
        for r in sub.to_dict("records"):  # each fp32 job the variants were held against: its floor
            base = str(r.get("fp32_job", "") or "")
            if base and base in set(sub["job_id"].astype(str)):
                ap = float(sub.loc[sub["job_id"].astype(str) == base, "ap50"].iloc[0])
                floor = float(r.get("accuracy_floor") or 0.99)
                ax.axhline(ap * floor, color=colors.get(base, "grey"), linestyle="--", linewidth=0.9, alpha=0.7)
        ax.set_title(f"{model}: AP50 vs median latency", fontsize=10)
        ax.set_xlabel("p50 latency per frame, ms (lower is better)")
        ax.set_ylabel("AP50 (higher is better)")
        ax.set_xlim(left=0, right=float(sub["p50_ms"].max()) * 1.15)
        low, high = float(sub["ap50"].min()), float(sub["ap50"].max())
        pad = max(0.02, (high - low) * 0.25)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8, title="job (marker: precision that ran,\nred edge: below "
               "the floor,\ndashed: an fp32 job's floor)", title_fontsize=8)
    return fig


#: file stem -> (function, caption) in the order the report shows them
PLOTS = {
    "latency": (latency_distribution, "Latency per frame: the distribution, not just the mean."),
    "fps": (fps_bars, "Model FPS counts only the detector's stages; pipeline FPS is the wall clock of the whole "
            "loop, decoding included."),
    "accuracy_latency": (accuracy_vs_latency, "Accuracy against p90 latency: up and to the left is better."),
    "speed_accuracy": (speed_accuracy, "Precision variants per model: AP50 against median latency, with the fp32 "
                       "jobs' accuracy floors dashed."),
    "latency_time": (latency_over_time, "Latency frame by frame: warm-up tails, drift and periodic stalls show here."),
    "agreement": (agreement_matrix, "How many of one job's boxes another job also found, at the comparison policy."),
    "frames": (detection_grid, "Each job's boxes on the same frames, at the policy score threshold."),
}


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Save a figure as PNG atomically (temporary file + rename) and close it."""
    import io

    from harness.results import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    atomic_write_bytes(path, compress_png(buf.getvalue()))
    return path


def compress_png(data: bytes) -> bytes:
    """The PNG with an adaptive 256-colour palette (Pillow, matplotlib's own dependency): a chart has few
    colours, so this loses nothing visible and keeps report.html, which embeds every plot, small."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG",
                                                                                    optimize=True)
    smaller = out.getvalue()
    return smaller if len(smaller) < len(data) else data
