"""The annotated video (``--save-video``): every job's boxes on the same frame, tiled, with live latency.

Seeing two backends side by side shows what a table can't: a box that flickers in one framework only, a
latency spike that lines up with a crowded frame. Drawn from the saved detections and per-frame timings,
so it costs the timed run nothing. OpenCV draws and encodes (imported here, lazily).
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.report.load import Results
from harness.report.plots import PALETTE, job_colors, labels_for, open_recorded_source


def _bgr(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


def write_tiled_video(results: Results, path: Path, *, tile_width: int = 480, max_jobs: int = 9,
                      fps: float | None = None) -> Path:
    """Write ``path`` (mp4v): one tile per measured job, frames every job ran, boxes at the policy threshold."""
    import cv2
    import numpy as np

    jobs = results.job_ids()[:max_jobs]
    if not jobs:
        raise ValueError("no measured job to draw")
    f = results.frames
    frame_sets = [set(f.loc[f["job_id"] == j, "frame"].astype(int)) for j in jobs]
    common = sorted(set.intersection(*frame_sets)) if frame_sets else []
    if not common:
        raise ValueError("the jobs share no frames")
    latency = {j: dict(zip(f.loc[f["job_id"] == j, "frame"].astype(int), f.loc[f["job_id"] == j, "total_ms"]))
               for j in jobs}
    labels, colors = labels_for(results, jobs), job_colors(results.job_ids())

    source = open_recorded_source(results.source_path(jobs[0]) or "")
    fps = fps or source.info.fps or 10.0
    cols = math.ceil(math.sqrt(len(jobs)))
    rows = math.ceil(len(jobs) / cols)
    writer = None
    wanted = set(common)
    written = 0
    try:
        for frame in source.frames(max(common) + 1):
            if frame.index not in wanted:
                continue
            img = frame.image
            h, w = img.shape[:2]
            scale = tile_width / w
            tile_h = int(round(h * scale))
            canvas = np.zeros((rows * tile_h, cols * tile_width, 3), np.uint8)
            for k, j in enumerate(jobs):
                tile = cv2.resize(img, (tile_width, tile_h), interpolation=cv2.INTER_AREA)
                color = _bgr(colors.get(j, PALETTE[0]))
                shown = results.shown(j, frame.index)  # the job's policy: threshold, classes, top-k
                for (x1, y1, x2, y2), score in zip(shown.boxes * scale, shown.scores):
                    cv2.rectangle(tile, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
                    cv2.putText(tile, f"{float(score):.2f}", (int(x1), max(10, int(y1) - 3)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
                ms = latency[j].get(frame.index, float("nan"))
                text = f"{labels[j]}  {ms:.1f} ms  frame {frame.index}"
                cv2.rectangle(tile, (0, 0), (tile_width, 22), (0, 0, 0), -1)
                cv2.putText(tile, text, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
                r, c = divmod(k, cols)
                canvas[r * tile_h:(r + 1) * tile_h, c * tile_width:(c + 1) * tile_width] = tile
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                         (canvas.shape[1], canvas.shape[0]))
                if not writer.isOpened():
                    raise RuntimeError("OpenCV could not open an mp4v video writer")
            writer.write(canvas)
            written += 1
    finally:
        if writer is not None:
            writer.release()
    if writer is None or written == 0:
        raise ValueError("no frame could be decoded from the source")
    tmp.replace(path)  # the finished file appears at once
    return path
