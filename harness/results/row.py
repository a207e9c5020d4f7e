"""The runs.csv row, declared once: every column's name, type, unit, who writes it and what it means.

The writer puts the columns of a folder in this order (columns a folder holds that are not declared here,
say from an older or newer harness, follow in the order they were seen); the reader reads each column by its
declared type (text as text: a missing cell is ``""``, never float NaN); docs/results-columns.md is made
from :func:`markdown_table` and a test holds the two together; and the schema test runs real jobs of every
scenario and fails for a column that one of them writes and this table does not declare.

To add a column: one line in :data:`COLUMNS` (then regenerate the docs page with
``python -m harness.results.row > docs/results-columns.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

ColumnType = Literal["text", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    """One runs.csv column."""

    name: str
    type: ColumnType
    unit: str  # "" when it has none
    writer: str  # which part of the harness (and which scenario or feature) writes it
    meaning: str  # one line


def _c(name: str, type: ColumnType, unit: str, writer: str, meaning: str) -> Column:
    return Column(name, type, unit, writer, meaning)


#: every runs.csv column, in the order a results folder holds them
COLUMNS: tuple[Column, ...] = (
    # who ran what, and how it ended
    _c("job_id", "text", "", "runner", "the job's id (backend, model, source, device and settings that differ)"),
    _c("backend", "text", "", "runner", "the backend (framework adapter) that ran the job"),
    _c("model", "text", "", "runner", "the model the backend loaded (its name, path, or reference)"),
    _c("video", "text", "", "runner", "the frames' source as the job named it (an asset name or a path)"),
    _c("device_requested", "text", "", "runner", "the device the job asked for (cpu, gpu, gpu:N, a backend target)"),
    _c("device_actual", "text", "", "runner", "the device the framework reports it ran on, read after warm-up"),
    _c("status", "text", "", "runner", "ok, fallback (ran, but not as asked), failed, timeout or crashed"),
    _c("cause", "text", "", "runner", "why a job failed or fell back, and notes worth reading next to its numbers"),
    _c("preprocess", "text", "", "runner", "native (each backend resizes) or shared (identical input pixels)"),
    # the timings
    _c("frames", "int", "frames", "runner", "frames timed (offline: frames over all batches)"),
    _c("load_s", "float", "s", "runner", "time to load the model, apart from every inference"),
    _c("first_ms", "float", "ms", "runner", "the first (cold) inference, not counted in the latencies"),
    _c("mean_ms", "float", "ms", "runner", "mean latency of pre + infer + post per timed call"),
    _c("std_ms", "float", "ms", "runner", "standard deviation of that latency"),
    _c("p50_ms", "float", "ms", "runner", "median latency per timed call"),
    _c("p90_ms", "float", "ms", "runner", "90th percentile latency"),
    _c("p95_ms", "float", "ms", "runner", "95th percentile latency"),
    _c("p99_ms", "float", "ms", "runner", "99th percentile latency"),
    _c("min_ms", "float", "ms", "runner", "fastest timed call"),
    _c("max_ms", "float", "ms", "runner", "slowest timed call"),
    _c("decode_ms", "float", "ms", "runner", "mean decode time per frame (in a thread ahead of the model, not timed)"),
    _c("pre_ms", "float", "ms", "runner", "mean preprocessing time per timed call"),
    _c("infer_ms", "float", "ms", "runner", "mean framework inference time per timed call"),
    _c("post_ms", "float", "ms", "runner", "mean post-processing time per timed call"),
    _c("model_fps", "float", "frames/s", "runner", "frames over the time inside pre + infer + post"),
    _c("pipeline_fps", "float", "frames/s", "runner", "frames over the wall time of the timed part"),
    _c("peak_rss_mb", "float", "MB", "runner", "peak resident memory of the job's process"),
    _c("peak_gpu_mb", "float", "MB", "runner", "peak GPU memory the framework allocated (empty on the CPU)"),
    # the job's settings and what the framework reports
    _c("env", "text", "", "runner", "the environment the job ran in (default, a named one, or an interpreter)"),
    _c("framework_version", "text", "", "runner", "the backend framework's version in that environment"),
    _c("infer_p50_ms", "float", "ms", "runner", "median of the framework inference stage alone"),
    _c("infer_p90_ms", "float", "ms", "runner", "90th percentile of the framework inference stage alone"),
    _c("threads", "int", "threads", "runner", "the thread count asked for (empty: the framework's default)"),
    _c("threads_in_effect", "text", "", "runner", "the thread settings the framework reports it used"),
    _c("threads_configured", "text", "", "runner", "the thread settings the backend configured"),
    _c("conversion_s", "float", "s", "runner", "time to convert the model for this backend (empty when none)"),
    _c("score_threshold", "float", "", "runner", "the policy's score threshold (the operating point shown)"),
    _c("dets_per_frame", "float", "boxes", "runner", "mean boxes per frame at the operating point"),
    _c("frame_width", "int", "px", "runner", "width of the decoded frames"),
    _c("frame_height", "int", "px", "runner", "height of the decoded frames"),
    _c("placement_evidence", "text", "", "runner", "how device_actual was read from the framework"),
    _c("device_fallback", "bool", "", "runner", "True when the job asked for a device and ran on another"),
    # precision
    _c("precision_requested", "text", "", "runner, --precision", "the precision the job asked for (empty: none)"),
    _c("precision", "text", "", "runner, --precision", "the precision the framework ran at, read from it"),
    _c("precision_evidence", "text", "", "runner, --precision", "how precision was read from the framework"),
    _c("precision_fallback", "bool", "", "runner, --precision",
       "True when the job asked for a precision and the framework ran another"),
    _c("calibration", "text", "", "runner, --precision int8", "the calibration frames of an int8 variant"),
    _c("params_m", "float", "M", "runner", "the model's parameters, millions"),
    _c("gflops", "float", "GFLOPs", "runner", "the model's cost per inference"),
    _c("model_mb", "float", "MB", "runner", "the model file's size"),
    _c("input_size", "text", "px", "runner", "the network's input size, WxH"),
    # scenarios
    _c("scenario", "text", "", "runner", "single-stream, offline, multi-stream, realtime or server"),
    _c("level", "text", "", "runner", "the scenario's level this job measures (batch 4, 2 stream(s), 20 qps...)"),
    _c("frames_arrived", "text", "", "runner, --loadgen", "decoded (in a thread, beside the model) or preloaded"),
    _c("distinct_frames", "int", "frames", "every scenario", "distinct source frames timed (loops repeat them)"),
    _c("loops", "int", "", "every scenario", "passes over the source (--min-duration, --min-frames)"),
    _c("batch", "int", "frames", "offline", "the batch size"),
    _c("batches", "int", "", "offline", "batches timed"),
    _c("streams", "int", "", "multi-stream", "decoders of the source at once"),
    _c("instances", "int", "", "multi-stream, server", "model instances serving them"),
    _c("aggregate_fps", "float", "frames/s", "multi-stream", "frames of all streams over the time they were served"),
    _c("stream_fps_min", "float", "frames/s", "multi-stream", "the slowest stream's rate"),
    _c("stream_fps_mean", "float", "frames/s", "multi-stream", "the mean stream's rate"),
    _c("target_fps", "float", "frames/s", "multi-stream", "the rate each stream should get (--fps, else the source's)"),
    _c("target_met", "bool", "", "multi-stream", "the slowest stream got the target rate"),
    _c("stream_mismatch_frames", "int", "frames", "multi-stream", "frames where a stream's boxes differ from stream 0's"),
    _c("extra_load_s", "float", "s", "multi-stream, server", "time to load the instances after the first"),
    _c("release_fps", "float", "frames/s", "realtime", "the rate frames were released at"),
    _c("queue", "int", "frames", "realtime", "how many released frames may wait for a busy detector"),
    _c("released", "int", "frames", "realtime", "frames released"),
    _c("processed", "int", "frames", "realtime", "frames the detector processed"),
    _c("dropped", "int", "frames", "realtime", "frames dropped (the detector busy and the queue full)"),
    _c("late", "int", "frames", "realtime", "frames processed after the next release"),
    _c("e2e_p50_ms", "float", "ms", "realtime, server", "median release-to-result latency"),
    _c("e2e_p90_ms", "float", "ms", "realtime, server", "90th percentile release-to-result latency"),
    _c("e2e_p99_ms", "float", "ms", "realtime, server", "99th percentile release-to-result latency"),
    _c("e2e_max_ms", "float", "ms", "realtime, server", "slowest release-to-result latency"),
    _c("release_jitter_p99_ms", "float", "ms", "realtime", "99th percentile lateness of the release clock"),
    _c("release_jitter_max_ms", "float", "ms", "realtime", "largest lateness of the release clock"),
    _c("max_fps_no_drop", "float", "frames/s", "realtime", "the rate the slowest frame would still have kept up with"),
    _c("qps", "float", "queries/s", "server", "the Poisson arrival rate asked for"),
    _c("queries", "int", "", "server", "queries issued"),
    _c("qps_offered", "float", "queries/s", "server", "the arrival rate that was issued"),
    _c("qps_done", "float", "queries/s", "server", "the rate queries were answered"),
    _c("issue_jitter_p99_ms", "float", "ms", "server", "99th percentile lateness of the arrival clock"),
    _c("latency_bound_ms", "float", "ms", "server", "the p99 bound asked for (--latency-bound)"),
    _c("bound_met", "bool", "", "server", "the end-to-end p99 stayed under the bound"),
    # MLPerf LoadGen (--loadgen): its own figures, from its detail log
    _c("preload_mb", "float", "MB", "--loadgen", "the preloaded sample library's size"),
    _c("preload_budget_mb", "float", "MB", "--loadgen", "the memory the library was allowed"),
    _c("preload_s", "float", "s", "--loadgen", "time to decode and preload the library"),
    _c("lg_unissued_frames", "int", "frames", "--loadgen", "frames LoadGen never asked for (run once untimed)"),
    _c("lg_result", "text", "", "--loadgen", "LoadGen's verdict: VALID or INVALID"),
    _c("lg_invalid_reason", "text", "", "--loadgen", "why LoadGen found the run INVALID"),
    _c("lg_min_duration_met", "bool", "", "--loadgen", "the minimum duration was met"),
    _c("lg_min_queries_met", "bool", "", "--loadgen", "the minimum query count was met"),
    _c("lg_early_stopping_met", "bool", "", "--loadgen", "early stopping could bound the percentile"),
    _c("lg_perf_constraints_met", "bool", "", "--loadgen, server", "the latency bound held"),
    _c("lg_qps", "float", "queries/s", "--loadgen", "LoadGen's throughput figure for the scenario"),
    _c("lg_scheduled_qps", "float", "queries/s", "--loadgen, server", "the arrival rate LoadGen scheduled"),
    _c("lg_queries", "int", "", "--loadgen", "queries LoadGen issued"),
    _c("lg_mean_ms", "float", "ms", "--loadgen", "mean latency by LoadGen"),
    _c("lg_min_ms", "float", "ms", "--loadgen", "fastest query by LoadGen"),
    _c("lg_max_ms", "float", "ms", "--loadgen", "slowest query by LoadGen"),
    _c("lg_p50_ms", "float", "ms", "--loadgen", "median latency by LoadGen's method"),
    _c("lg_p90_ms", "float", "ms", "--loadgen", "90th percentile latency by LoadGen's method"),
    _c("lg_p95_ms", "float", "ms", "--loadgen", "95th percentile latency by LoadGen's method"),
    _c("lg_p97_ms", "float", "ms", "--loadgen", "97th percentile latency by LoadGen's method"),
    _c("lg_p99_ms", "float", "ms", "--loadgen", "99th percentile latency by LoadGen's method"),
    _c("lg_p999_ms", "float", "ms", "--loadgen", "99.9th percentile latency by LoadGen's method"),
    _c("lg_early_stopping_p90_ms", "float", "ms", "--loadgen, single-stream", "early-stopping estimate of the p90"),
    _c("lg_early_stopping_p99_ms", "float", "ms", "--loadgen, single-stream", "early-stopping estimate of the p99"),
    _c("lg_early_stopping", "text", "", "--loadgen", "LoadGen's early-stopping statement"),
    _c("lg_latency_bound_ms", "float", "ms", "--loadgen, server", "the latency bound LoadGen applied"),
    _c("lg_seed", "int", "", "--loadgen", "the seed of LoadGen's sample and arrival choices"),
    # how far to trust the numbers
    _c("p50_ci_low_ms", "float", "ms", "runner", "low end of the median's 95 % bootstrap interval"),
    _c("p50_ci_high_ms", "float", "ms", "runner", "high end of the median's 95 % bootstrap interval"),
    _c("p90_ci_low_ms", "float", "ms", "runner", "low end of the p90's 95 % bootstrap interval"),
    _c("p90_ci_high_ms", "float", "ms", "runner", "high end of the p90's 95 % bootstrap interval"),
    _c("valid", "bool", "", "validity", "False when the machine's state or too few samples spoil the numbers"),
    _c("invalid_criteria", "text", "", "validity",
       "the validity criteria a row failed, comma-separated (duration, samples, machine quiet, clock held)"),
    _c("validity_notes", "text", "", "validity", "why a row is invalid, and what is worth knowing anyway"),
    _c("p90_bound_ms", "float", "ms", "validity, single-stream", "upper bound of the p90 at 99 % confidence"),
    _c("p99_bound_ms", "float", "ms", "validity, multi-stream", "upper bound of the p99 at 99 % confidence"),
    _c("e2e_p99_bound_ms", "float", "ms", "validity, realtime, server",
       "upper bound of the end-to-end p99 at 99 % confidence"),
    # the machine's state while the job ran
    _c("cpus", "int", "CPUs", "machine state", "logical CPUs of the machine"),
    _c("other_cpu_before", "float", "CPUs", "machine state", "CPUs other processes used before the timed part"),
    _c("load_avg_before", "float", "", "machine state", "1-minute load average before the timed part"),
    _c("other_cpu_mean", "float", "CPUs", "machine state", "CPUs other processes used during it, on average"),
    _c("other_cpu_max", "float", "CPUs", "machine state", "CPUs other processes used during it, at most"),
    _c("steal_pct", "float", "%", "machine state", "share of the CPUs the hypervisor took (steal time)"),
    _c("load_avg_max", "float", "", "machine state", "highest 1-minute load average during it"),
    _c("cpu_mhz_min", "float", "MHz", "machine state", "the lowest clock of the fastest CPU during it"),
    _c("cpu_mhz_max", "float", "MHz", "machine state", "the highest clock of the fastest CPU during it"),
    _c("gpu_sm_mhz_min", "float", "MHz", "machine state, GPU jobs", "the GPU's lowest SM clock during it"),
    _c("gpu_temp_c_max", "float", "°C", "machine state, GPU jobs", "the GPU's highest temperature during it"),
    _c("gpu_power_w_max", "float", "W", "machine state, GPU jobs", "the GPU's highest power draw during it"),
    _c("governor", "text", "", "machine state", "the CPU frequency governor(s)"),
    # where it ran
    _c("executor", "text", "", "executor", "inline, process or ray"),
    _c("node", "text", "", "executor", "the Ray node id (local for the process and inline executors)"),
    _c("node_ip", "text", "", "executor", "the node's address"),
    _c("hostname", "text", "", "executor", "the machine's host name"),
    _c("cpu_model", "text", "", "executor", "the machine's CPU"),
    _c("gpu_name", "text", "", "executor", "the GPUs the job could see"),
    _c("machine", "text", "", "executor", "the machine the suite asked for (empty: any)"),
    _c("attempts", "int", "", "executor, ray", "attempts the job took (a lost node is retried)"),
    _c("lost_nodes", "text", "", "executor, ray", "nodes that died under the job"),
    _c("node_concurrent_jobs", "text", "", "executor, ray", "other jobs that shared its node while it ran"),
    # accuracy (harness eval)
    _c("ap", "float", "", "eval", "COCO AP@[.5:.95] against the source's ground truth"),
    _c("ap50", "float", "", "eval", "AP at IoU 0.5"),
    _c("ap75", "float", "", "eval", "AP at IoU 0.75"),
    _c("ar100", "float", "", "eval", "recall with up to 100 boxes per frame"),
    _c("fp32_job", "text", "", "eval, --precision", "the fp32 job a precision variant is held against"),
    _c("ap50_vs_fp32", "float", "", "eval, --precision", "the variant's AP50 over the fp32 job's"),
    _c("below_floor", "bool", "", "eval, --precision", "True when ap50_vs_fp32 is under accuracy_floor"),
    _c("accuracy_floor", "float", "", "eval, --precision", "the share of fp32's AP50 a variant must keep"),
    _c("agree_fp32", "float", "", "eval, --precision", "share of the fp32 job's boxes the variant also found"),
    _c("score_shift", "float", "", "eval, --precision", "mean score change of those matched boxes"),
    _c("score_shift_max", "float", "", "eval, --precision", "largest score change of those matched boxes"),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
INTEGER_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.type == "int")
TEXT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.type == "text")
BOOL_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.type == "bool")


def undeclared(columns: Iterable[str]) -> list[str]:
    """The names among ``columns`` that :data:`COLUMNS` does not declare."""
    return [c for c in columns if c not in BY_NAME]


def ordered(columns: Iterable[str]) -> list[str]:
    """``columns`` in declared order; undeclared ones (an older or newer folder's) after them, as seen."""
    seen = list(dict.fromkeys(columns))
    present = set(seen)
    return [n for n in NAMES if n in present] + undeclared(seen)


def missing_text(value: Any) -> bool:
    """An empty cell of a text column as pandas may hand it over (NaN, None, pd.NA)."""
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, str) else False
    except (TypeError, ValueError):
        return False


def read_types(table: Any) -> Any:
    """A runs.csv DataFrame with its declared text columns as text: a missing cell is ``""`` (pandas would
    make an all-empty column float NaN). Other columns keep pandas' reading; undeclared ones are left alone."""
    for name in TEXT_COLUMNS:
        if name in table.columns:
            table[name] = [("" if missing_text(v) else str(v)) for v in table[name]]
            table[name] = table[name].astype(object)
    return table


def markdown_table() -> str:
    """docs/results-columns.md: the declared columns as a Markdown page."""
    lines = [
        "# runs.csv columns",
        "",
        "Generated from `harness/results/row.py` (`python -m harness.results.row > docs/results-columns.md`);",
        "a test fails when the two differ. A folder holds the columns its jobs wrote, in this order; columns",
        "it holds that are not declared here (a newer or older harness's) follow them and are read as they are.",
        "",
        "| column | type | unit | written by | meaning |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.writer} | {c.meaning} |" for c in COLUMNS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
