"""The Ray executor on a real Ray cluster (``ray.cluster_utils.Cluster`` on 127.0.0.1, no mocks): jobs land on
the nodes their machines name, TF1 gives the same boxes as under the process executor, a node removed under
a job gives a node-lost retry elsewhere, a machine no node has is a clear row at once, local files reach a
node that lacks them (or are refused), Ctrl-C and a killed driver leave a folder --resume finishes, the
doctor answers from every node, and a named environment is built on the node with the driver's key.

Nodes: the head (2 CPUs, "kind-a") and node B (1 CPU, "kind-b"); tests that remove nodes add their own.
Select or skip these tests with ``-m ray`` / ``-m 'not ray'``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

# Ray uses the loopback address only when this is set before it is imported (harness.execution.ray.connect)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from harness.execution.ray.executor import RayExecutor  # noqa: E402
from harness.core.jobs import JobResult, JobSpec  # noqa: E402
from harness.execution.process import SubprocessExecutor  # noqa: E402
from tests.conftest import as_in_a_terminal, requires_cv2, requires_tf  # noqa: E402
from tests.helpers.ray_cluster import TestCluster  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
FS = "tests.helpers.stand_in_backends:FrameStatsDetector"


@pytest.fixture(scope="module")
def cluster() -> TestCluster:
    if ray.is_initialized():
        ray.shutdown()
    c = TestCluster({"kind-a": 1}, head_cpus=2)
    try:
        c.node_b = c.add_node({"kind-b": 1})
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def executor(cluster: TestCluster, tmp_path: Path):
    ex = RayExecutor(log_dir=tmp_path / "logs", notice=lambda text: None)
    try:
        yield ex
    finally:
        ex.close()


def run_all(ex: RayExecutor, specs: list[JobSpec], **kw) -> dict[str, JobResult]:
    results: list[JobResult] = []
    ex.run_all(specs, results.append, **kw)
    assert len(results) == len(specs)
    return {r.spec.job_id: r for r in results}


def cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal, **kw)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -------------------------------------------------------------------------------------------------------
# without a cluster: bad input (the rest of the planning is tested in test_cluster_plan.py)
# -------------------------------------------------------------------------------------------------------

def test_importing_the_cluster_code_imports_neither_ray_nor_a_framework() -> None:
    code = ("import sys, harness.execution.ray, harness.execution.ray.executor, harness.execution.ray.node_task, harness.execution.ray.doctor, "
            "harness.execution.ray.inputs, harness.commands.run, harness.commands.doctor, harness.report.machines; "
            "print(sorted(m for m in ('ray', 'tensorflow', 'torch', 'cv2') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_ray_input_is_one_error_before_the_folder_is_made(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('[matrix]\nbackends = ["tf1"]\nmachines = ["orin"]\n')
    proc = cli("run", str(suite), "--out", str(tmp_path / "out"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "error: the jobs name machines (orin), which only the Ray executor can place" in err
    assert "fix: add --executor ray" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    # a head nobody runs: one error at once (Ray itself retries such an address for minutes)
    proc = cli("run", "-b", FS, "--executor", "ray", "--address", "127.0.0.1:1", "--out", str(tmp_path / "out"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "error: cannot reach the Ray cluster's head at 127.0.0.1:1: Connection refused" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------------------
# on the cluster
# -------------------------------------------------------------------------------------------------------

def test_jobs_land_on_the_nodes_their_machines_name(cluster: TestCluster, tmp_path: Path, assets_root) -> None:
    suite = tmp_path / "machines.toml"
    suite.write_text(f'''
[defaults]
frames = 5
warmup = 1
[matrix]
backends = ["{FS}"]
machines = ["kind-a", "kind-b"]
''')
    out = tmp_path / "out"
    proc = cli("run", str(suite), "--executor", "ray", "--address", cluster.address, "--out", str(out), "-q")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False).set_index("machine")
    assert set(runs.index) == {"kind-a", "kind-b"} and set(runs.status) == {"ok"}
    assert runs.loc["kind-a", "node"] == cluster.head.node_id
    assert runs.loc["kind-b", "node"] == cluster.node_b.node_id
    for machine in ("kind-a", "kind-b"):
        row = runs.loc[machine]
        assert row.executor == "ray" and row.hostname == socket.gethostname() and row.node_ip == "127.0.0.1"
        assert row.cpu_model and int(row.attempts) == 1 and row.lost_nodes == "" and row.node_concurrent_jobs == ""
        assert f"of {socket.gethostname()}/{row.node[:8]}" in err  # the terminal line says where it ran
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == sorted(f"{jid}.log" for jid in runs.job_id)
    page = (out / "report.html").read_text()
    assert "Machines x backends" in page
    assert f"kind-a ({socket.gethostname()}/{cluster.head.node_id[:8]})" in page
    assert f"kind-b ({socket.gethostname()}/{cluster.node_b.node_id[:8]})" in page
    env = json.loads((out / "env.json").read_text())["executor"]
    assert env["name"] == "ray" and env["local_ray_started"] is False and env["jobs_per_node"] == 1
    assert {n["node"] for n in env["nodes"]} >= {cluster.head.node_id, cluster.node_b.node_id}
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    assert {j["spec"]["machine"]: j["spec"]["resources"] for j in jobs} == {"kind-a": {"kind-a": 1.0},
                                                                          "kind-b": {"kind-b": 1.0}}


@requires_tf
def test_tf1_on_a_node_finds_the_same_boxes_as_the_process_executor(executor: RayExecutor, cluster: TestCluster,
                                                                     tmp_path: Path, assets_root) -> None:
    spec = JobSpec("tf1", "pets09-s2l1", frames=20, warmup=2)
    on_b = JobSpec("tf1", "pets09-s2l1", frames=20, warmup=2, machine="kind-b", resources={"kind-b": 1})
    local = SubprocessExecutor(log_dir=tmp_path / "local")
    try:
        reference = local.run(spec)
    finally:
        local.close()
    result = run_all(executor, [on_b])[on_b.job_id]
    assert reference.status == result.status == "ok", (reference.cause, result.cause)
    assert result.summary["node"] == cluster.node_b.node_id
    assert len(result.detections) > 20 and result.detections == reference.detections
    assert [f["n_dets"] for f in result.frames] == [f["n_dets"] for f in reference.frames]
    assert Path(result.info["log"]).is_file() and result.info["log"].startswith(str(tmp_path / "logs"))


def test_a_jobs_worker_gets_the_nodes_environment_not_rays_task_settings(cluster: TestCluster) -> None:
    from harness.execution.ray.node_task import child_environ, child_path

    @ray.remote(num_cpus=1, resources={"kind-b": 1})
    def look() -> dict:
        return {"task": os.environ.get("OMP_NUM_THREADS"), "child": child_environ().get("OMP_NUM_THREADS"),
                "path": child_path(), "ray_dir": os.path.dirname(ray.__file__)}

    seen = ray.get(look.remote())
    assert seen["task"] is not None  # Ray set it for the task ...
    assert seen["child"] == os.environ.get("OMP_NUM_THREADS")  # ... the job's worker gets what the node had
    assert not [p for p in seen["path"] if p.startswith(seen["ray_dir"])]


def test_a_resource_no_node_has_is_a_clear_row_at_once(executor: RayExecutor, assets_root) -> None:
    orin = JobSpec(FS, "pets09-s2l1", frames=3, warmup=1, machine="orin", resources={"jetson-orin": 1})
    wide = JobSpec(FS, "pets09-s2l1", frames=3, warmup=1, threads=8, job_id="eight-threads")
    fine = JobSpec(FS, "pets09-s2l1", frames=3, warmup=1)
    second_gpu = JobSpec(FS, "pets09-s2l1", frames=3, warmup=1, device="gpu:1")
    rows = run_all(executor, [orin, wide, fine, second_gpu])
    assert rows[fine.job_id].status == "ok"  # the others cost nothing to it
    assert rows[second_gpu.job_id].status == "failed"
    assert "device gpu:1: on Ray a job gets the GPU Ray assigns it, seen as GPU 0" in rows[second_gpu.job_id].cause
    lost = rows[orin.job_id]
    assert lost.status == "no-node" and lost.summary["attempts"] == 0
    assert ("NoNode: the job needs machine 'orin' (CPU 1, jetson-orin 1): no node has resource \"jetson-orin\""
            in lost.cause)
    assert "kind-a 1" in lost.cause and "kind-b 1" in lost.cause  # every node's resources
    assert "--resources '{\"jetson-orin\": 1}'" in lost.cause  # and how to add one
    assert rows[wide.job_id].status == "no-node"
    assert "the job asks for CPU 8, the most any node has is 2" in rows[wide.job_id].cause


def test_a_crash_and_a_hang_on_a_node_get_the_process_executors_rows(executor: RayExecutor, assets_root) -> None:
    tb = "tests.helpers.stand_in_backends"
    seg = JobSpec(f"{tb}:SegfaultDetector", "pets09-s2l1", frames=10, warmup=1)
    hang = JobSpec(f"{tb}:HangDetector", "pets09-s2l1", frames=10, warmup=1, timeout_s=2.0)
    rows = run_all(executor, [seg, hang])
    crashed, timed_out = rows[seg.job_id], rows[hang.job_id]
    assert crashed.status == "crashed" and "killed by SIGSEGV" in crashed.cause
    assert "SegfaultDetector: crashing on inference 3" in crashed.cause  # its last words, from the node's log
    assert "SegfaultDetector: crashing" in Path(crashed.info["log"]).read_text()  # the log came back too
    assert timed_out.status == "timeout" and "limit 2 s" in timed_out.cause
    assert {crashed.summary["executor"], timed_out.summary["executor"]} == {"ray"}


def test_without_an_address_a_private_local_ray_is_started_and_stopped(tmp_path: Path, assets_root) -> None:
    import psutil

    def ray_daemons() -> set[int]:
        return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("gcs_server", "raylet")}

    before = ray_daemons()  # the test cluster's
    out = tmp_path / "out"
    proc = cli("run", "-b", FS, "--frames", "3", "--warmup", "1", "--executor", "ray", "--out", str(out), "-q",
               "--no-report")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.status == "ok" and row.executor == "ray" and row.node_ip == "127.0.0.1"
    wait_for(lambda: ray_daemons() <= before, 30, "the run's own Ray to be stopped")


def test_jobs_sharing_a_node_say_so_and_one_per_node_is_the_default(cluster: TestCluster, tmp_path: Path,
                                                                    assets_root) -> None:
    # the two jobs must overlap on the node: 4 s each, so the second one's worker start (seconds on a loaded
    # machine; at 1.8 s a job it once missed the first job's run entirely) falls inside the first one's run
    specs = [JobSpec(FS, "pets09-s2l1", frames=20, warmup=1, options={"delay_s": 0.2}, resources={"kind-a": 0.5},
                     job_id=f"shared-{i}") for i in range(2)]
    packed = RayExecutor(log_dir=tmp_path / "a", jobs_per_node=0, notice=lambda t: None)
    try:
        rows = run_all(packed, specs)
    finally:
        packed.close()
    assert rows["shared-0"].summary["node_concurrent_jobs"] == "shared-1"
    assert rows["shared-1"].summary["node_concurrent_jobs"] == "shared-0"
    one = RayExecutor(log_dir=tmp_path / "b", notice=lambda t: None)
    try:
        rows = run_all(one, specs)
    finally:
        one.close()
    assert {r.summary["node"] for r in rows.values()} == {cluster.head.node_id}
    assert [r.summary["node_concurrent_jobs"] for r in rows.values()] == ["", ""]


def test_a_node_lost_under_its_job_gives_a_retry_elsewhere(cluster: TestCluster, tmp_path: Path, assets_root) -> None:
    # two nodes of one kind; the spare has a resource the job does not need, so the job goes to the other first
    # (a job prefers the node with the fewest resources it does not use)
    doomed = cluster.add_node({"kind-lost": 1})
    spare = cluster.add_node({"kind-lost": 1, "something-else": 1})
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    # 40 frames at 0.2 s: the node is removed after frame 5, 7 s before the job could end there, and the retry
    # (the whole job again on the spare) takes 8 s
    job = JobSpec(FS, "pets09-s2l1", frames=40, warmup=1, options={"delay_s": 0.2, "pid_dir": str(pid_dir)},
                  machine="kind-lost", resources={"kind-lost": 1})
    other = JobSpec(FS, "pets09-s2l1", frames=30, warmup=1, options={"delay_s": 0.1}, machine="kind-a",
                    resources={"kind-a": 1})
    first_pid: list[int] = []

    def remove_when_running(node):
        def progress_for(spec: JobSpec):
            def progress(done: int, total, fps: float, phase: str = "") -> None:
                if spec.job_id == job.job_id and done >= 5 and not first_pid:
                    first_pid.append(int((pid_dir / "FrameStatsDetector.pid").read_text()))
                    threading.Thread(target=cluster.remove_node, args=(node,)).start()
            return progress
        return progress_for

    notices: list[str] = []
    ex = RayExecutor(log_dir=tmp_path / "logs", notice=notices.append)
    try:
        rows = run_all(ex, [job, other], progress_for=remove_when_running(doomed))
    finally:
        ex.close()
    row = rows[job.job_id]
    assert row.status == "ok" and row.summary["frames"] == job.frames, row.cause
    assert row.summary["attempts"] == 2 and doomed.node_id[:8] in row.summary["lost_nodes"]
    assert row.cause.startswith("note: node-lost (") and "retried on" in row.cause
    assert row.summary["node"] == spare.node_id
    assert notices and "node-lost" in notices[0] and "retrying on another node" in notices[0]
    assert rows[other.job_id].status == "ok" and rows[other.job_id].summary["attempts"] == 1  # nothing else lost
    wait_for(lambda: not alive(first_pid[0]), 30, "the lost attempt's worker process to end")

    # with retries off, the row itself says node-lost
    first_pid.clear()
    ex = RayExecutor(log_dir=tmp_path / "logs2", node_retries=0, notice=notices.append)
    try:
        rows = run_all(ex, [job], progress_for=remove_when_running(spare))
    finally:
        ex.close()
    row = rows[job.job_id]
    assert row.status == "node-lost" and row.summary["attempts"] == 1
    assert row.cause.startswith(f"node-lost: node {socket.gethostname()}/{spare.node_id[:8]} died after")
    assert "retries are off (--node-retries 0)" in row.cause
    wait_for(lambda: not alive(first_pid[0]), 30, "the lost job's worker process to end")


def test_a_local_file_reaches_a_node_that_lacks_it_or_is_refused(cluster: TestCluster, tmp_path: Path,
                                                                 pets_video: Path) -> None:
    clip = tmp_path / "in" / "clip.avi"
    clip.parent.mkdir()
    shutil.copy(pets_video, clip)
    kept = tmp_path / "kept.avi"
    shutil.copy(pets_video, kept)
    spec = JobSpec(FS, str(clip), frames=8, warmup=1, machine="kind-b", resources={"kind-b": 1})
    local = SubprocessExecutor(log_dir=tmp_path / "local")
    try:
        reference = local.run(JobSpec(FS, str(kept), frames=8, warmup=1))
    finally:
        local.close()

    ex = RayExecutor(log_dir=tmp_path / "logs", notice=lambda t: None)
    try:
        same = run_all(ex, [spec])[spec.job_id]  # the driver reads its file once per run: the node has it ...
        assert same.info["inputs"]["source"]["used"] == "in place (same sha256 on the node)"
        assert same.detections == reference.detections
        ex.ship_inputs([spec])  # (already read: shipping is once per run)
        clip.write_bytes(b"a stale copy at the same path on the node")  # ... the node sees another file there
        stale = run_all(ex, [spec])[spec.job_id]
        clip.unlink()  # ... or none at all
        missing = run_all(ex, [spec])[spec.job_id]
    finally:
        ex.close()
    for result, seen in ((stale, "differs there"), (missing, "is not there")):
        assert result.status == "ok", result.cause
        assert result.detections == reference.detections  # the driver's frames, not the stale ones
        used = result.info["inputs"]["source"]
        assert used["used"] == f"shipped through the object store ({seen} on the node)"
        assert used["path"] == str(clip) and "ray-inputs" in used["node_path"]
        assert result.spec.source == str(clip) and result.summary["video"] == str(clip)
        assert result.info["source"]["path"] == str(clip)  # ground truth is looked for beside the driver's file

    big = JobSpec(FS, str(tmp_path / "big.avi"), frames=8, warmup=1, machine="kind-b", resources={"kind-b": 1})
    shutil.copy(pets_video, tmp_path / "big.avi")
    nowhere = JobSpec(FS, "/nonexistent/harness/clip.avi", frames=8, warmup=1, machine="kind-b",
                      resources={"kind-b": 1})
    ex = RayExecutor(log_dir=tmp_path / "logs2", ship_limit_mb=1, notice=lambda t: None)
    try:
        ex.ship_inputs([big])
        (tmp_path / "big.avi").unlink()
        rows = run_all(ex, [big, nowhere])
    finally:
        ex.close()
    node = f"{socket.gethostname()}/{cluster.node_b.node_id[:8]}"
    refused = rows[big.job_id]
    assert refused.status == "failed" and refused.frames == []
    assert refused.cause.startswith(f"HarnessError: video {tmp_path / 'big.avi'} is not there on node {node}, and it "
                                    "was not shipped: it is 8 MiB, over the shipping limit of 1 MiB")
    assert "fix: copy it to the same path on every node" in refused.cause
    assert rows[nowhere.job_id].status == "failed"
    assert (f"video /nonexistent/harness/clip.avi is not on node {node}, and the driver cannot read it either"
            in rows[nowhere.job_id].cause)


FRAMES_SLOW = 24


def test_ctrl_c_stops_the_clusters_jobs_and_a_killed_driver_resumes(cluster: TestCluster, tmp_path: Path,
                                                                    assets_root) -> None:
    pids = [tmp_path / f"p{i}" for i in range(3)]
    jobs = "".join(f'''
[[job]]
backend = "{FS}"
tag = "j{i}"
options = {{ delay_s = 0.25, pid_dir = "{pids[i]}" }}
''' for i in range(3))
    suite = tmp_path / "slow.toml"
    # 24 frames at 0.25 s: 6 s a job, time enough to see two running and to interrupt them, and the last run
    # (three jobs on two nodes, one after another on one of them) is not spent waiting on sleeps
    suite.write_text(f"[defaults]\nframes = {FRAMES_SLOW}\nwarmup = 1\n{jobs}")
    for p in pids:
        p.mkdir()
    out = tmp_path / "out"
    ray_args = ["--executor", "ray", "--address", cluster.address, "-q", "--no-report"]

    def running_workers() -> list[int]:
        return [int(f.read_text()) for p in pids for f in p.glob("*.pid") if alive(int(f.read_text()))]

    def clear() -> None:
        for p in pids:
            for f in p.glob("*.pid"):
                f.unlink()

    proc = cli("run", str(suite), "--out", str(out), *ray_args)
    wait_for(lambda: len(running_workers()) == 2, 300, "two jobs running, one per node")
    started = running_workers()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"resume with: harness run --resume {out}" in err
    wait_for(lambda: not any(alive(pid) for pid in started), 30, "the cancelled jobs' workers to end")

    clear()
    proc = cli("run", "--resume", str(out), *ray_args)
    wait_for(lambda: len(running_workers()) >= 1, 300, "a job of the resumed run running")
    started = running_workers()
    proc.kill()  # the driver dies without a word: Ray ends its tasks, the jobs' workers follow
    proc.communicate(timeout=60)
    wait_for(lambda: not any(alive(pid) for pid in started), 60, "the dead driver's jobs' workers to end")

    proc = cli("run", "--resume", str(out), *ray_args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 3 and set(runs.status) == {"ok"} and set(runs.frames) == {FRAMES_SLOW}
    assert set(runs.executor) == {"ray"}


def test_the_doctor_answers_from_every_node(cluster: TestCluster) -> None:
    from harness.execution.ray import cluster_doctor

    reports = cluster_doctor(backends=["opencv"], timeout=300)
    alive_nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(reports) == len(alive_nodes) >= 2
    host = socket.gethostname()
    assert {f"{host}/{cluster.head.node_id[:8]}", f"{host}/{cluster.node_b.node_id[:8]}"} <= set(reports)
    for report in reports.values():
        assert report["backends"]["opencv"]["status"] in ("cpu-only", "gpu-ready", "mismatch", "not-installed")
        assert "system" in report

    proc = cli("doctor", "--cluster", "--address", cluster.address, "--backend", "opencv", "--allow-cpu")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Machine (environment node1)" in out or f"Machine (environment {host}/" in out
    assert out.count("opencv") >= len(alive_nodes)


@requires_cv2
def test_a_named_environment_is_built_on_the_node_with_the_drivers_key(cluster: TestCluster, tmp_path: Path,
                                                                        pets_video: Path, monkeypatch) -> None:
    from tests.helpers.envs import skip_without_registry

    skip_without_registry()
    from harness.envs import EnvSpec, EnvStore, current_key

    driver_cache, node_cache = tmp_path / "driver-cache", tmp_path / "node-cache"
    monkeypatch.setenv("HARNESS_CACHE", str(driver_cache))
    spec = EnvSpec.make("ocv4", ["opencv-python==4.14.*"])
    EnvStore().define(spec)  # known to the driver only: the node learns it from the job
    node = cluster.add_node({"env-node": 1}, env_vars={"HARNESS_CACHE": str(node_cache), "HARNESS_OFFLINE": "0"})
    job = JobSpec("opencv", "pets09-s2l1", frames=10, warmup=1, preprocess="shared", env="ocv4",
                  machine="env-node", resources={"env-node": 1})
    ex = RayExecutor(log_dir=tmp_path / "logs", notice=lambda t: None)
    try:
        result = run_all(ex, [job])[job.job_id]
    finally:
        ex.close()
        cluster.remove_node(node)
    assert result.status == "ok", result.cause
    assert result.summary["node"] == node.node_id and result.summary["env"] == "ocv4"
    assert result.summary["framework_version"].startswith("4.14.")
    env = result.info["env_on_node"]
    assert env["key"] == env["driver_key"] == current_key(spec)
    assert "registered" in env
    built = [p.name for p in (node_cache / "envs").iterdir() if p.name.startswith("ocv4-")]
    assert built == [f"ocv4-{current_key(spec)}"]  # the same cache layout and key, on the node
    assert not (driver_cache / "envs" / f"ocv4-{current_key(spec)}").exists()  # nothing built on the driver
