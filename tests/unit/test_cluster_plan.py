"""Planning a run across machines, without Ray: what each job asks of a node, the words when no node has it,
the suite's machines axis, and the report's machine x backend table. (Runs on Ray: tests/runs/test_ray.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.execution.ray.resources import Demand, Node, demand_of, device_problem, fitting, missing_text
from harness.core.errors import HarnessError
from harness.core.jobs import JobSpec
from harness.report.machines import machine_rows, machine_table_html
from harness.suites.expand import SuiteError, load_suite


def test_demand_from_threads_device_and_machine() -> None:
    assert demand_of(JobSpec("tf1", "x")).amounts() == {"CPU": 1.0}
    assert demand_of(JobSpec("tf1", "x", threads=4, device="gpu")).amounts() == {"CPU": 4.0, "GPU": 1.0}
    assert demand_of(JobSpec("opencv", "x", device="opencl")).amounts() == {"CPU": 1.0}
    spec = JobSpec("tf1", "x", machine="orin", resources={"jetson-orin": 1, "GPU": 1, "CPU": 2})
    demand = demand_of(spec)
    assert demand.ray_options() == {"num_cpus": 2.0, "num_gpus": 1.0, "resources": {"jetson-orin": 1.0}}
    assert spec.job_id.endswith("_on-orin")

    cpu_box = Node("a" * 56, "10.0.0.1", "cpu-box", {"CPU": 8, "node:10.0.0.1": 1, "memory": 1e10})
    gpu_box = Node("b" * 56, "10.0.0.2", "gpu-box", {"CPU": 8, "GPU": 1})
    assert fitting(Demand(cpus=2), [gpu_box, cpu_box]) == [cpu_box, gpu_box]  # a CPU job leaves the GPU free
    assert fitting(demand, [cpu_box, gpu_box]) == []
    text = missing_text(demand, [cpu_box, gpu_box], "orin")
    assert 'no node has resource "jetson-orin"' in text and "machine 'orin'" in text
    assert "cpu-box/aaaaaaaa: CPU 8" in text and "gpu-box/bbbbbbbb: CPU 8, GPU 1" in text
    assert "the most any node has is 8" in missing_text(Demand(cpus=16), [cpu_box])
    with pytest.raises(Exception, match="positive amount"):
        JobSpec("tf1", "x", machine="m", resources={"GPU": 0})


    assert device_problem("gpu:1") and device_problem("cuda:2") and not device_problem("gpu")
    assert not device_problem("cpu") and not device_problem("gpu:0")


SUITE = """
[defaults]
frames = 5
[matrix]
backends = ["tf1", "opencv"]
machines = ["kind-a", { name = "any-gpu", resources = { GPU = 1 } }]
[[exclude]]
backend = "opencv"
machine = "kind-a"
[[job]]
backend = "tf1"
machine = "kind-a"
tag = "named"
[[job]]
backend = "tf1"
machine = { name = "orin", resources = { "jetson-orin" = 1 } }
"""


def test_the_machines_axis_of_a_suite(tmp_path: Path) -> None:
    jobs = {j.job_id: (j.machine, j.resources) for j in load_suite(tmp_path / "s.toml", text=SUITE)}
    assert jobs == {
        "tf1_ref_pets09-s2l1_cpu_on-kind-a": ("kind-a", {"kind-a": 1.0}),  # a bare name: that custom resource
        "tf1_ref_pets09-s2l1_cpu_on-any-gpu": ("any-gpu", {"GPU": 1.0}),
        "opencv_ref_pets09-s2l1_cpu_on-any-gpu": ("any-gpu", {"GPU": 1.0}),  # opencv on kind-a is excluded
        "tf1_ref_pets09-s2l1_cpu_on-kind-a_named": ("kind-a", {"kind-a": 1.0}),  # the axis's machine by name
        "tf1_ref_pets09-s2l1_cpu_on-orin": ("orin", {"jetson-orin": 1.0}),
    }
    without = {j.job_id: j.machine for j in load_suite(tmp_path / "t.toml", text='[matrix]\nbackends = ["tf1"]\n')}
    assert without == {"tf1_ref_pets09-s2l1_cpu": None}


@pytest.mark.parametrize("machines, problem", [
    ('[{ name = "x", resources = { GPU = -1 } }]', "matrix.machines[0]: resource 'GPU' = -1: expected a resource "
                                                   "name and a positive amount"),
    ('[{ name = "x", resources = { GPU = 1 }, gpus = 2 }]', "matrix.machines[0].gpus: unknown key in a machine entry"),
    ('["has space"]', "matrix.machines[0]: machine 'has space' is not a usable name"),
    ("[]", "matrix.machines: expected a non-empty list of machines"),
    ("[3]", "matrix.machines[0]: expected a machine name or a { name = ..., resources = {...} } table, got 3"),
])
def test_a_bad_machine_is_refused_with_its_line(tmp_path: Path, machines: str, problem: str) -> None:
    with pytest.raises(SuiteError) as err:
        load_suite(tmp_path / "bad.toml", text=f'[matrix]\nbackends = ["tf1"]\nmachines = {machines}\n')
    assert err.value.problem.startswith(f"{tmp_path / 'bad.toml'}:3: {problem}"), err.value.problem


def test_a_job_spec_checks_its_machine() -> None:
    with pytest.raises(HarnessError, match="not a usable name"):
        JobSpec("tf1", "x", machine="a/b")
    with pytest.raises(HarnessError, match="not a table of amounts"):
        JobSpec("tf1", "x", machine="m", resources=["GPU"])
    spec = JobSpec.from_dict(JobSpec("tf1", "x", machine="m", resources={"m": 2}).to_dict())
    assert (spec.machine, spec.resources, spec.job_id) == ("m", {"m": 2.0}, "tf1_ref_x_cpu_on-m")


def _row(job: str, backend: str, host: str, node: str, p50: float, fps: float, **extra) -> dict:
    return {"job_id": job, "backend": backend, "status": "ok", "hostname": host, "node": node, "p50_ms": p50,
            "model_fps": fps, "cpu_model": f"{host} CPU", "gpu_name": "", "device_actual": "cpu",
            "model": "reference SSD", "executor": "process", "machine": "", **extra}


def test_the_machine_by_backend_table() -> None:
    one_machine = pd.DataFrame([_row("a", "tf1", "box", "local", 10.0, 90.0),
                                _row("b", "opencv", "box", "local", 20.0, 45.0)])
    assert machine_rows(one_machine) == {} and machine_table_html(one_machine) == ""  # the summary says it all

    runs = pd.DataFrame([
        _row("a", "tf1", "box", "local", 10.0, 90.0),
        _row("b", "tf1", "server", "local", 5.0, 180.0),
        _row("c", "opencv", "server", "local", 8.0, 110.0),
        {**_row("d", "tf1", "server", "local", 1.0, 1.0), "status": "failed"},  # not measured: not shown
    ])
    table = machine_rows(runs)
    assert {m: {b: [r["job_id"] for r in rows] for b, rows in cells.items()} for m, cells in table.items()} == {
        "box": {"tf1": ["a"]}, "server": {"tf1": ["b"], "opencv": ["c"]}}
    page = machine_table_html(runs)
    assert page.index("<th>tf1</th>") < page.index("<th>opencv</th>")  # backends in the report's order
    assert "5.0 ms · 180.0 FPS" in page and "server CPU" in page

    # two Ray nodes on one host (a simulated cluster) stay apart; a machine kind names its row
    ray_runs = pd.DataFrame([
        _row("a", "tf1", "vm", "1111aaaa9999", 10.0, 90.0, executor="ray", machine="kind-a"),
        _row("b", "tf1", "vm", "2222bbbb9999", 11.0, 88.0, executor="ray"),
    ])
    assert set(machine_rows(ray_runs)) == {"kind-a (vm/1111aaaa)", "vm/2222bbbb"}
