"""A fallback is data (``device_fallback``, ``precision_fallback``, ``below_floor``), never a sentence parsed
back: no module reads one out of a cause, and rewording a cause changes no banner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.core.jobs import JobResult, JobSpec

ROOT = Path(__file__).resolve().parents[2]
#: string methods and re functions that would read a fact out of a message
READERS = {"contains", "match", "fullmatch", "search", "findall", "finditer", "startswith", "endswith", "find",
           "index", "rfind", "split", "partition", "count"}


def _mentions_cause(node: ast.AST) -> bool:
    """The expression reads a cause: a name or attribute called so, ``row["cause"]`` or ``row.get("cause")``
    (a literal that merely names the column, as in ``column in ("job_id", "cause")``, reads nothing)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and "cause" in n.id.lower():
            return True
        if isinstance(n, ast.Attribute) and "cause" in n.attr.lower():
            return True
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and n.slice.value == "cause":
            return True
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args
                and isinstance(n.args[0], ast.Constant) and n.args[0].value == "cause"):
            return True
    return False


def _parses_a_cause(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
        return any(_mentions_cause(c) for c in node.comparators)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in READERS:
        receiver = node.func.value
        if isinstance(receiver, ast.Attribute) and receiver.attr == "str":  # pandas: series.str.contains
            receiver = receiver.value
        is_re = isinstance(receiver, ast.Name) and receiver.id == "re"
        return any(_mentions_cause(a) for a in node.args) if is_re else _mentions_cause(receiver)
    return False


def test_no_module_parses_a_fallback_out_of_a_message() -> None:
    found = []
    for path in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("backends/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if _parses_a_cause(node):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, ("these read a fact out of a cause's wording; write it as a runs.csv column "
                       "(harness/results/row.py) and read the column:\n" + "\n".join(found))


def _summary(spec: JobSpec, cause: str, device: tuple[str, bool], precision: tuple[str, bool]) -> dict:
    return {"job_id": spec.job_id, "backend": spec.backend, "model": "m", "status": "fallback", "cause": cause,
            "frames": 5, "p50_ms": 1.0, "device_requested": spec.device, "device_actual": device[0],
            "device_fallback": device[1], "precision_requested": spec.precision or "", "precision": precision[0],
            "precision_fallback": precision[1]}


def _page(folder: Path, wording: dict[str, str]) -> str:
    from harness.report.html import render_html
    from harness.report.load import load_results
    from harness.results import ResultsWriter

    gpu = JobSpec("onnxruntime", "pets09-s2l1", device="gpu")
    bf16 = JobSpec("torch", "pets09-s2l1", precision="bf16")
    both = JobSpec("torch", "pets09-s2l1", device="gpu", precision="fp16")
    rows = [(gpu, ("cpu", True), ("fp32", False)), (bf16, ("cpu", False), ("fp32", True)),
            (both, ("cpu", True), ("fp32", True))]
    with ResultsWriter(folder) as writer:
        writer.plan([spec for spec, _, _ in rows])
        for spec, device, precision in rows:
            cause = wording[spec.job_id]
            writer.add(JobResult(spec, "fallback", _summary(spec, cause, device, precision), [], [], {}, cause))
    page = render_html(load_results(folder), []).replace(str(folder), "FOLDER")
    for cause in wording.values():  # the causes are shown as they are, so take them out to compare the rest
        page = page.replace(cause.replace("'", "&#x27;"), "")
    return page


def test_rewording_a_cause_changes_no_banner(tmp_path: Path) -> None:
    ids = [JobSpec("onnxruntime", "pets09-s2l1", device="gpu").job_id,
           JobSpec("torch", "pets09-s2l1", precision="bf16").job_id,
           JobSpec("torch", "pets09-s2l1", device="gpu", precision="fp16").job_id]
    usual = {ids[0]: "requested gpu, ran on cpu: providers ['CPUExecutionProvider']",
             ids[1]: "precision fallback: requested bf16, ran fp32: autocast off",
             ids[2]: "precision fallback: requested fp16, ran fp32: x; requested gpu, ran on cpu: y"}
    reworded = {ids[0]: "the GPU was not used", ids[1]: "autocast stayed off", ids[2]: "neither as asked"}
    a, b = _page(tmp_path / "a", usual), _page(tmp_path / "b", reworded)
    assert a == b
    precision_banner = a.split("PRECISION FALLBACK: ", 1)[1].split("</div>", 1)[0]
    device_banner = a.split("<b>FALLBACK: ", 1)[1].split("</div>", 1)[0]
    assert precision_banner.startswith("2 job(s)") and ids[1] in precision_banner and ids[2] in precision_banner
    assert device_banner.startswith("2 job(s) asked for a GPU") and ids[0] in device_banner and ids[2] in device_banner
    assert ids[1] not in device_banner and ids[0] not in precision_banner


@pytest.mark.parametrize("asked, ran, expected", [("gpu", "cpu", True), ("cpu", "cpu", False), ("gpu", "cuda:0", False)])
def test_a_folder_without_the_fallback_columns_reads_them_from_asked_and_measured(
        tmp_path: Path, asked: str, ran: str, expected: bool) -> None:
    """Folders written before the columns existed: the same facts from the device and precision columns."""
    from harness.results import ResultsWriter, load_run

    spec = JobSpec("onnxruntime", "pets09-s2l1", device=asked, precision="int8")
    summary = _summary(spec, "whatever it said", (ran, expected), ("fp32", True))
    del summary["device_fallback"], summary["precision_fallback"]
    with ResultsWriter(tmp_path) as writer:
        writer.plan([spec])
        writer.add(JobResult(spec, "fallback", summary, [], [], {}, "whatever it said"))
    row = load_run(tmp_path).job(spec.job_id).row
    assert row["device_fallback"] is expected and row["precision_fallback"] is True
