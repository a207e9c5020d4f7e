"""The runs.csv row has one declaration (harness/results/row.py): every column a real job writes is declared
there, every declared column is documented, the writer keeps its order, and the reader its types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.jobs import JobSpec
from harness.results import ResultsWriter, load_run
from harness.results.row import BY_NAME, COLUMNS, NAMES, TEXT_COLUMNS, markdown_table, ordered, undeclared
from harness.execution.runner import failure_result, run_job
from harness.core.scenario import ScenarioSpec

from tests.conftest import requires_cv2

DOCS = Path(__file__).resolve().parents[2] / "docs" / "results-columns.md"
HOW_TO_ADD = ("declare it with one line in harness/results/row.py's COLUMNS (name, type, unit, who writes it, "
              "meaning), then regenerate the docs: python -m harness.results.row > docs/results-columns.md")


def _assert_declared(columns: list[str], where: str) -> None:
    missing = undeclared(columns)
    assert not missing, f"{where} writes runs.csv column(s) {missing} that are not declared: {HOW_TO_ADD}"


SCENARIOS = [
    ScenarioSpec(),
    ScenarioSpec("offline", batch=2),
    ScenarioSpec("multi-stream", streams=2, instances=2),
    ScenarioSpec("realtime", fps=30.0),
    ScenarioSpec("server", qps=30.0, latency_bound_ms=500.0),
]


@pytest.fixture(scope="module")
def real_rows(assets_root: Path) -> list[dict]:
    """Rows of real jobs: every scenario, a GPU request on this machine, and a job that could not start."""
    jobs = [JobSpec(backend="opencv", source="pets09-s2l1", frames=6, warmup=1, scenario=sc) for sc in SCENARIOS]
    jobs.append(JobSpec(backend="opencv", source="pets09-s2l1", frames=3, warmup=1, device="gpu"))
    rows = [run_job(spec).summary for spec in jobs]
    rows.append(failure_result(jobs[0], "crashed", "the worker died").summary)
    return rows


@requires_cv2
def test_every_column_a_real_job_writes_is_declared(real_rows: list[dict]) -> None:
    assert [r["status"] for r in real_rows][:5] == ["ok"] * 5, [r["cause"] for r in real_rows]
    for row in real_rows:
        _assert_declared(list(row), f"the {row['scenario']} job {row['job_id']}")


def test_every_column_the_executors_machine_state_and_eval_write_is_declared() -> None:
    from harness.execution.ray.facts import NODE_COLUMNS, RAY_COLUMNS
    from harness.measure.machine_state import MachineState, Sample
    from harness.measure.metrics.evaluate import ACCURACY_RUN_COLUMNS
    from harness.measure.metrics.floor import FLOOR_COLUMNS
    from harness.measure.validity import judge

    _assert_declared([*NODE_COLUMNS, "machine"], "an executor (stamp_node)")
    _assert_declared(list(RAY_COLUMNS), "the Ray executor")
    _assert_declared([*ACCURACY_RUN_COLUMNS, *FLOOR_COLUMNS], "harness eval")
    from harness.execution.scenarios.loadgen import loadgen_columns

    for kind in ("single-stream", "offline", "server"):
        _assert_declared(list(loadgen_columns({}, kind)), f"a --loadgen {kind} job")
    gpu = {"sm_mhz": 1500, "temp_c": 60, "power_w": 100.0}
    sample = Sample(t=1.0, seconds=1.0, busy_cores=0.3, own_cores=0.2, steal_cores=0.0, load1=0.5, runnable=1,
                    cpu_mhz_min=2900.0, cpu_mhz_max=3000.0, throttle_events=0, gpu=gpu)
    state = MachineState(cpus=2, before=sample, during=[sample], governor="performance", gpu_name="x")
    _assert_declared(list(state.columns()), "the machine-state monitor")
    for headline in ("p90", "p99", "e2e_p99", ""):
        _assert_declared(list(judge(state, headline, np.ones(50), interval_s=1.0).columns()),
                         f"the validity rules (headline {headline!r})")


def test_every_declared_column_is_documented() -> None:
    assert DOCS.read_text(encoding="utf-8") == markdown_table(), (
        "docs/results-columns.md differs from harness/results/row.py: regenerate it with "
        "python -m harness.results.row > docs/results-columns.md")
    for column in COLUMNS:
        assert column.type in ("text", "int", "float", "bool") and column.writer and column.meaning, column


def test_the_writer_keeps_the_declared_order_and_an_unknown_column_after(tmp_path: Path) -> None:
    spec = JobSpec(backend="opencv", source="pets09-s2l1")
    result = failure_result(spec, "failed", "no model")
    result.summary["from_a_newer_harness"] = "x"
    with ResultsWriter(tmp_path) as writer:
        writer.plan([spec])
        writer.add(result)
    header = (tmp_path / "runs.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == ordered(result.summary) and header[-1] == "from_a_newer_harness"
    assert [c for c in header if c in BY_NAME] == [n for n in NAMES if n in header]


def test_the_reader_reads_text_as_text_and_an_old_folder_loads(tmp_path: Path) -> None:
    """An all-empty text column is "" (pandas alone would read float NaN); a column this harness does not
    declare, and declared ones the folder lacks, are tolerated."""
    spec = JobSpec(backend="opencv", source="pets09-s2l1")
    with ResultsWriter(tmp_path) as writer:
        writer.plan([spec])
        writer.add(failure_result(spec, "failed", "no model"))
    runs = tmp_path / "runs.csv"
    lines = runs.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    keep = [i for i, c in enumerate(header) if c not in ("precision", "scenario", "level")]
    cells = next(iter(__import__("csv").reader([lines[1]])))
    old = [",".join(header[i] for i in keep) + ",old_only", ",".join(_q(cells[i]) for i in keep) + ",7"]
    runs.write_text("\n".join(old) + "\n", encoding="utf-8")
    run = load_run(tmp_path)
    row = run.job(spec.job_id).row
    assert row["old_only"] == 7 and "precision" not in row
    for name in TEXT_COLUMNS:
        if name in row:
            assert isinstance(row[name], str), (name, row[name])
    assert row["precision_requested"] == "" and row["device_actual"] == "" and row["cause"] == "no model"


def _q(cell: str) -> str:
    return f'"{cell}"' if "," in cell or '"' in cell else cell
