"""What changed between two results folders, job by job, with each run's noise taken into account.

A latency change counts only when it is larger than a threshold (default 5 %) *and* larger than the runs'
own spread. For p50 and p90 the spread is each run's own 95 % bootstrap interval in runs.csv
(``p50_ci_low_ms`` ...): when the two intervals overlap, the change is noise. Folders without those columns
(and the mean and FPS) use a bootstrap over the per-frame latencies in frames.csv, which gives a 95 % interval
for the ratio of the two runs; a change whose interval still includes "no change" is noise. One slow run out
of two is common on shared machines; a CI gate that fails on noise gets switched off.

A row marked invalid (a busy machine, dropped clocks, too few samples: runs.csv ``valid``) can't say whether
the detector got slower: its latency and FPS changes get the verdict ``invalid``, never ``worse``, and a gate
with nothing but invalid timing comparisons fails, asking for a rerun on a quiet machine.

Accuracy (AP) is deterministic for the same frames, so it is compared by its relative change alone; status
changes (ok -> failed, ok -> fallback) always count as regressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.report.load import MEASURED, Results, load_results

#: metric -> (runs.csv column, True when higher is better, per-frame statistic for the bootstrap or None)
METRICS: dict[str, tuple[str, bool, str | None]] = {
    "p50_ms": ("p50_ms", False, "p50"),
    "p90_ms": ("p90_ms", False, "p90"),
    "mean_ms": ("mean_ms", False, "mean"),
    "model_fps": ("model_fps", True, "fps"),
    "pipeline_fps": ("pipeline_fps", True, "fps~"),  # one number per run: judged with model FPS's spread
    "ap": ("ap", True, None),
    "ap50": ("ap50", True, None),
}


@dataclass
class MetricChange:
    job_id: str
    metric: str
    a: float
    b: float
    change_pct: float  # (b / a - 1) * 100
    ci_low_pct: float | None  # 95 % bootstrap interval of change_pct; None where no per-frame spread exists
    ci_high_pct: float | None
    verdict: str  # "better" | "worse" | "same" | "noise" | "invalid" (a row measured on a busy machine)
    regression_pct: float  # how much worse, in %, when verdict == "worse" (else 0)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Comparison:
    dir_a: Path
    dir_b: Path
    threshold_pct: float
    changes: list[MetricChange] = field(default_factory=list)
    status_changes: list[tuple[str, str, str]] = field(default_factory=list)  # job, status in A, status in B
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # job ids in both folders
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict == "worse"]

    def worst_regression_pct(self) -> float:
        return max((c.regression_pct for c in self.regressions), default=0.0)

    def status_regressions(self) -> list[tuple[str, str, str]]:
        rank = {"ok": 0, "fallback": 1}
        return [s for s in self.status_changes if rank.get(s[2], 2) > rank.get(s[1], 2)]

    def failed_gate(self, fail_above_pct: float) -> list[str]:
        """Why a CI gate at ``fail_above_pct`` fails (empty list: it passes)."""
        return [text for _, text in self.gate_failures(fail_above_pct)]

    def gate_failures(self, fail_above_pct: float) -> list[tuple[str, str]]:
        """Why the gate fails, each reason with its kind (``regressed``, ``status worse``, ``nothing compared``,
        ``invalid rows``), so the verdict's header names what failed instead of always saying "regressed"."""
        why = [("regressed", f"{c.job_id}: {c.metric} {c.regression_pct:.1f} % worse ({_fmt(c.a)} -> {_fmt(c.b)})")
               for c in self.regressions if c.regression_pct > fail_above_pct]
        why += [("status worse", f"{j}: status {a} -> {b}") for j, a, b in self.status_regressions()]
        if not self.changes and not self.status_changes:  # a gate that compared nothing must not pass
            if not self.shared:
                text = "the two folders share no job id"
                if _differ_by_preprocess(self.only_a, self.only_b):
                    text += " (they differ only by the preprocessing, `_shared`: compare runs made with the same "
                    text += "--preprocess)"
            else:
                text = "no job has measurements in both folders"
            why.append(("nothing compared", "nothing was compared: " + text))
        timing = [c for c in self.changes if c.metric in TIMING_METRICS]
        if timing and all(c.verdict == "invalid" for c in timing):
            why.append(("invalid rows", "every timing comparison involves a row marked invalid (busy machine, "
                        "dropped clocks or too few samples): rerun on a quiet machine"))
        return why

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame([c.to_dict() for c in self.changes])


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _stat(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic over the last axis (vectorized over bootstrap resamples)."""
    if name == "p50":
        return lambda x: np.percentile(x, 50, axis=-1)
    if name == "p90":
        return lambda x: np.percentile(x, 90, axis=-1)
    if name == "mean":
        return lambda x: x.mean(axis=-1)
    if name == "fps":  # model FPS = frames / total time = 1 / mean
        return lambda x: 1.0 / x.mean(axis=-1)
    raise ValueError(name)


def bootstrap_change(a: np.ndarray, b: np.ndarray, stat: str, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(change %, 95 % low, 95 % high) of ``stat(b) / stat(a) - 1`` from resampling each run's frames."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    f = _stat(stat)
    point = (float(f(b)) / float(f(a)) - 1.0) * 100.0
    rng = np.random.default_rng(seed)
    sa = f(a[rng.integers(0, len(a), (n_boot, len(a)))])
    sb = f(b[rng.integers(0, len(b), (n_boot, len(b)))])
    ratios = (sb / sa - 1.0) * 100.0
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return point, float(lo), float(hi)


#: metrics a busy machine distorts (accuracy is deterministic for the same frames)
TIMING_METRICS = ("p50_ms", "p90_ms", "mean_ms", "model_fps", "pipeline_fps")


def _ci_change(row_a: dict[str, Any], row_b: dict[str, Any], metric: str) -> tuple[float, float] | None:
    """The change interval (%) the runs' own bootstrap intervals allow: from B's low over A's high to B's high
    over A's low; it holds 0 exactly when the two intervals overlap. None without both runs' intervals."""
    if metric not in ("p50_ms", "p90_ms"):
        return None
    q = metric[:3]
    a_lo, a_hi = _num(row_a.get(f"{q}_ci_low_ms")), _num(row_a.get(f"{q}_ci_high_ms"))
    b_lo, b_hi = _num(row_b.get(f"{q}_ci_low_ms")), _num(row_b.get(f"{q}_ci_high_ms"))
    if any(math.isnan(v) for v in (a_lo, a_hi, b_lo, b_hi)) or a_lo <= 0 or a_hi <= 0:
        return None
    return (b_lo / a_hi - 1.0) * 100.0, (b_hi / a_lo - 1.0) * 100.0


def _invalid(row: dict[str, Any]) -> bool:
    v = row.get("valid")
    return v is False or str(v).strip().lower() == "false"


def _verdict(change_pct: float, lo: float | None, hi: float | None, higher_better: bool,
             threshold_pct: float) -> tuple[str, float]:
    if math.isnan(change_pct):
        return "same", 0.0
    worse_pct = change_pct if not higher_better else -change_pct
    if abs(change_pct) < threshold_pct:
        return "same", 0.0
    if lo is not None and hi is not None and lo <= 0.0 <= hi:
        return "noise", 0.0  # the runs' own spread covers the change
    return ("worse", worse_pct) if worse_pct > 0 else ("better", 0.0)


def compare_results(dir_a: Path | str, dir_b: Path | str, *, threshold_pct: float = 5.0, n_boot: int = 2000,
                    metrics: tuple[str, ...] = tuple(METRICS)) -> Comparison:
    """Compare run B against baseline A for every job id both have."""
    ra, rb = load_results(dir_a), load_results(dir_b)
    cmp = Comparison(Path(dir_a), Path(dir_b), threshold_pct)
    ids_a, ids_b = ra.job_ids(measured_only=False), rb.job_ids(measured_only=False)
    cmp.only_a = [j for j in ids_a if j not in ids_b]
    cmp.only_b = [j for j in ids_b if j not in ids_a]
    rows_a = {str(r["job_id"]): r for r in ra.runs.to_dict("records")}
    rows_b = {str(r["job_id"]): r for r in rb.runs.to_dict("records")}
    cmp.shared = [j for j in ids_a if j in rows_b]
    for job in cmp.shared:
        row_a, row_b = rows_a[job], rows_b[job]
        if row_a["status"] != row_b["status"]:
            cmp.status_changes.append((job, row_a["status"], row_b["status"]))
        if row_a["status"] not in MEASURED or row_b["status"] not in MEASURED:
            continue
        if str(row_a.get("device_actual")) != str(row_b.get("device_actual")):
            cmp.notes.append(f"{job}: ran on {row_a.get('device_actual')} in A, on {row_b.get('device_actual')} in B")
        precisions = [_text(row.get("precision")) for row in (row_a, row_b)]
        if all(precisions) and precisions[0] != precisions[1]:  # precision: auto, a model as stored
            cmp.notes.append(f"{job}: ran {precisions[0]} in A, {precisions[1]} in B (the same job id; the "
                             "framework chose another precision, so its timing and AP compare two precisions)")
        invalid = [f"{side} ({row.get('validity_notes')})" for side, row in (("A", row_a), ("B", row_b))
                   if _invalid(row)]
        if invalid:
            cmp.notes.append(f"{job}: marked invalid in {' and '.join(invalid)}: its timing is not compared")
        fa = _frame_latencies(ra, job)
        fb = _frame_latencies(rb, job)
        if len(fa) and len(fb) and (len(fa) != len(fb)):
            cmp.notes.append(f"{job}: {len(fa)} frames in A, {len(fb)} in B (AP covers different frames)")
        for metric in metrics:
            col, higher_better, stat = METRICS[metric]
            va, vb = _num(row_a.get(col)), _num(row_b.get(col))
            if not (math.isfinite(va) and math.isfinite(vb)) or va == 0:  # no ratio to judge (never +inf %)
                continue
            lo = hi = None
            change = (vb / va - 1.0) * 100.0
            ci = _ci_change(row_a, row_b, metric)
            if ci is not None:
                lo, hi = ci
            elif stat and len(fa) >= 5 and len(fb) >= 5:
                point, lo, hi = bootstrap_change(fa, fb, stat.rstrip("~"), n_boot=n_boot)
                if stat.endswith("~"):  # borrow the interval's width, centred on this metric's own change
                    lo, hi = change + (lo - point), change + (hi - point)
            verdict, reg = _verdict(change, lo, hi, higher_better, threshold_pct)
            if invalid and metric in TIMING_METRICS:  # even "same": an invalid row cannot say it is the same
                verdict, reg = "invalid", 0.0
            cmp.changes.append(MetricChange(job, metric, va, vb, change, lo, hi, verdict, reg))
    if not cmp.shared:
        note = "the two folders share no job id: nothing to compare (were they made by different suites?)"
        if _differ_by_preprocess(cmp.only_a, cmp.only_b):
            note = ("the two folders share no job id, but their ids differ only by the preprocessing (`_shared`): "
                    "one run used --preprocess shared, the other native; rerun one with the other's --preprocess "
                    "to compare them")
        cmp.notes.append(note)
    return cmp


def _differ_by_preprocess(ids_a: list[str], ids_b: list[str]) -> bool:
    """Whether the two id lists meet once the preprocessing part of the id (``_shared``) is left out."""
    import re

    def bare(ids: list[str]) -> set[str]:
        return {re.sub(r"_shared(?=_|$)", "", i) for i in ids}

    return bool(ids_a and ids_b and bare(ids_a) & bare(ids_b))


def _text(v: Any) -> str:
    """A runs.csv cell as text; empty for a missing one (NaN from pandas, a folder without the column)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _frame_latencies(results: Results, job_id: str) -> np.ndarray:
    f = results.frames
    return f.loc[f["job_id"] == job_id, "total_ms"].to_numpy(dtype=float)


def format_comparison(cmp: Comparison, *, show_same: bool = False) -> str:
    """A plain-text report: per job, what got better, worse, or moved within noise."""
    lines = [f"baseline A: {cmp.dir_a}", f"compared B: {cmp.dir_b}",
             f"a change counts when |B/A - 1| >= {cmp.threshold_pct:g} % and the runs' 95 % bootstrap intervals "
             "(p50/p90 in runs.csv; else of the per-frame latencies) exclude no change", ""]
    header = f"{'job':48s} {'metric':12s} {'A':>10s} {'B':>10s} {'change':>9s} {'95% interval':>19s}  verdict"
    lines.append(header)
    lines.append("-" * len(header))
    for c in cmp.changes:
        if c.verdict == "same" and not show_same:
            continue
        ci = f"[{c.ci_low_pct:+.1f}, {c.ci_high_pct:+.1f}] %" if c.ci_low_pct is not None else "(no spread)"
        mark = {"worse": "WORSE", "better": "better", "noise": "noise", "same": "same", "invalid": "INVALID"}[c.verdict]
        lines.append(f"{c.job_id[:48]:48s} {c.metric:12s} {_fmt(c.a):>10s} {_fmt(c.b):>10s} {c.change_pct:+8.1f}% "
                     f"{ci:>19s}  {mark}")
    if not any(c.verdict != "same" for c in cmp.changes) and not show_same:
        lines.append("(no metric moved by the threshold or more)")
    for job, a, b in cmp.status_changes:
        lines.append(f"status {job}: {a} -> {b}")
    if cmp.only_a:
        lines.append(f"only in A: {', '.join(cmp.only_a)}")
    if cmp.only_b:
        lines.append(f"only in B: {', '.join(cmp.only_b)}")
    for note in cmp.notes:
        lines.append(f"note: {note}")
    worse = cmp.regressions
    lines.append("")
    lines.append(f"{len(worse)} regression(s), {sum(c.verdict == 'better' for c in cmp.changes)} improvement(s), "
                 f"{sum(c.verdict == 'noise' for c in cmp.changes)} change(s) within noise"
                 + (f", {sum(c.verdict == 'invalid' for c in cmp.changes)} on rows marked invalid"
                    if any(c.verdict == "invalid" for c in cmp.changes) else ""))
    return "\n".join(lines)
