"""The run's answer in one table: a row per job, ranked by its scenario's headline metric.

This is what `harness run` prints at its end and what report.html shows first, so that "which backend, where,
at what precision, how fast, how accurate, do they agree, can I trust these numbers" is read without scrolling
or opening a CSV (the shape of the Ultralytics benchmark table and MLPerf LoadGen's summary). It reads rows
generically: a row's scenario names its headline metric (:data:`HEADLINES`), so a new scenario or a serving
backend needs no code here beyond, at most, one entry in that table.

Trust is shown from declared columns only (``status``, ``valid``, ``invalid_criteria``, ``below_floor``,
``device_fallback``, ``precision_fallback`` where the folder has them), never from parsing a cause's text.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.report.labels import env_of, where_label

#: scenario -> (column, "min" or "max" is best, label): the number a scenario answers with per row
HEADLINES: dict[str, tuple[str, str, str]] = {
    "single-stream": ("p50_ms", "min", "p50 ms"),
    "offline": ("model_fps", "max", "frames/s"),
    "multi-stream": ("aggregate_fps", "max", "FPS (all)"),
    "realtime": ("e2e_p99_ms", "min", "e2e p99 ms"),
    "server": ("e2e_p99_ms", "min", "e2e p99 ms"),
}
#: a scenario this table does not know is ranked by the median latency, which every measured row has
DEFAULT_HEADLINE = ("p50_ms", "min", "p50 ms")
#: the criteria a scenario's verdict lists, one line each (harness.measure.validity.CRITERIA, in its order)
CRITERIA = ("duration", "samples", "machine quiet", "clock held")
#: runs.csv statuses with measurements (harness.results.MEASURED)
MEASURED = ("ok", "fallback")
#: the terminal table's width: it must fit a default 100-column terminal
WIDTH = 100
#: axes that, when they vary between rows, become part of a row's label (backend alone would be ambiguous)
LABEL_AXES = ("env", "machine", "device_requested", "precision_requested", "level", "model", "video", "preprocess")


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _false(value: Any) -> bool:
    return value is False or str(value).strip().lower() in ("false", "0", "no")


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    return "" if text in ("nan", "None", "<NA>") else text


@dataclass
class Ranked:
    """One job's line of the summary."""

    row: Mapping[str, Any]
    label: str
    scenario: str
    headline: float  # the scenario's headline value (nan when the job measured nothing)
    rank: int | None = None  # 1 = best of its scenario; None for jobs that measured nothing
    fastest: bool = False  # the best trusted row of its scenario
    x_fastest: float = math.nan  # how many times slower than that row (1.00 for it)
    agreement: float = math.nan  # share of boxes matched both ways with the reference job

    @property
    def job_id(self) -> str:
        return str(self.row.get("job_id", ""))

    @property
    def status(self) -> str:
        return _text(self.row.get("status")) or "?"

    @property
    def measured(self) -> bool:
        return self.status in MEASURED

    @property
    def invalid(self) -> bool:
        """Invalid by the harness's rules, or by LoadGen's verdict for a ``--loadgen`` job."""
        lg = _text(self.row.get("lg_result"))
        return self.measured and (_false(self.row.get("valid")) or (bool(lg) and lg != "VALID"))

    @property
    def below_floor(self) -> bool:
        return _true(self.row.get("below_floor"))

    def marks(self) -> list[str]:
        """What a reader must know about this row before its numbers: FALLBACK (of what), BELOW-FLOOR, or the
        failure itself."""
        if not self.measured:
            return [self.status.upper()]
        out = []
        if self.status == "fallback":
            kinds = [k for k, col in (("device", "device_fallback"), ("precision", "precision_fallback"))
                     if _true(self.row.get(col))]
            out.append("FALLBACK" + (f" {'+'.join(kinds)}" if kinds else ""))
        if self.below_floor:
            out.append("BELOW-FLOOR")
        return out or ["ok"]

    def trusted(self) -> bool:
        return self.status == "ok" and not self.invalid and not self.below_floor


@dataclass
class ScenarioGroup:
    """The rows of one scenario, ranked, with their LoadGen-style verdict."""

    scenario: str
    column: str
    best: str  # "min" | "max"
    label: str
    rows: list[Ranked] = field(default_factory=list)

    def verdict(self, min_duration: Mapping[str, float] | None = None) -> tuple[str, list[tuple[str, bool, str]]]:
        """VALID or INVALID, and one (criterion, met, which jobs and why) line per criterion."""
        measured = [r for r in self.rows if r.measured]
        lines = []
        bound = any(_text(r.row.get("lg_perf_constraints_met")) for r in measured)  # a LoadGen server job
        for criterion in CRITERIA + (("latency bound",) if bound else ()):
            failed = [r for r in measured if r.invalid and criterion in _criteria(r.row)]
            if criterion == "duration":
                asked = {r.job_id: (min_duration or {}).get(r.job_id) for r in measured}
                got = [v for v in asked.values() if v]
                why = (f"at least {min(got):g} s timed" if got else "no minimum asked (--min-duration)")
            elif failed:
                why = f"{len(failed)} job(s): {_names(failed)}"
            else:
                why = "all jobs"
            lines.append((criterion, not failed, why))
        unknown = [r for r in measured if r.invalid and not _criteria(r.row)]
        if unknown:  # a folder written before the criteria were recorded
            lines.append(("other", False, f"{len(unknown)} job(s): {_names(unknown)}"))
        valid = bool(measured) and not any(r.invalid for r in measured)
        return ("VALID" if valid else "INVALID"), lines


#: LoadGen's own criteria columns (runs.csv of a --loadgen job) and the verdict line each belongs to
LOADGEN_CRITERIA = (("lg_min_duration_met", "duration"), ("lg_min_queries_met", "samples"),
                    ("lg_early_stopping_met", "samples"), ("lg_perf_constraints_met", "latency bound"))


def _criteria(row: Mapping[str, Any]) -> list[str]:
    """The criteria a row failed: the harness's (``invalid_criteria``) and, for a LoadGen job, LoadGen's."""
    failed = [c for c in _text(row.get("invalid_criteria")).split(",") if c]
    failed += [criterion for column, criterion in LOADGEN_CRITERIA if _false(row.get(column))]
    return list(dict.fromkeys(failed))


def _names(rows: Sequence[Ranked], most: int = 3) -> str:
    names = [r.label for r in rows]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def headline_of(scenario: str) -> tuple[str, str, str]:
    return HEADLINES.get(scenario, DEFAULT_HEADLINE)


def _labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each row's backend, with what sets it apart appended: first only the values that differ from the
    run's most common one on each axis (``opencv``, ``opencv int8``, ``tf1 gpu``), else every axis that varies;
    the job id when even that is ambiguous."""
    from collections import Counter

    values = {axis: [_axis(r, axis) for r in rows] for axis in LABEL_AXES}
    varying = [axis for axis, vals in values.items() if len({v for v in vals if v}) > 1]
    common = {axis: Counter(v for v in values[axis] if v).most_common(1)[0][0] for axis in varying}
    backends = [_text(r.get("backend")) or _text(r.get("job_id")) for r in rows]
    short = [" ".join([b] + [values[a][i] for a in varying if values[a][i] and values[a][i] != common[a]])
             for i, b in enumerate(backends)]
    if len(set(short)) == len(short):
        return short
    full = [" ".join([b] + [values[a][i] for a in varying if values[a][i]]) for i, b in enumerate(backends)]
    if len(set(full)) == len(full):
        return full
    return [_text(r.get("job_id")) for r in rows]  # unique by construction


def _axis(row: Mapping[str, Any], axis: str) -> str:
    if axis == "env":
        return "@" + where_label(env_of(row))
    value = _text(row.get(axis))
    if axis == "precision_requested":  # what was asked names the job; the "prec" column says what ran
        return value or _text(row.get("precision"))
    if axis in ("model", "video"):
        return value.rsplit("/", 1)[-1]
    return value


def _reference(rows: Sequence[Ranked]) -> str | None:
    """The job others' agreement is shown against: the first measured row in report order (the reference
    SSD's own framework comes first in the backend order)."""
    for r in rows:
        if r.measured:
            return r.job_id
    return None


def _agreement(agreement: Any, ref: str | None, job: str) -> float:
    """min(matched_share_a, matched_share_b) of the pair (ref, job): the share of boxes both sides found."""
    if agreement is None or ref is None or job == ref or len(agreement) == 0:
        return 1.0 if job == ref and ref is not None else math.nan
    for r in agreement.to_dict("records"):
        if {str(r.get("job_a")), str(r.get("job_b"))} == {ref, job}:
            return min(_num(r.get("matched_share_a")), _num(r.get("matched_share_b")))
    return math.nan


def rank(runs: Any, agreement: Any = None) -> tuple[list[ScenarioGroup], str | None]:
    """The runs DataFrame (report order) as ranked scenario groups, and the reference job's id."""
    records = runs.to_dict("records") if hasattr(runs, "to_dict") else list(runs)
    labels = _labels(records)
    all_rows = []
    groups: dict[str, ScenarioGroup] = {}
    for rec, label in zip(records, labels):
        scenario = _text(rec.get("scenario")) or "single-stream"
        column, best, title = headline_of(scenario)
        group = groups.setdefault(scenario, ScenarioGroup(scenario, column, best, title))
        ranked = Ranked(rec, label, scenario, _num(rec.get(column)) if _text(rec.get("status")) in MEASURED else math.nan)
        group.rows.append(ranked)
        all_rows.append(ranked)
    ref = _reference(all_rows)
    for r in all_rows:
        r.agreement = _agreement(agreement, ref, r.job_id) if r.measured else math.nan
    for group in groups.values():
        sign = 1.0 if group.best == "min" else -1.0
        # measured rows with a number first (best first), then measured rows without one, then failures
        group.rows.sort(key=lambda r: (not r.measured, math.isnan(r.headline),
                                       sign * r.headline if not math.isnan(r.headline) else 0.0))
        numbered = [r for r in group.rows if not math.isnan(r.headline)]
        for i, r in enumerate(numbered, 1):
            r.rank = i
        # the reference row: trusted if any; else one that at least ran as asked and kept its accuracy
        pool = ([r for r in numbered if r.trusted()]
                or [r for r in numbered if r.status == "ok" and not r.below_floor] or numbered)
        if pool:
            top = pool[0]
            top.fastest = True
            for r in numbered:
                if r.headline > 0 and top.headline > 0:
                    r.x_fastest = r.headline / top.headline if group.best == "min" else top.headline / r.headline
    return list(groups.values()), ref


# -- the terminal table -------------------------------------------------------------------------------------

def _f(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _pm(row: Mapping[str, Any], q: str) -> str:
    """``12.3±0.4``: the percentile and the larger half of its 95 % bootstrap interval."""
    value = _num(row.get(f"{q}_ms"))
    if math.isnan(value):
        return "-"
    lo, hi = _num(row.get(f"{q}_ci_low_ms")), _num(row.get(f"{q}_ci_high_ms"))
    if math.isnan(lo) or math.isnan(hi):
        return _f(value)
    half = max(hi - value, value - lo, 0.0)
    return f"{_f(value)}±{_f(half)}"


def _cells(r: Ranked, group: ScenarioGroup) -> dict[str, str]:
    row = r.row
    on = _text(row.get("device_actual")) or _text(row.get("device_requested"))
    cells = {
        "#": (f"{r.rank}" + ("*" if r.fastest else "")) if r.rank else "-",
        "job": r.label,
        "on": on,
        "prec": _text(row.get("precision")),
        "status": " ".join(r.marks()),
        "valid": "" if not r.measured else ("NO" if r.invalid else ("yes" if _true(row.get("valid")) else "?")),
    }
    if group.column != "p50_ms":
        cells[group.label] = _f(r.headline)
    cells["p50 ms"] = _pm(row, "p50") if r.measured else ""
    cells["p90 ms"] = _pm(row, "p90") if r.measured else ""
    cells["FPS"] = _f(_num(row.get("model_fps"))) if r.measured else ""
    cells["x best"] = f"{r.x_fastest:.2f}" if not math.isnan(r.x_fastest) else ""
    cells["AP50"] = _f(_num(row.get("ap50")), 3) if r.measured else ""
    cells["agree"] = _f(r.agreement, 2) if r.measured else ""
    if group.column != "p50_ms":  # the scenario's own number replaces the p90 (width)
        cells.pop("p90 ms")
    return cells


def _table(group: ScenarioGroup, width: int) -> list[str]:
    rows = [_cells(r, group) for r in group.rows]
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(c[h]) for c in rows)) for h in heads}
    left = {"#", "job", "on", "prec", "status", "valid"}

    def fixed() -> int:
        return sum(widths[h] for h in heads if h != "job") + len(heads) - 1

    for optional in ("p90 ms", "agree", "x best", "FPS"):  # a narrow terminal loses these first (runs.csv has all)
        if fixed() + 10 <= width:
            break
        if optional in heads:
            heads.remove(optional)
    widths["job"] = max(10, min(widths["job"], width - fixed()))

    def line(cells: Mapping[str, str]) -> str:
        out = []
        for h in heads:
            text = cells[h]
            if len(text) > widths[h]:
                text = text[: widths[h] - 1] + "~"
            out.append(text.ljust(widths[h]) if h in left else text.rjust(widths[h]))
        return " ".join(out).rstrip()

    return [line({h: h for h in heads})] + [line(c) for c in rows]


def format_summary(runs: Any, agreement: Any = None, *, width: int = WIDTH,
                   min_duration: Mapping[str, float] | None = None) -> str:
    """The ranked summary as plain text no wider than ``width``: a table and a verdict per scenario."""
    groups, ref = rank(runs, agreement)
    out: list[str] = []
    for group in groups:
        order = "lower is better" if group.best == "min" else "higher is better"
        out.append(_clip(f"{group.scenario}: ranked by {group.label} ({order}); * = best trusted row, "
                         "x best = times slower", width))
        out += _table(group, width)
        verdict, lines = group.verdict(min_duration)
        out.append(f"  {group.scenario} {verdict}")
        for criterion, met, why in lines:
            out.append(_clip(f"    {criterion:<13} {'yes' if met else 'NO '}  {why}", width))
        out.append("")
    if ref is not None:
        out.append(_clip(f"agree: share of boxes both found, against {ref}", width))
    return "\n".join(out).rstrip()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


# -- the report's first table -------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(_text(value))


def summary_html(runs: Any, agreement: Any = None, *, min_duration: Mapping[str, float] | None = None) -> str:
    """The ranked summary as report.html's first table (id ``ranked-summary``), one per scenario, each followed
    by its verdict."""
    groups, ref = rank(runs, agreement)
    parts = []
    for group in groups:
        heads = list(_cells(group.rows[0], group))
        body = []
        for r in group.rows:
            cells = _cells(r, group)
            cls = "row-" + _e(r.status) + (" row-invalid" if r.invalid else "") + (" row-below" if r.below_floor else "")
            tds = []
            for h in heads:
                text = _e(cells[h])
                if h == "status":
                    kind = "ok" if cells[h] == "ok" else ("warn" if r.measured and not r.below_floor else "bad")
                    text = f'<span class="{kind}">{text}</span>'
                elif h == "valid" and cells[h] == "NO":
                    text = f'<span class="bad" title="{_e(r.row.get("validity_notes"))}">INVALID</span>'
                elif h == "job":
                    text = f'<span title="{_e(r.job_id)}">{text}</span>'
                tds.append(f'<td class="{"l" if h in ("job", "on", "prec", "status", "valid") else ""}">{text}</td>')
            body.append(f'<tr class="{cls}">{"".join(tds)}</tr>')
        head = "".join(f"<th class='{'l' if h in ('job', 'on', 'prec', 'status', 'valid') else ''}'>{_e(h)}</th>"
                       for h in heads)
        verdict, lines = group.verdict(min_duration)
        items = "".join(f"<li><span class='{'ok' if met else 'bad'}'>{'yes' if met else 'NO'}</span> "
                        f"{_e(criterion)}: {_e(why)}</li>" for criterion, met, why in lines)
        order = "lower is better" if group.best == "min" else "higher is better"
        parts.append(
            f"<h3>{_e(group.scenario)}: ranked by {_e(group.label)} ({order}) &middot; "
            f"<span class='{'ok' if verdict == 'VALID' else 'bad'}'>{verdict}</span></h3>"
            f"<table class='ranked' id='ranked-{_e(group.scenario)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><ul class='verdict'>{items}</ul>")
    note = (f"<p class='meta'>* = the best row that is ok, valid and within the accuracy floor; x best = times slower "
            f"than it; p50/p90 ± half of the 95 % bootstrap interval; agree = share of boxes matched both ways with "
            f"<code>{_e(ref)}</code>. Every column is in the full table below and in runs.csv.</p>") if ref else ""
    return f"<section id='ranked-summary'><h2>Ranked summary</h2>{''.join(parts)}{note}</section>"


def collapsed_reasons(rows: Iterable[Mapping[str, Any]], key: str = "validity_notes") -> list[tuple[str, list[str]]]:
    """Identical reasons once each, with the jobs they cover, most common first."""
    seen: dict[str, list[str]] = {}
    for r in rows:
        for reason in [p.strip() for p in _text(r.get(key)).split("; ") if p.strip()] or ["(no reason recorded)"]:
            seen.setdefault(reason, []).append(_text(r.get("job_id")))
    return sorted(seen.items(), key=lambda kv: -len(kv[1]))
