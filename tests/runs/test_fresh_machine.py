"""A new user's machine: no shared asset folder, or a copy of it holding only the files that have an
official download source, and HARNESS_OFFLINE=1. The default suite must still run (what has no hosted copy
is generated), and with no assets at all it must stop once, before any job, naming each missing file once.
The README's results table must match what a run writes; the asset commands' --help must show examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from tests.conftest import has_module
from tests.helpers.default_suite_run import DefaultSuiteRun, harness

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 10
REFERENCE_BACKENDS = ("tf1", "tf2", "opencv", "torch", "onnxruntime")


def readme_results_table() -> list[str]:
    """The first column of the README's 'What a results folder holds' table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What a results folder holds", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"^\| (.+?) \|", section, flags=re.M)
    return [name for cell in cells for name in re.findall(r"`([^`]+)`", cell)]


@pytest.mark.slow
@pytest.mark.skipif(not all(has_module(m) for m in ("tensorflow", "cv2", "torch", "onnxruntime")),
                    reason="the default suite's reference backends need TensorFlow, OpenCV, PyTorch, ONNX Runtime")
def test_default_suite_runs_offline_from_the_hosted_files_only(default_suite_run: DefaultSuiteRun) -> None:
    """The session's default-suite run (tests/helpers/default_suite_run.py) read a hosted-only copy of the
    assets, offline, with an empty cache."""
    import pandas as pd

    copy, linked, cache, out, proc = (default_suite_run.assets, default_suite_run.linked, default_suite_run.cache,
                                      default_suite_run.out, default_suite_run.proc)
    for unhosted in ("models/ssdlite-pedestrian-opencv/ssdlite_person.pbtxt", "videos/pets09-s2l1/seqinfo.ini"):
        assert unhosted not in linked and not (copy / unhosted).exists()
    print(proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    runs = pd.read_csv(out / "runs.csv")
    status = dict(zip(runs["backend"], runs["status"]))
    assert {b: status.get(b) for b in REFERENCE_BACKENDS} == {b: "ok" for b in REFERENCE_BACKENDS}
    for made in ("models/ssdlite-pedestrian-opencv/ssdlite_person.pbtxt", "videos/pets09-s2l1/seqinfo.ini"):
        assert (cache / made).is_file() and (cache / (made + ".generated.json")).is_file()
        assert proc.stderr.count(f"({Path(made).name}) from") == 1  # made once, before the jobs, not per job
    # the opencv job read the generated text graph and found what tf1 found
    ap = dict(zip(runs["backend"], runs["ap"]))
    assert ap["opencv"] == pytest.approx(ap["tf1"], abs=1e-3)
    # README's table of a results folder names every top-level entry this run wrote
    documented = {name.split("/")[0] for name in readme_results_table()}
    assert {p.name for p in out.iterdir()} <= documented, sorted({p.name for p in out.iterdir()} - documented)


def test_no_assets_offline_stops_before_any_job_with_one_message(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    proc = harness(["run", "--frames", str(FRAMES), "--out", str(out)],
                   {"HARNESS_CACHE": str(cache), "HARNESS_OFFLINE": "1"}, timeout=600)
    err = proc.stderr
    print(err)
    assert proc.returncode == 2
    assert "Traceback" not in err and err.count("error: ") == 1
    assert "so no job was started" in err and "unset HARNESS_OFFLINE" in err
    listed = re.findall(r"^  - (\S+) \(", err, flags=re.M)
    assert len(listed) == len(set(listed))  # each missing file named once
    assert {"pets09-s2l1:video", "pets09-s2l1:ground_truth"} <= set(listed)
    for label in listed:
        assert err.count(label + " (") == 1
    assert not out.exists()  # no results folder, no report
    assert not (cache / "models").exists()  # nothing made for a run that cannot start


@pytest.mark.parametrize("command", ["convert", "assets"])
def test_help_shows_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and f"  harness {command} " in text
