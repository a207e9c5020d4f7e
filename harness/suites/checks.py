"""What can be known about a run before it starts, checked before its results folder exists.

A mistyped video name, a missing model file, an unknown backend, an int8 variant calibrated on the frames it
would be scored on, a batch of 1000 frames from a 30-frame run, 100,000 streams, or a rate at which the run
would outlast its timeout: each used to become a results folder with a FAILED row and a report (or, for the
memory cases, a worker that took the machine's memory and the kernel's out-of-memory killer that took some
other process first). Here each is one :class:`HarnessError` with the fix, raised before anything runs.

Memory is estimated, not measured (nothing is loaded yet): the figures below are deliberately generous per
item, and a run is refused only when the estimate exceeds :data:`MEMORY_SHARE` of the memory available now.
The process executor's memory watchdog stays the last line for what the estimate misses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.core.errors import HarnessError, did_you_mean

#: model suffixes that say "this is a file path", so a missing one is an error here, not in the job
MODEL_SUFFIXES = (".pb", ".pbtxt", ".onnx", ".tflite", ".pth", ".pt", ".pt2", ".xml", ".bin", ".caffemodel",
                  ".prototxt", ".t7", ".h5", ".keras")
#: what one batch item costs beyond its decoded frame: input tensor and activations of a 300x300 SSD, rounded
#: up from the 22.8 GB seen at batch 1000 (about 23 MB an item)
ACTIVATION_MB_PER_ITEM = 32.0
#: what one extra decoder stream costs beyond its queued frames (a demuxer/decoder context and its thread)
DECODER_MB_PER_STREAM = 16.0
#: frames a stream's prefetch queue holds (harness.data.video.Prefetcher's depth) plus the two in hand
FRAMES_PER_STREAM = 8 + 2
#: what one more model instance costs: the runtime's session overhead plus a few copies of the weights
INSTANCE_BASE_MB = 150.0
INSTANCE_WEIGHT_COPIES = 3
#: a run is refused when its estimate exceeds this share of the memory available when it starts
MEMORY_SHARE = 0.5
#: every stream is a decoding thread: past this many the machine measures its scheduler, not the model
MAX_STREAMS = 256
#: a frame size when the source cannot be opened here (1080p BGR)
FALLBACK_FRAME_BYTES = 1920 * 1080 * 3

#: flags that shape the jobs of a run; ``--resume`` reruns the folder's own jobs, so these would be ignored
_SHAPING_FLAGS = {
    "suite": "a suite file", "backend": "--backend", "model": "--model", "video": "--video", "device": "--device",
    "frames": "--frames", "warmup": "--warmup", "preprocess": "--preprocess", "threads": "--threads",
    "opt": "--opt", "score_threshold": "--score-threshold", "record_threshold": "--record-threshold",
    "top_k": "--top-k", "classes": "--classes", "scenario": "--scenario", "batch": "--batch",
    "streams": "--streams", "instances": "--instances", "fps": "--fps", "queue": "--queue", "qps": "--qps",
    "latency_bound": "--latency-bound", "min_duration": "--min-duration", "min_frames": "--min-frames",
    "strict_device": "--strict-device", "timeout": "--timeout", "env": "--env", "python": "--python",
    "precision": "--precision", "strict_precision": "--strict-precision", "out": "--out",
}


def check_resume_flags(args: Any) -> None:
    """``--resume DIR`` runs DIR's jobs as planned; a flag that would change them is refused, not ignored."""
    given = [flag for dest, flag in _SHAPING_FLAGS.items() if getattr(args, dest, None) not in (None, [], (), False)]
    if given:
        raise HarnessError(
            f"--resume reruns the folder's own jobs with their own settings, so {', '.join(given)} would be ignored",
            "drop them to finish the interrupted run as planned, or start a new run (without --resume) with them")


# names and paths ---------------------------------------------------------------------------------------------
def _is_remote_or_code(model: str) -> bool:
    """Models the backend reaches itself: URLs (TF Hub, a v2 endpoint), Python factories."""
    return "://" in model or model.startswith(("py:", "hub:"))


def _looks_like_path(name: str) -> bool:
    return any(sep in name for sep in ("/", "\\")) or name.lower().endswith(MODEL_SUFFIXES) or name.startswith(("~", "."))


def check_names(jobs: Sequence[Any]) -> None:
    """Unknown backends, sources that are neither a path nor an asset, and model paths that do not exist:
    one error listing each, with the close matches."""
    from harness.data.assets.manifest import load_manifests
    from harness.core.registry import available_backends

    manifests = load_manifests()
    backends = available_backends()
    problems: list[str] = []
    for backend in sorted({j.backend for j in jobs}):
        if backend not in backends and ":" not in backend:
            problems.append(f"unknown backend {backend!r}.{did_you_mean(backend, backends)}")
    for source in dict.fromkeys(j.source for j in jobs):
        if Path(source).expanduser().exists() or source in manifests:
            continue
        if _looks_like_path(source):
            problems.append(f"video/image folder not found: {source}")
        else:
            problems.append(f"{source!r} is neither a file here nor an asset name.{did_you_mean(source, manifests)}")
    for model in dict.fromkeys(j.model for j in jobs if j.model):
        if model.lower() in ("reference", "ref") or model in manifests or _is_remote_or_code(model):
            continue
        if not Path(model).expanduser().exists() and _looks_like_path(model):
            problems.append(f"model file not found: {model}")
    if problems:
        choices = ", ".join(sorted(backends))
        raise HarnessError(
            "the run names what is not there, so nothing was started:\n  - " + "\n  - ".join(problems),
            f"check the spelling and paths; backends here: {choices}; assets: `harness assets list`")


# calibration -------------------------------------------------------------------------------------------------
def check_calibration(jobs: Sequence[Any]) -> None:
    """Every int8 job's calibration source: there, long enough, and none of the run's scored sources."""
    from harness.data.assets import resolve
    from harness.data.calibration import CalibrationSplit, check_plan_calibration

    int8 = [j for j in jobs if j.precision == "int8" and (j.model or "").lower() in ("", "reference", "ref")]
    if not int8:
        return
    scored = {name: resolve(name).absolute() for name in dict.fromkeys(j.source for j in jobs)}
    seen: set[tuple[str, int]] = set()
    for job in int8:
        split = CalibrationSplit.from_options(job.options or {})
        if (split.source, split.frames) in seen:
            continue
        seen.add((split.source, split.frames))
        check_plan_calibration(split, scored, job.job_id)


# resources ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFacts:
    """What the planner can know of a source without decoding it: frames, rate and frame size."""

    frames: int | None
    fps: float | None
    frame_bytes: int


def _source_facts(source: str) -> SourceFacts:
    try:
        from harness.data.assets import resolve
        from harness.data.video import open_source

        info = open_source(resolve(source)).info
    except Exception:  # noqa: BLE001 - no OpenCV in this process, or a source the job will report itself
        return SourceFacts(None, None, FALLBACK_FRAME_BYTES)
    size = (info.width or 0) * (info.height or 0) * 3
    return SourceFacts(info.frame_count or None, info.fps, size or FALLBACK_FRAME_BYTES)


def _available_mb() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**20


def _model_mb(job: Any) -> float:
    """The model file's size (0 when it is a name the backend resolves itself)."""
    if not job.model:
        return 13.0  # the reference SSD's frozen graph
    path = Path(job.model).expanduser()
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
        return path.stat().st_size / 2**20
    except OSError:
        return 0.0


def estimate_mb(job: Any, facts: SourceFacts) -> tuple[float, str]:
    """The memory a job's scenario needs beyond one loaded model, and what it is made of (for the message)."""
    sc = job.scenario
    frame_mb = facts.frame_bytes / 2**20
    instance_mb = INSTANCE_BASE_MB + INSTANCE_WEIGHT_COPIES * _model_mb(job)
    if sc.kind == "offline":
        per = frame_mb + ACTIVATION_MB_PER_ITEM
        return sc.batch_size * per, f"batch {sc.batch_size} x {per:.0f} MB (frame + activations)"
    if sc.kind == "multi-stream":
        per = FRAMES_PER_STREAM * frame_mb + DECODER_MB_PER_STREAM
        extra = (sc.instance_count - 1) * instance_mb
        return sc.stream_count * per + extra, (f"{sc.stream_count} streams x {per:.0f} MB (queued frames + decoder)"
                                               + (f" + {sc.instance_count - 1} more model instances x "
                                                  f"{instance_mb:.0f} MB" if extra else ""))
    if sc.kind == "server" and sc.instance_count > 1:
        return (sc.instance_count - 1) * instance_mb, f"{sc.instance_count - 1} more model instances x {instance_mb:.0f} MB"
    return 0.0, ""


def _timed_frames(job: Any, facts: SourceFacts) -> int | None:
    """How many frames a job times (its frame limit, the source's length, or its minimum when it loops)."""
    distinct = min(x for x in (job.frames, facts.frames) if x) if (job.frames or facts.frames) else None
    if distinct is None:
        return None
    return max(distinct, job.scenario.min_frames or 0)


def _run_seconds(job: Any, facts: SourceFacts) -> tuple[float, str] | None:
    """The least wall time a paced scenario needs, and its rate as a reader says it; None when unpaced."""
    sc = job.scenario
    frames = _timed_frames(job, facts)
    paced: tuple[float, str] | None = None
    if frames is not None and sc.kind == "server" and sc.qps:
        paced = frames / sc.qps, f"--qps {sc.qps:g}"
    elif frames is not None and sc.kind == "realtime" and (sc.fps or facts.fps):
        rate = sc.fps or facts.fps
        paced = frames / rate, f"--fps {rate:g}"
    elif frames is not None and sc.kind == "multi-stream" and sc.fps:
        paced = frames / sc.fps, f"--fps {sc.fps:g}"
    if sc.min_duration_s and (paced is None or paced[0] < sc.min_duration_s):
        return sc.min_duration_s, f"--min-duration {sc.min_duration_s:g}s"
    return paced


def _timeout(job: Any, default_timeout_s: float | None) -> float | None:
    limit = job.timeout_s if job.timeout_s is not None else default_timeout_s
    return limit if limit and limit > 0 else None


def _duration_text(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds > 3.15e9:
        return "more than a century"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"about {seconds / size:,.0f} {unit}"
    return f"{seconds:,.0f} s"


def check_resources(jobs: Sequence[Any], default_timeout_s: float | None, available_mb: float | None = None) -> None:
    """Batches larger than the frames, memory the machine does not have, and runs longer than their timeout."""
    facts_of: dict[str, SourceFacts] = {}
    available = _available_mb() if available_mb is None else available_mb
    problems: list[str] = []
    fixes: list[str] = []
    for job in jobs:
        facts = facts_of.setdefault(job.source, _source_facts(job.source))
        sc = job.scenario
        frames = min(x for x in (job.frames, facts.frames) if x) if (job.frames or facts.frames) else None
        if sc.kind == "offline" and frames is not None and sc.batch_size > frames and not sc.loops:
            problems.append(f"{job.job_id}: batch {sc.batch_size} is larger than the {frames} frames it scores")
            fixes.append(f"--batch {frames} or less (or more --frames)")
            continue
        if sc.kind == "multi-stream" and sc.stream_count > MAX_STREAMS:
            problems.append(f"{job.job_id}: {sc.stream_count} streams, each a decoding thread (at most {MAX_STREAMS})")
            fixes.append(f"--streams {MAX_STREAMS} or fewer")
            continue
        need, what = estimate_mb(job, facts)
        if need > MEMORY_SHARE * available:
            problems.append(f"{job.job_id}: needs about {need:,.0f} MB ({what}), more than {MEMORY_SHARE:.0%} of "
                            f"the {available:,.0f} MB available now")
            fixes.append("a smaller --batch / --streams / --instances (the estimate is in docs/reliability.md)")
            continue
        paced = _run_seconds(job, facts)
        limit = _timeout(job, default_timeout_s)
        if paced is not None and limit is not None and paced[0] > limit:
            problems.append(f"{job.job_id}: at {paced[1]} it takes {_duration_text(paced[0])}, longer than its "
                            f"{limit:g} s timeout")
            fixes.append("a higher rate, fewer --frames, or a longer --timeout (0 = none)")
    if problems:
        raise HarnessError("the run would not fit this machine or its timeouts, so nothing was started:\n  - "
                           + "\n  - ".join(problems), "; ".join(dict.fromkeys(fixes)))


def check_plan(jobs: Sequence[Any], default_timeout_s: float | None) -> None:
    """Everything knowable before the run that needs the run's files (after the asset preflight)."""
    from harness.execution.memory_guard import memory_limit_mb

    memory_limit_mb()  # a malformed HARNESS_MEMORY_LIMIT_MB is said now, not at the first job
    check_calibration(jobs)
    check_resources(jobs, default_timeout_s)
