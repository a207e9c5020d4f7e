"""Which interpreter runs a job: this one, a built environment's, or one named by path; checked once a run.

:func:`ensure` makes a named environment usable: built for the current key (built now if it is not, unless
``HARNESS_OFFLINE=1``), its interpreter answering the worker hello (rebuilt once if a complete-looking
environment fails it: damaged). :class:`InterpreterResolver` does that at most once per environment for a
whole run, and holds each environment's use lock until the run ends, so no environment disappears under
a running job.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.data.assets import OFFLINE_ENV, offline
from harness.envs.builder import Report, build, print_report, remove_superseded
from harness.envs.installers import env_python, find_installer
from harness.envs.interpreter import Interpreter, check_python, hello
from harness.envs.locks import FileLock
from harness.envs.source import harness_source
from harness.core.env_names import DEFAULT_ENV
from harness.envs.spec import EnvSpec
from harness.envs.store import EnvStore
from harness.core.errors import EnvError, HarnessError


@dataclass(frozen=True)
class Ensured:
    """A usable environment and what it took to get it."""

    interpreter: Interpreter
    spec: EnvSpec
    key: str
    built: bool  # True when this call built it


def current_key(spec: EnvSpec) -> str:
    source = harness_source()
    return spec.key(source.version, source.digest)


def _rebuild_fix(name: str) -> str:
    return f"rebuild it: harness env create {name} --force (the next run also rebuilds it by itself)"


def _name_lock(store: EnvStore, name: str, report: Report) -> FileLock:
    """The name's lock, taken (blocking, saying why it waits): one create, rebuild or removal at a time."""
    lock = FileLock(store.name_lock(name))
    lock.acquire(on_wait=lambda: report(f"waiting for another process building environment {name!r} (or "
                                        "redefining or removing it) ..."))
    return lock


def ensure(name: str, store: EnvStore | None = None, report: Report = print_report,
           force: bool = False, hold: list[FileLock] | None = None) -> Ensured:
    """The interpreter of environment ``name``, built if needed (see the module docstring).

    ``hold``: take the environment's use lock (shared) first and append it there, so that nothing removes
    the environment until the caller releases it. Runs under the name's lock, so the spec read here is the
    one built and held: a concurrent ``harness env create`` waits for it, and it for that.
    """
    store = store or EnvStore()
    store.check_usable()
    lock = _name_lock(store, name, report)
    try:
        return _ensure_spec(store, store.spec(name), report, force, hold)
    finally:
        lock.release()


def _ensure_spec(store: EnvStore, spec: EnvSpec, report: Report, force: bool,
                 hold: list[FileLock] | None) -> Ensured:
    """:func:`ensure` for ``spec`` (registered or about to be), with the name's lock held by the caller."""
    name = spec.name
    source = harness_source()
    key = spec.key(source.version, source.digest)
    folder = store.folder(name, key)
    use: FileLock | None = None
    if hold is not None:
        use = FileLock(store.use_lock(folder), shared=True)
        use.acquire()
    try:
        if force and store.record(folder) is not None:
            if not store.remove_folder(folder, wait=False):
                raise EnvError(f"environment {name!r} is in use by a running harness, so it cannot be rebuilt now",
                               "wait for that run to end, then run the command again")
        for attempt in (1, 2):
            built = False
            if store.record(folder) is None:
                if offline():
                    state = store.state(name, key) if name in store.names() else None
                    raise EnvError(
                        f"environment {name!r} is not built for this spec and harness "
                        f"({state.state if state else 'not built'}), and "
                        f"{OFFLINE_ENV}=1 uses only environments that are already built",
                        f"unset {OFFLINE_ENV} so it can be built from the package registry (harness env create "
                        f"{name} ...), or build it where the registry is reachable with the same harness checkout",
                    )
                _, built = build(store, spec, key, source, find_installer(), report)
            try:
                interp = hello(env_python(folder), name, _rebuild_fix(name))
            except HarnessError as exc:
                if attempt == 2 or offline():
                    raise EnvError(f"environment {name!r} is damaged: {exc.problem}", _rebuild_fix(name)) from None
                report(f"environment {name!r} is damaged ({exc.problem}); rebuilding it")
                store.mark_damaged(folder)
                continue
            if built and store.is_defined_as(spec):
                remove_superseded(store, name, folder, report)
            if use is not None:
                assert hold is not None
                hold.append(use)
                use = None
            return Ensured(interp, spec, key, built)
        raise AssertionError("unreachable")
    finally:
        if use is not None:  # not handed to the caller: an error
            use.release()


class ConcurrentChange(EnvError):
    """Another process defined the same environment name while this one waited for it."""


def create(spec: EnvSpec, store: EnvStore | None = None, report: Report = print_report, force: bool = False,
           hold: list[FileLock] | None = None) -> tuple[Ensured, EnvSpec | None]:
    """Register ``spec`` under its name and build (or reuse) it: what ``harness env create`` and a suite's
    ``[envs.NAME]`` table do. Returns what :func:`ensure` gave and the spec the name meant before (None when
    it was new).

    A transaction under the name's lock: the build is made beside the registered one, and the registry is
    switched to ``spec`` (one atomic rename) only once it built and answered its check; a spec that does
    not build leaves the old definition and its build untouched. Two processes defining the same name at
    once: the first to take the lock wins, the other finds the name changed while it waited and refuses
    (:class:`ConcurrentChange`) rather than silently replace what the first just made.
    """
    store = store or EnvStore()
    store.check_usable()
    seen = store.defined(spec.name)
    lock = _name_lock(store, spec.name, report)
    try:
        previous = store.defined(spec.name)
        if previous != seen and previous != spec:
            assert previous is not None
            raise ConcurrentChange(
                f"environment {spec.name!r} was defined by another process while this one waited for it (now: "
                f"{' '.join(previous.requirements) or '-'}, Python {previous.python}); this command changed nothing",
                f"keep that definition, or replace it by running the command again: harness env create {spec.name} "
                f"{' '.join(repr(r) for r in spec.requirements)}",
            )
        done = _ensure_spec(store, spec, report, force, hold)
        store.define(spec)
        if done.built or previous != spec:
            remove_superseded(store, spec.name, store.folder(spec.name, done.key), report)
    finally:
        lock.release()
    return done, previous


class InterpreterResolver:
    """Resolves each job's interpreter once per environment for one run; :meth:`close` ends the run."""

    def __init__(self, store: EnvStore | None = None, report: Report = print_report) -> None:
        self._store = store
        self._report = report
        self._known: dict[tuple[str, str | None], Interpreter] = {}
        self.ensured: dict[str, Ensured] = {}  # each built environment this run uses: its spec and key
        self._errors: dict[tuple[str, str | None], HarnessError] = {}
        self._locks: list[FileLock] = []

    @property
    def store(self) -> EnvStore:
        if self._store is None:
            self._store = EnvStore()
        return self._store

    def resolve(self, env: str = DEFAULT_ENV, python: str | None = None) -> Interpreter | None:
        """None for the running interpreter; else a checked one, or the same HarnessError every time."""
        if not python and env == DEFAULT_ENV:
            return None
        ident = (env, python)
        if ident in self._errors:
            raise self._errors[ident]
        if ident not in self._known:
            try:
                self._known[ident] = check_python(python) if python else self._ensure(env)
            except HarnessError as exc:
                self._errors[ident] = exc
                raise
        return self._known[ident]

    def _ensure(self, env: str) -> Interpreter:
        done = ensure(env, self.store, self._report, hold=self._locks)
        self.ensured[env] = done
        return done.interpreter

    def adopt(self, done: Ensured) -> None:
        """Take an environment ensured elsewhere (a suite's ``[envs]`` table, built by :func:`create` with
        this resolver's locks) as this run's: its jobs then need no second check."""
        self.ensured[done.spec.name] = done
        self._known[(done.spec.name, None)] = done.interpreter

    @property
    def locks(self) -> list[FileLock]:
        """The use locks this resolver holds (until :meth:`close`); :func:`create` adds to them."""
        return self._locks

    def close(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()
