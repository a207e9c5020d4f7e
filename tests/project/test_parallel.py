"""The suite's parallel run (tests/helpers/parallel.py), on a small suite of its own under `-n 2`: an `alone`
test overlaps no other test, modules sharing an expensive session fixture run on one worker (it is made once),
and the slow tier's groups start first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import has_module

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
import json, os, time
from pathlib import Path
import pytest
from tests.helpers.parallel import assign, is_worker

pytest_plugins = ("tests.helpers.parallel",)
LOG = Path(os.environ["SPANS"])


def pytest_configure(config):
    config.addinivalue_line("markers", "alone: runs alone")
    config.addinivalue_line("markers", "slow: slow tier")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.fspath.basename == "test_slow.py":
            item.add_marker(pytest.mark.slow)
    if is_worker(config):
        assign(config, items)


@pytest.fixture(scope="session")
def suite_results():
    with open(LOG, "a") as f:
        f.write(json.dumps({"made": "suite_results", "worker": os.environ["PYTEST_XDIST_WORKER"]}) + "\\n")
    return 1


@pytest.fixture(autouse=True)
def span(request):
    start = time.monotonic()
    yield
    with open(LOG, "a") as f:
        f.write(json.dumps({"test": request.node.name, "start": start, "end": time.monotonic(),
                            "worker": os.environ["PYTEST_XDIST_WORKER"]}) + "\\n")
'''

BUSY = "import time\n\n" + "".join(f"def test_busy_{i}():\n    time.sleep(0.3)\n\n\n" for i in range(8))
ALONE = ("import time\nimport pytest\n\n\n@pytest.mark.alone\ndef test_alone():\n    time.sleep(0.6)\n\n\n"
         "@pytest.mark.alone\ndef test_alone_too():\n    time.sleep(0.6)\n")
SHARED = ("import time\n\n\n" + "".join(f"def test_uses_it_{{n}}{i}(suite_results):\n    time.sleep(0.3)\n"
                                         f"    assert suite_results == 1\n\n\n" for i in range(3)))
SLOW = "import time\n\n\ndef test_slow():\n    time.sleep(0.2)\n"


@pytest.mark.skipif(not has_module("xdist"), reason="pytest-xdist is not installed (pip install -e '.[test]')")
def test_alone_tests_overlap_nothing_and_a_shared_fixture_is_made_once(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    # collected in this order: modules sharing the fixture lie between others, so that by module alone the
    # two workers would each take some of them
    for name, text in (("test_1_shared", SHARED.format(n="a")), ("test_2_busy", BUSY),
                       ("test_3_shared", SHARED.format(n="b")), ("test_4_busy", BUSY.replace("busy", "busier")),
                       ("test_5_shared", SHARED.format(n="c")), ("test_6_alone", ALONE), ("test_slow", SLOW)):
        (suite / f"{name}.py").write_text(text)
    spans = tmp_path / "spans.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPANS": str(spans)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", str(suite)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = [json.loads(line) for line in spans.read_text().splitlines()]
    ran = [line for line in lines if "test" in line]
    assert len(ran) == 3 * 3 + 8 + 8 + 2 + 1 and {r["worker"] for r in ran} == {"gw0", "gw1"}
    for alone in (r for r in ran if r["test"].startswith("test_alone")):
        overlapping = [r["test"] for r in ran
                       if r is not alone and r["start"] < alone["end"] and alone["start"] < r["end"]]
        assert not overlapping, f"{alone['test']} overlapped {overlapping}"
    assert [line["made"] for line in lines if "made" in line] == ["suite_results"]  # one worker made it, once
    first = {}
    for r in sorted(ran, key=lambda r: r["start"]):
        first.setdefault(r["worker"], r["test"])
    assert "test_slow" in first.values(), f"the slow tier's group starts first on a worker: {first}"
