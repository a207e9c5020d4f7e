"""What every backend shares through the Detector base: declared options (an unknown one is an error, not
ignored), thread counts as the framework reports them, and one conversion cache for `run` and `convert`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.registry import available_backends, backend_class
from tests.conftest import has_module

BUILTIN = ("tf1", "tf2", "opencv", "torch", "onnxruntime", "tflite")
# precision: the openvino backend, by its registered name once the project's entry points list it
# (pyproject.toml), else by module:Class (an editable install made before it keeps the old entry points)
OPENVINO = "backends.openvino_ov:OpenVINODetector"
V2 = "backends.v2_client:V2Detector"  # the client of a served model (docs/serving.md)


def _documented() -> dict[str, str]:
    """Every backend the options page documents -> how to name it to backend_class here."""
    from harness.core.registry import available_backends

    return {**{n: n for n in BUILTIN}, "openvino": "openvino" if "openvino" in available_backends() else OPENVINO,
            "v2": "v2" if "v2" in available_backends() else V2}
ROOT = Path(__file__).resolve().parents[2]


# options -------------------------------------------------------------------------------------------------

def test_every_builtin_backend_declares_its_options_with_help() -> None:
    assert set(BUILTIN) <= set(available_backends())
    for name in BUILTIN:
        options = backend_class(name).known_options
        assert options, name
        assert all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in options.items()), name


@pytest.mark.parametrize("backend", BUILTIN)
def test_an_unknown_option_is_one_clear_error_listing_the_known_ones(backend: str) -> None:
    cls = backend_class(backend)
    cls.validate_options({})  # no options: nothing to refuse
    known = sorted(cls.known_options)
    cls.validate_options({known[0]: "x"})
    with pytest.raises(HarnessError) as err:
        cls.validate_options({known[0]: "x", "bogus": 1})
    assert f"backend {backend!r} has no option 'bogus'" in err.value.problem
    assert all(k in err.value.fix for k in known)


def test_a_near_miss_names_the_option_meant() -> None:
    with pytest.raises(HarnessError) as err:
        backend_class("tf1").validate_options({"boxs": "detection_boxes:0"})
    assert "did you mean 'boxes'" in err.value.problem


def test_the_options_page_lists_every_declared_option() -> None:
    """docs/backend-options.md is the users' list: one table row per declared option, with its help."""
    text = (ROOT / "docs" / "backend-options.md").read_text(encoding="utf-8")
    sections = {part.split("`", 1)[0]: part for part in text.split("\n## `")[1:]}
    documented = _documented()
    assert set(sections) == set(documented)
    for name, target in documented.items():
        rows = [ln for ln in sections[name].splitlines() if ln.startswith("| `")]
        want = [f"| `{k}` | {v.replace('|', chr(92) + '|')} |" for k, v in backend_class(target).known_options.items()]
        assert rows == want, f"docs/backend-options.md, section {name}: regenerate it from known_options"


def test_validating_options_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from harness.core.registry import backend_class\n"
        f"for name in {tuple(_documented().values())!r}:\n"
        "    try:\n"
        "        backend_class(name).validate_options({'bogus': 1})\n"
        "    except Exception as exc:\n"
        "        assert 'bogus' in str(exc)\n"
        "heavy = [m for m in ('tensorflow', 'torch', 'cv2', 'onnxruntime', 'tf2onnx', 'openvino', 'nncf') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"validate_options imported {out.stdout.strip()}"


def test_the_runner_refuses_an_unknown_option_before_loading(assets_root: Path) -> None:
    """`--opt bogus=1` used to be silently ignored: now the job fails with the option named and the fix."""
    from harness.core.jobs import JobSpec
    from harness.execution.runner import run_job

    result = run_job(JobSpec(backend="tflite", source="pets09-s2l1", model="tflite-coco-ssd-mobilenet-v1-quant",
                             frames=2, warmup=1, options={"bogus": 1}))
    assert result.status == "failed"
    assert "has no option 'bogus'" in result.cause and "labels, mean, std" in result.cause
    assert result.summary["load_s"] == 0.0  # refused before the model was loaded


def test_a_command_line_option_goes_to_the_backends_that_read_it() -> None:
    """`--opt` applies to every job of the run: each job gets the options its backend declares, so that a
    setting meant for one backend does not fail the others; one that no backend reads stops the run."""
    from harness.cli import build_parser
    from harness.commands.run import expand_jobs

    def jobs(*argv: str) -> list:
        return expand_jobs(build_parser().parse_args(["run", "-b", "tf1", "-b", "opencv", *argv]))

    by_backend = {j.backend: j.options for j in jobs("--opt", "target=cpu", "--opt", "inter_op_threads=2")}
    assert by_backend == {"tf1": {"inter_op_threads": 2}, "opencv": {"target": "cpu"}}
    with pytest.raises(HarnessError) as err:
        jobs("--opt", "target=cpu", "--opt", "bogus=1")
    assert "no backend of this run reads --opt bogus" in err.value.problem


def test_the_cli_stops_on_an_option_no_backend_reads(assets_root: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "run", "-b", "tf1", "--opt", "bogus=1", "--frames", "2"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=300)
    assert out.returncode == 2
    assert "error: no backend of this run reads --opt bogus (tf1)" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr


# threads -------------------------------------------------------------------------------------------------

THREADS_SCRIPT = """
import json, sys
from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
for group in sys.argv[1:]:  # backend=model=threads,threads
    backend, model, configs = group.split("=")
    for threads in configs.split(","):  # the default first: torch's and OpenCV's settings are process-wide
        det = create_detector(backend, DetectorConfig(model=model or None, threads=int(threads) or None))
        det.load()
        d = det.describe()
        det.close()
        print(json.dumps({"backend": backend, "threads": int(threads), "in_effect": d["threads"],
                          "configured": d["threads_configured"]}))
"""
NEEDS = {"tf1": ["tensorflow"], "tf2": ["tensorflow"], "opencv": ["cv2"], "torch": ["torch"],
         "onnxruntime": ["onnxruntime", "tf2onnx"], "tflite": ["tensorflow"]}
MODELS = {"tflite": "tflite-coco-ssd-mobilenet-v1-quant"}
#: backends whose loads share one process: TensorFlow is imported once for both, and neither reads back a
#: process-wide setting (a TF1 Session takes its pools in its ConfigProto, TFLite's interpreter its own count)
SHARE_A_PROCESS = ("tf1", "tflite")


def _threads(*groups: tuple[str, tuple[int, ...]]) -> list[dict]:
    """describe()'s thread counts after loads of each backend with each ``--threads`` value (0 = none given),
    in order, in one fresh process."""
    args = [f"{backend}={MODELS.get(backend, '')}={','.join(map(str, configs))}" for backend, configs in groups]
    out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, *args],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _need(*modules: str) -> None:
    missing = [m for m in modules if not has_module(m)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def thread_reports():
    """The reports of one backend, made on first use; the backends of SHARE_A_PROCESS are loaded in one
    process and the reports of the other kept for its own test."""
    made: dict[str, list[dict]] = {}

    def get(backend: str) -> list[dict]:
        if backend not in made:
            if backend == "tf2":  # TensorFlow's pools are set once per process: each tf2 load gets its own
                results = _threads(("tf2", (0,))) + _threads(("tf2", (1,)))
            elif backend in SHARE_A_PROCESS and all(has_module(m) for b in SHARE_A_PROCESS for m in NEEDS[b]):
                results = _threads(*((b, (0, 1)) for b in SHARE_A_PROCESS))
            else:
                results = _threads((backend, (0, 1)))
            for r in results:
                made.setdefault(r["backend"], []).append(r)
        return made[backend]

    return get


@pytest.mark.parametrize("backend", BUILTIN)
def test_threads_in_effect_are_what_the_framework_reports(backend: str, assets_root: Path, thread_reports) -> None:
    """With no ``--threads`` and with ``--threads 1``: ``threads`` (the runner's ``threads_in_effect``) holds only
    counts read back from the framework, never the request echoed (it used to say intra_op=0 for tf1, tf2 and
    onnxruntime); what a framework can't report is the request, under ``threads_configured``."""
    _need(*NEEDS[backend])
    results = thread_reports(backend)
    assert [r["threads"] for r in results] == [0, 1]
    for got in results:
        threads, in_effect, configured = got["threads"], got["in_effect"], got["configured"]
        assert all(isinstance(v, int) and v > 0 for v in in_effect.values()), got  # a report is a real count
        if backend == "tf1":  # a TF1 Session can't report its pools: the request, in its own column
            assert in_effect == {} and configured == {"intra_op": threads, "inter_op": 0}
        elif backend == "tf2":  # tf.config.threading, read back; 0 (TF's unresolved default) goes to configured
            assert in_effect == ({"intra_op": 1} if threads else {})
            assert configured == ({"inter_op": 0} if threads else {"intra_op": 0, "inter_op": 0})
        elif backend == "onnxruntime":  # the intra-op pool ONNX Runtime's profiler saw (never the 0 it was given)
            assert configured == {} and set(in_effect) == {"intra_op"}
            assert in_effect["intra_op"] == threads or not threads
        elif backend == "opencv":
            assert configured == {} and set(in_effect) == {"threads"}
            assert in_effect["threads"] == threads or not threads
        elif backend == "torch":
            assert configured == {} and set(in_effect) == {"intra_op", "inter_op"}
            assert in_effect["intra_op"] == threads or not threads
        else:  # tflite: the interpreter has no getter
            assert in_effect == {} and configured == {"num_threads": threads or -1}


# one conversion cache ------------------------------------------------------------------------------------

def test_convert_then_run_converts_nothing(assets_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    """`harness convert` and `harness run` find the same artifact: after convert, a run with a fresh cache
    records zero conversions (it once converted onnxruntime's ONNX file again, under another key)."""
    _need("tensorflow", "torch", "onnxruntime", "tf2onnx")
    import argparse

    from harness.commands import convert
    from harness.core.jobs import JobSpec
    from harness.execution.runner import run_job

    from backends import torch_ssdlite  # noqa: F401  (torchvision before TensorFlow in this process)

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", "--backend", "tf2", "--backend", "torch", "--backend", "onnxruntime"])
    assert args.func(args) == 0
    made = {p.parent.parent.name for p in (tmp_path / "cache" / "artifacts").glob("*/*/artifact.json")}
    assert made == {"tf2-reference", "torch-reference", "onnxruntime-reference"}, capsys.readouterr().out

    for backend in ("tf2", "torch", "onnxruntime"):
        result = run_job(JobSpec(backend=backend, source="pets09-s2l1", frames=2, warmup=1, preprocess="shared"))
        assert result.status == "ok", result.cause
        conversions = result.info["model"]["conversions"]
        assert len(conversions) == 1 and not conversions[0]["built"], conversions
        assert result.summary["conversion_s"] == 0.0
        assert Path(conversions[0]["path"]).is_relative_to(tmp_path / "cache" / "artifacts" / f"{backend}-reference")
    assert len(list((tmp_path / "cache" / "artifacts").glob("*/*/artifact.json"))) == 3  # nothing new built


def test_a_run_on_an_empty_cache_records_its_conversion(assets_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test above: the record does see a conversion when one happens (and the row says
    how long it took, the part of load_s that a cached run doesn't pay)."""
    _need("tensorflow")
    from harness.core.jobs import JobSpec
    from harness.execution.runner import run_job

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    result = run_job(JobSpec(backend="tf2", source="pets09-s2l1", frames=2, warmup=1, preprocess="shared"))
    assert result.status == "ok", result.cause
    (conversion,) = result.info["model"]["conversions"]
    assert conversion["built"] and conversion["converter"] == "tf2-reference"
    assert 0 < result.summary["conversion_s"] <= result.summary["load_s"]
    threads = result.info["model"]["threads_configured"]  # what TF reports as 0 (its default) lands here
    assert result.summary["threads_configured"] == " ".join(f"{k}={v}" for k, v in threads.items())
