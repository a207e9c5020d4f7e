"""Judging: facts in, a verdict (status, reason, fix) out, and the exit status of a whole report.

:func:`judge` is pure (it reads only the facts and rules it is given), so tests drive every situation with
fabricated facts. What a framework says about itself wins; the build table in ``cuda_requirements.toml`` is
used only when the framework could not be asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.core.device import Device
from harness.doctor.facts import FrameworkFacts, SystemFacts
from harness.doctor.libraries import CudaLibrary
from harness.doctor.probes import PROBE_TIMEOUT_S
from harness.doctor.rules import (
    build_requirement,
    display_list,
    framework_rules,
    major,
    minimum_driver,
    requirements,
    series,
    sonames_for,
    vtuple,
)

#: ``unknown``: the doctor could not find out (the probe did not answer within --timeout)
STATUSES = ("gpu-ready", "cpu-only", "mismatch", "not-installed", "unknown")

# exit statuses of `harness doctor` (documented in docs/doctor.md)
EXIT_READY = 0
EXIT_MISMATCH = 1
EXIT_NOT_READY = 3


@dataclass
class Verdict:
    backend: str
    framework: str
    status: str
    reason: str
    fix: str
    problems: list[str] = field(default_factory=list)
    facts: FrameworkFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Problem:
    text: str
    fix: str


# library and driver problems ----------------------------------------------------------------------------

def _missing_libraries(names: Mapping[str, str], cuda_major: int | None, cudnn_major: int | None,
                       libs: Sequence[CudaLibrary]) -> list[str]:
    """The sonames a build needs that no loadable library here serves."""
    def has(kind: str, pred: Callable[[CudaLibrary], bool]) -> bool:
        return any(lib.kind == kind and pred(lib) for lib in libs)

    def serves(kind: str) -> Callable[[CudaLibrary], bool]:
        """From CUDA 11 on, any library of the major serves; before, only the exact soname does."""
        if (cuda_major or 0) >= 11:
            return lambda lib: lib.cuda_major == cuda_major
        return lambda lib: lib.name == names[kind] or lib.name.startswith(names[kind] + ".")

    missing = [names[kind] for kind in ("cudart", "cublas") if not has(kind, serves(kind))]
    if cudnn_major is not None and not has(
        "cudnn", lambda lib: lib.soname_major == cudnn_major and lib.cuda_major in (None, cuda_major)
    ):
        missing.append(names["cudnn"])
    return missing


def _library_fix(name: str, key: str, need_cuda: str, need_cudnn: str | None, facts: FrameworkFacts,
                 wrong_cudnn: Sequence[CudaLibrary], rules: Mapping[str, Any]) -> str:
    cuda_major = major(need_cuda)
    if key == "tensorflow" and vtuple(facts.version) and vtuple(facts.version) < (2, 15):
        fix = rules["install_old"].format(cuda=need_cuda, cudnn=need_cudnn or "?")
    elif key in ("tensorflow", "onnxruntime"):
        fix = rules["install_gpu"]
    else:
        fix = f"install the CUDA {need_cuda} runtime and cuBLAS" + (f" and cuDNN {need_cudnn}" if need_cudnn else "") \
            + f" that {name} was built against, and put their folder on LD_LIBRARY_PATH"
    if wrong_cudnn and any(lib.origin == "pip" for lib in wrong_cudnn) and cuda_major is not None:
        owners = display_list(sorted({o for lib in wrong_cudnn for o in lib.required_by})) or "another package"
        fix += (f" (note: nvidia-cudnn-cu{cuda_major} installs into the same site-packages/nvidia/cudnn folder as"
                f" {owners}'s cuDNN for CUDA {wrong_cudnn[0].cuda_major}; if both frameworks need the GPU, give"
                " each its own environment: harness env create --gpu (docs/environments.md))")
    return fix


def _found_only(libs: Iterable[CudaLibrary]) -> str:
    order = {"cudart": 0, "cublas": 1, "cudnn": 2}
    others = sorted((lib for lib in libs if lib.kind in order), key=lambda lib: order[lib.kind])
    if not others:
        return "no CUDA runtime, cuBLAS or cuDNN library was found on the loader path or in pip's nvidia wheels"
    seen: dict[str, list[str]] = {}
    for lib in others:
        seen.setdefault(lib.label(), []).append(lib.provenance())
    return "found only: " + "; ".join(f"{label} from {', '.join(dict.fromkeys(where))}" for label, where in seen.items())


def _library_problems(name: str, key: str, need_cuda: str, need_cudnn: str | None, facts: FrameworkFacts,
                      system: SystemFacts, reqs: Mapping[str, Any]) -> list[_Problem]:
    """The CUDA libraries a build needs that this machine cannot give it."""
    cuda_major, cudnn_major = major(need_cuda), major(need_cudnn)
    names = sonames_for(need_cuda, need_cudnn, reqs)
    libs = [lib for lib in system.libraries if lib.loadable is not False]
    missing = _missing_libraries(names, cuda_major, cudnn_major, libs)
    if not missing:
        return []
    wrong_cudnn = [lib for lib in libs if lib.kind == "cudnn" and lib.soname_major == cudnn_major
                   and lib.cuda_major not in (None, cuda_major)]
    fix = _library_fix(name, key, need_cuda, need_cudnn, facts, wrong_cudnn, framework_rules(key, reqs))
    if missing == [names.get("cudnn")]:
        text = f"{name} needs cuDNN {cudnn_major} built for CUDA {cuda_major} ({names['cudnn']}); "
        text += (f"the only one found is {wrong_cudnn[0].label()} from {wrong_cudnn[0].provenance()}"
                 if wrong_cudnn else "none was found")
        if not wrong_cudnn and key != "tensorflow" and cuda_major in (11, 12, 13) and cudnn_major:
            fix = f"pip install 'nvidia-cudnn-cu{cuda_major}=={cudnn_major}.*'"
        return [_Problem(text, fix)]
    # from CUDA 11 on any runtime of the major serves (minor version compatibility); before, the minor counts
    cuda_text = str(cuda_major) if (cuda_major or 0) >= 11 else ".".join(map(str, vtuple(need_cuda)[:2]))
    need = f"CUDA {cuda_text}" + (f" and cuDNN {cudnn_major}" if cudnn_major is not None else "")
    return [_Problem(f"{name} needs {need} libraries ({', '.join(missing)} not found); {_found_only(libs)}", fix)]


def _driver_problems(name: str, need_cuda: str, system: SystemFacts, reqs: Mapping[str, Any]) -> list[_Problem]:
    driver = system.driver
    need_major = major(need_cuda)
    if not driver.present or need_major is None:
        return []
    floor = minimum_driver(need_major, reqs)
    have_major = major(driver.cuda)
    too_old_major = have_major is not None and have_major < need_major
    below_floor = bool(driver.version and floor and vtuple(driver.version) < vtuple(floor))
    if not (too_old_major or below_floor):
        return []
    upto = f"supports CUDA up to {driver.cuda}" if driver.cuda else "is too old"
    text = f"the driver {driver.version or ''} {upto}, {name} needs {need_major}.x".replace("  ", " ")
    fix = f"upgrade the NVIDIA driver to >= {floor}" if floor else "upgrade the NVIDIA driver"
    if have_major:
        fix += f", or install a {name.split(' ')[0]} build for CUDA {have_major}"
    return [_Problem(f"{text}: upgrade the driver", fix)]


# the verdict --------------------------------------------------------------------------------------------

@dataclass
class _Case:
    """One judgement in progress: who is judged, on what, and the problems found so far."""

    backend: str
    facts: FrameworkFacts
    system: SystemFacts
    device: str | None
    rules: dict[str, Any]
    problems: list[_Problem] = field(default_factory=list)

    @property
    def display(self) -> str:
        return self.rules.get("display", self.facts.framework)

    @property
    def name(self) -> str:
        """``TensorFlow 2.21``: the framework and the series the verdict is about."""
        return f"{self.display} {series(self.facts.version)}".strip() if self.facts.version else self.display

    @property
    def physical(self) -> int:
        """GPUs on the machine, whatever CUDA_VISIBLE_DEVICES hides."""
        return self.system.driver.gpu_count or len(self.system.driver.gpus)

    @property
    def fixes(self) -> str:
        return "; ".join(dict.fromkeys(p.fix for p in self.problems))

    @property
    def details(self) -> str:
        return "; ".join(p.text for p in self.problems)

    def verdict(self, status: str, reason: str, fix: str) -> Verdict:
        return Verdict(self.backend, self.facts.framework, status, reason, fix,
                       [p.text for p in self.problems], self.facts)


def _reinstall_fix(case: _Case) -> str:
    """Reinstall the distribution that is installed here (opencv-python-headless, not "opencv")."""
    if case.facts.distribution:
        return f"reinstall it in this environment: pip install --force-reinstall {case.facts.distribution}"
    names = ", ".join(case.rules.get("distributions", [])) or case.facts.framework
    return (f"reinstall {case.display} in this environment ({case.system.python}); no installed pip "
            f"distribution provides it (its PyPI names: {names})")


def _unprobed(case: _Case) -> Verdict | None:
    """The verdicts that come before any CUDA question: no answer, not installed, a failed probe."""
    facts = case.facts
    if facts.timed_out_s is not None:
        limit = facts.timed_out_s
        return case.verdict(
            "unknown",
            f"the {case.display} probe did not answer within {limit:g} s (--timeout {limit:g}), so the doctor "
            f"cannot tell whether {case.name} can use the GPU; this is no sign of a CUDA problem",
            f"raise the limit: harness doctor --timeout {max(PROBE_TIMEOUT_S, 2 * limit):g} (0 = no limit); "
            f"importing {case.display} can take tens of seconds on a busy machine",
        )
    if not facts.installed:
        return case.verdict("not-installed", f"{case.display} is not installed in this environment "
                            f"({case.system.python})", case.rules.get("install", f"pip install {facts.framework}"))
    if facts.error:
        hint = f"; its log: {' | '.join(facts.log[:3])}" if facts.log else ""
        return case.verdict("mismatch", f"{case.name} is installed but its probe failed: {facts.error}{hint}",
                            _reinstall_fix(case))
    return None


def _without_gpu(case: _Case, cpu_build: bool) -> Verdict | None:
    """No usable GPU for a reason outside the framework: no driver/GPU, hidden GPUs, a CPU-only build."""
    system, details, fixes, physical = case.system, case.details, case.fixes, case.physical
    if not system.driver.present or physical == 0:
        why = "no NVIDIA driver" if not system.driver.present else "the NVIDIA driver lists no GPU"
        errs = f" ({'; '.join(system.driver.errors[:2])})" if system.driver.errors and not system.driver.present else ""
        reason = f"{why} on this machine{errs}"
        reason += f"; {case.name} is also built without CUDA" if cpu_build else ""
        reason += f"; even with a GPU, {details}" if details else ""
        fix = "run on a machine with an NVIDIA GPU and driver"
        fix += f"; {case.rules.get('install_gpu')}" if cpu_build else (f"; {fixes}" if fixes else "")
        return case.verdict("cpu-only", reason, fix)
    if system.visible_gpus == 0:
        reason = f"CUDA_VISIBLE_DEVICES={system.cuda_visible_devices!r} hides all {physical} GPU(s)"
        reason += f"; also: {details}" if details else ""
        fix = "unset CUDA_VISIBLE_DEVICES, or list the GPUs to use (e.g. CUDA_VISIBLE_DEVICES=0)"
        return case.verdict("cpu-only", reason, fix + (f"; {fixes}" if fixes else ""))
    if cpu_build:
        gpus = f"this machine has {physical} GPU(s)"
        if case.device and Device(case.device).is_cuda_gpu:
            return case.verdict("mismatch", f"{case.name} is built without CUDA, but the {case.device} target was "
                                f"asked for ({gpus})", case.rules.get("install_gpu", ""))
        return case.verdict("cpu-only", f"{case.name} is built without CUDA ({gpus})", case.rules.get("install_gpu", ""))
    return None


def judge(backend: str, facts: FrameworkFacts, system: SystemFacts, device: str | None = None,
          reqs: Mapping[str, Any] | None = None) -> Verdict:
    """:func:`_judge`'s verdict, with what the probe noted about the framework beyond CUDA (an OpenCV without a
    TensorFlow importer: a release that changes what runs is what this tool exists to catch) said in its reason,
    whatever the status: a cpu-only verdict must not read as "nothing to know"."""
    verdict = _judge(backend, facts, system, device, reqs)
    notes = [str(n) for n in (facts.details or {}).get("notes", []) if n]
    if notes and verdict.status != "not-installed":
        verdict.reason += "".join(f"; note: {n}" for n in notes)
    return verdict


def _judge(backend: str, facts: FrameworkFacts, system: SystemFacts, device: str | None = None,
           reqs: Mapping[str, Any] | None = None) -> Verdict:
    """Decide whether ``backend`` can use a GPU here; pure: it only reads the facts it is given.

    ``device`` is what a job asks for (``"gpu"``, ``"cuda"``...; None: the doctor's plain question). It only
    changes one case: a CPU-only build on a machine with a GPU is ``cpu-only`` when nothing asked for the
    GPU (a deliberate CPU package), and ``mismatch`` when a job asked for the GPU/CUDA target.
    """
    reqs = reqs or requirements()
    case = _Case(backend, facts, system, device, framework_rules(facts.framework, reqs))
    early = _unprobed(case)
    if early is not None:
        return early
    if case.rules.get("gpu_runtime"):  # precision: a framework whose GPUs are not CUDA's (OpenVINO)
        return _own_devices(case)
    row = build_requirement(facts.framework, facts.version, reqs)
    need_cuda = facts.built_cuda or row.get("cuda")
    need_cudnn = facts.built_cudnn or row.get("cudnn")
    cpu_build = facts.cuda_build is False
    if not cpu_build and need_cuda:
        if not facts.bundles_cuda:
            case.problems += _library_problems(case.name, facts.framework, need_cuda, need_cudnn, facts, system, reqs)
        case.problems += _driver_problems(case.name, need_cuda, system, reqs)
    built = f" (built for CUDA {need_cuda}" + (f", cuDNN {need_cudnn})" if need_cudnn else ")") if need_cuda else ""

    if not cpu_build and facts.gpus:
        names = f": {', '.join(facts.gpu_names)}" if facts.gpu_names else ""
        note = f"; note: {case.details}" if case.details else ""
        return case.verdict("gpu-ready", f"{case.name}{built} sees {facts.gpus} GPU(s){names}{note}", "")
    no_gpu = _without_gpu(case, cpu_build)
    if no_gpu is not None:
        return no_gpu
    if facts.gpus is None and not case.problems:  # a framework that cannot count devices (ONNX Runtime)
        return case.verdict("gpu-ready", f"{case.name}{built}: GPU support built in, {case.physical} GPU(s) "
                            "visible, the CUDA libraries it needs are present", "")
    if case.problems:
        return case.verdict("mismatch", case.details, case.fixes)
    log = f"; its log: {' | '.join(facts.log[:4])}" if facts.log else ""
    return case.verdict("mismatch", f"{case.name}{built} sees no GPU although {system.visible_gpus} GPU(s) are "
                        f"visible; the doctor found no library or driver cause{log}",
                        "run the framework with its CUDA logging on (TF_CPP_MIN_LOG_LEVEL=0) and read its messages")


def _own_devices(case: _Case) -> Verdict:
    """A framework that finds its GPUs itself, without CUDA (OpenVINO: Intel GPUs): ready when it lists one."""
    facts = case.facts
    devices = ", ".join(facts.providers) or "none"
    if facts.gpus:
        return case.verdict("gpu-ready", f"{case.name} sees {facts.gpus} GPU(s): {', '.join(facts.gpu_names)}", "")
    nvidia = (f"; the {case.physical} NVIDIA GPU(s) here are not among them" if case.physical else "")
    return case.verdict("cpu-only", f"{case.name} lists no GPU device (its devices: {devices}); it drives "
                        f"{case.rules['gpu_runtime']}{nvidia}", case.rules.get("install_gpu", ""))


# the exit status ----------------------------------------------------------------------------------------

def exit_status(report: Mapping[str, Any], allow_cpu: bool = False) -> int:
    """0: every backend asked about is gpu-ready; 1: any mismatch; 3: otherwise not GPU-ready.

    Without an explicit backend list, frameworks that are not installed are left out (you did not ask for
    them). ``allow_cpu`` counts ``cpu-only`` as success (CI on machines without a GPU: "nothing is broken");
    ``unknown`` (a probe that did not answer) is never success: nobody checked.
    """
    explicit = report.get("explicit", False)
    statuses = [v.get("status") for v in report.get("backends", {}).values()]
    if not explicit:
        statuses = [s for s in statuses if s != "not-installed"]
    if "mismatch" in statuses:
        return EXIT_MISMATCH
    ok = {"gpu-ready", "cpu-only"} if allow_cpu else {"gpu-ready"}
    return EXIT_READY if statuses and all(s in ok for s in statuses) else EXIT_NOT_READY


def combined_exit_status(codes: Iterable[int]) -> int:
    """One exit status for several reports (environments, nodes): any mismatch, else any not-ready."""
    codes = list(codes)
    if EXIT_MISMATCH in codes:
        return EXIT_MISMATCH
    return EXIT_READY if codes and all(c == EXIT_READY for c in codes) else EXIT_NOT_READY
