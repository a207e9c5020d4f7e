"""How the suite runs on several pytest-xdist workers (`pytest --whole-suite -n 2`, what CI runs).

Three rules, each for something a plain `-n 2` gets wrong:

- **Groups.** A module-scoped fixture is made once per worker that runs a test of its module, and a session
  fixture once per worker that needs it: split across two workers, a results folder or an environment is
  built twice. So the tests go out in groups, whole: a module is a group, and modules that request the same
  expensive session fixture (`SHARED_SESSION_FIXTURES`) join one, found from the fixtures the tests request.
  (`--dist loadgroup` would do this from `xdist_group` marks, but pytest-xdist 3.8 writes the group into a
  node-id field pytest 9.2 no longer reads, pytest-xdist#1386, and silently groups nothing; so the workers
  write the groups to a file their controller's scheduler reads, through xdist's own hooks.)
- **Order.** Groups go out in the order collected, the slow tier's first: the last groups to start are the
  fast tier's small ones, so the workers finish together instead of one waiting out an environment build.
- **Alone.** A test marked `alone` judges timing (a quiet machine, LoadGen's VALID verdict): it must not
  share the cores with a test on another worker. Every test holds a shared lock while it runs and an `alone`
  test an exclusive one, through a turnstile so that an `alone` test waiting for the lock is not overtaken
  by the other workers' next tests.

Without `-n`, none of this is active: one test runs at a time.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
FOLDER = "harness_parallel_folder"  # the workerinput key: one folder the controller and its workers share
GROUPS = "groups.json"
_FOLDER_KEY = pytest.StashKey[str]()  # the controller's copy of that folder

#: session fixtures that cost seconds or more to make (a results folder, an environment, a reference run):
#: modules requesting one of them run on one worker, so it is made once
SHARED_SESSION_FIXTURES = frozenset({
    "tf1_on_shared_frames", "small_results", "suite_results", "env_cache", "store", "ocv4", "tf1_results",
    "served_http", "in_process", "default_suite_run",
})

#: tests that judge timing, as "folder/test_file.py::test" (or marked @pytest.mark.alone in their file): each
#: runs with the other workers idle
ALONE_TESTS = frozenset({
    # waits for a quiet spell and skips, saying so, when there is none: beside another test there never is
    "unit/test_validity.py::test_the_same_job_on_a_quiet_machine_is_valid",
    # LoadGen's VALID verdict on a server run held at a rate the machine sustains, p99 bound included
    "runs/test_loadgen.py::test_server_verdict_is_loadgens",
    # polls a server's health through its stop; at load 20 one poll was refused before the server was up
    "runs/test_serving.py::test_a_stop_answers_the_requests_it_had_refuses_new_ones_and_exits_cleanly",
})


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _module(item: pytest.Item) -> str:
    """The test file as its node id names it (the scheduler sees node ids only)."""
    return item.nodeid.split("::", 1)[0]


def _under_tests(item: pytest.Item) -> str:
    path = Path(str(item.fspath)).resolve()
    return path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else path.name


def groups(items: list[pytest.Item]) -> dict[str, str]:
    """Each test module's group: modules requesting a shared session fixture are joined (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for item in items:
        module = find(_module(item))
        for name in SHARED_SESSION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            other = find("fixture:" + name)
            if other != module:
                parent[other] = module
    return {m: find(m) for m in {_module(item) for item in items}}


def assign(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: mark the `alone` tests, put the slow tier's groups first (a stable sort: the order inside
    a group is kept) and hand the groups to the controller's scheduler."""
    for item in items:
        if f"{_under_tests(item)}::{getattr(item, 'originalname', None) or item.name}" in ALONE_TESTS:
            item.add_marker(pytest.mark.alone)
    group = groups(items)
    slow = {group[_module(item)] for item in items if item.get_closest_marker("slow") is not None}
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(group[_module(item)], len(first_seen))
    items.sort(key=lambda item: (group[_module(item)] not in slow, first_seen[group[_module(item)]]))
    folder = _folder(config)
    if folder is not None:
        written = folder / f"{GROUPS}.{config.workerinput['workerid']}"
        written.write_text(json.dumps(group))
        written.replace(folder / GROUPS)  # whole or absent: every worker writes the same groups


def _folder(config: pytest.Config) -> Path | None:
    folder = getattr(config, "workerinput", {}).get(FOLDER)
    return Path(folder) if folder else None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller side: one folder per run for the groups and the lock, handed to every worker."""
    config = node.config
    if _FOLDER_KEY not in config.stash:
        config.stash[_FOLDER_KEY] = tempfile.mkdtemp(prefix="harness-tests-")
    node.workerinput[FOLDER] = config.stash[_FOLDER_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_FOLDER_KEY, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Load scheduling by whole groups, in the order the workers collected them."""
    if config.getvalue("dist") not in ("load", "loadscope", "loadfile", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def schedule(self) -> None:
            folder = config.stash.get(_FOLDER_KEY, None)
            path = Path(folder) / GROUPS if folder else None
            self._groups = json.loads(path.read_text()) if path and path.is_file() else {}
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return getattr(self, "_groups", {}).get(module, module)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


@contextmanager
def _held(folder: Path, exclusive: bool) -> Iterator[None]:
    with open(folder / "alone.turnstile", "a+") as turnstile, open(folder / "alone.lock", "a+") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    folder = _folder(item.config)
    if folder is None:
        return (yield)
    with _held(folder, exclusive=item.get_closest_marker("alone") is not None):
        return (yield)
