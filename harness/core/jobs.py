"""What one job is (a backend x model x source x device) and what it produced.

Both are plain dataclasses of JSON-able values so that a job can be sent to a subprocess and its result
sent back, and so that ``jobs.json`` can be read by a later ``--resume``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from harness.core.device import Device
from harness.core.errors import HarnessError
from harness.core.policy import PostprocessPolicy
from harness.core.precision import Precision
from harness.core.scenario import ScenarioSpec
from harness.core.settings import problem_with

STATUSES = ("ok", "fallback", "failed", "timeout", "crashed", "interrupted", "node-lost", "no-node")


def slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return text or "x"


#: longest file stem a job's files get (file systems allow 255 bytes; leave room for suffixes and temporaries)
MAX_FILE_STEM = 120

#: the flat keys that older jobs.json files (schema 1) used for the policy
_FLAT_POLICY_KEYS = ("record_threshold", "score_threshold", "top_k", "classes")


def file_stem(job_id: str) -> str:
    """A safe, bounded file name for a job id: the id itself when it is already one, else a slug cut to
    :data:`MAX_FILE_STEM` with a hash of the whole id (two long ids never share a file). The readable id
    stays inside the files (runs.csv, jobs.json); only names on disk use this."""
    safe = slug(job_id)
    if safe == job_id and len(job_id) <= MAX_FILE_STEM:
        return job_id
    digest = hashlib.sha1(job_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe[: MAX_FILE_STEM - 11]}-{digest}"


def python_label(python: str) -> str:
    """A short, stable name for an interpreter path in job ids: the folder above ``bin`` and a hash, so
    ``/opt/tf220/bin/python`` reads ``tf220-1a2b3c`` and two interpreters never share an id."""
    parts = python.rstrip("/").split("/")
    name = parts[-3] if len(parts) >= 3 and parts[-2] == "bin" else parts[-1]
    return f"{slug(name)}-{hashlib.sha1(python.encode('utf-8')).hexdigest()[:6]}"


# ray -------------------------------------------------------------------------------------------
#: statuses of a job the cluster could not run to an end: not findings about the detector, so --resume
#: reruns them (they are not in harness.results.FINISHED)
NODE_LOST = "node-lost"  # the node running it died (after the configured retries elsewhere)
NO_NODE = "no-node"  # no node of the cluster has the resources it asks for
_MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")


def check_machine(machine: Any, resources: Any) -> dict[str, float]:
    """A machine kind is a short name (it goes into the job id) and resources are positive amounts by name,
    as ``ray start --resources`` declares them: refused when a spec is made, not when a node is sought.
    Returns the resources as ``{name: float}``."""
    if machine is not None and not (isinstance(machine, str) and _MACHINE_NAME.fullmatch(machine)):
        raise HarnessError(f"machine {machine!r} is not a usable name: letters, digits, '.', '_' and '-', "
                           "at most 48 characters", 'name it like "any-gpu" or "orin"')
    if not isinstance(resources, Mapping):
        raise HarnessError(f"resources {resources!r} is not a table of amounts by resource name",
                           'write e.g. resources = { "jetson-orin" = 1 }')
    for name, amount in resources.items():
        if not isinstance(name, str) or not name or isinstance(amount, bool) or \
                not isinstance(amount, (int, float)) or not 0 < amount < float("inf"):
            raise HarnessError(f"resource {name!r} = {amount!r}: expected a resource name and a positive amount",
                               'write e.g. resources = { "jetson-orin" = 1, GPU = 1 }')
    return {str(k): float(v) for k, v in resources.items()}


def _check_machine(spec: "JobSpec") -> None:
    object.__setattr__(spec, "resources", check_machine(spec.machine, spec.resources))


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job; ``job_id`` names it in the results folder.

    ``policy`` is the one post-processing policy of the job (what is saved, what counts as a detection);
    nothing else in a spec repeats its defaults.
    """

    backend: str
    source: str  # asset name or path of a video / image folder
    model: str | None = None  # asset name or path; None = the backend's reference model
    device: str = "cpu"
    frames: int | None = None  # at most this many frames (None = all)
    warmup: int = 10
    preprocess: str = "native"  # "native" | "shared"
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    policy: PostprocessPolicy = field(default_factory=PostprocessPolicy)
    strict_device: bool = False
    timeout_s: float | None = None
    env: str = "default"  # the Python environment it runs in (harness.envs); "default": the running one
    python: str | None = None  # or an existing interpreter that can import harness (checked before the job)
    # ray: where the job must run on a cluster: a machine kind's name (in the job id) and the Ray
    # resources a node must have for it (custom ones from `ray start --resources`, plus CPU/GPU/memory)
    machine: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    # scenarios: how frames reach the model and the level measured (default: single-stream)
    scenario: ScenarioSpec = field(default_factory=ScenarioSpec)
    # precision: what the job asks (harness.core.precision; None = not asked: fp32 where the harness
    # chooses, a model file as stored), and whether running another precision fails the job
    precision: str | None = None
    strict_precision: bool = False
    job_id: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.policy, Mapping):
            object.__setattr__(self, "policy", PostprocessPolicy.from_dict(self.policy))
        if not isinstance(self.scenario, ScenarioSpec):  # scenarios: read back from jobs.json
            object.__setattr__(self, "scenario", ScenarioSpec.from_dict(self.scenario))
        self._check()
        _check_machine(self)
        if self.python and self.env != "default":
            raise HarnessError(f"a job runs in environment {self.env!r} or with python {self.python!r}, not both",
                               "give either env or python")
        if not self.job_id:
            model = self.model or "ref"
            model_name = model.rstrip("/").rsplit("/", 1)[-1]
            source_name = self.source.rstrip("/").rsplit("/", 1)[-1]
            parts = [self.backend.rsplit(":", 1)[-1], model_name, source_name, self.device]
            if self.preprocess != "native":
                parts.append(self.preprocess)
            if self.precision is not None:
                parts.append(self.precision)
            if self.python:
                parts.append(f"py-{python_label(self.python)}")
            elif self.env != "default":
                parts.append(f"env-{self.env}")
            if self.machine:  # ray: the same job on two machine kinds is two jobs
                parts.append(f"on-{self.machine}")
            if self.scenario.id_suffix():  # scenarios: single-stream ids stay as they were
                parts.append(self.scenario.id_suffix())
            object.__setattr__(self, "job_id", slug("_".join(parts)))

    def _check(self) -> None:
        """The same checks as the command line and suites (harness.core.settings), for specs made any other way:
        a spec that can't run as asked is refused when made, not measured as something else."""
        object.__setattr__(self, "device", Device(self.device))
        for key in ("frames", "warmup", "preprocess", "threads", "options", "strict_device", "timeout_s"):
            value = getattr(self, key)
            if value is None and key in ("frames", "threads", "timeout_s"):
                continue
            problem = problem_with(key, value)
            if problem:
                raise HarnessError(f"job {self.job_id or self.backend}: {key} {value!r}: {problem}",
                                   "fix the job's settings (see docs/suites-and-reports.md)")
        if self.precision is not None:  # the canonical word (``F16`` -> ``fp16``), or one error naming the valid ones
            object.__setattr__(self, "precision", Precision(self.precision))
        if not isinstance(self.strict_precision, bool):
            raise HarnessError(f"job {self.job_id or self.backend}: strict_precision {self.strict_precision!r}: "
                               "expected true or false", "fix the job's settings (see docs/precision.md)")

    @property
    def env_label(self) -> str:
        """Where the job runs, as ``runs.csv``'s ``env`` column says it: an environment name or an interpreter."""
        return self.python if self.python else self.env

    @property
    def file_stem(self) -> str:
        """The name this job's files get on disk (see :func:`file_stem`)."""
        return file_stem(self.job_id)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["policy"] = self.policy.to_dict()
        d["scenario"] = self.scenario.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobSpec":
        """Read a spec written by this or an older version (flat policy keys); unknown keys are an error
        (a spec from a newer harness must not be half-understood)."""
        data = dict(data)
        flat = {k: data.pop(k) for k in _FLAT_POLICY_KEYS if k in data}
        if "policy" not in data and flat:
            data["policy"] = PostprocessPolicy.from_dict(flat)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown job spec keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class JobResult:
    """A finished (or failed) job. ``summary`` becomes its ``runs.csv`` row."""

    spec: JobSpec
    status: str
    summary: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # placement, versions, model, source facts
    cause: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "status": self.status,
            "summary": self.summary,
            "frames": self.frames,
            "detections": self.detections,
            "info": self.info,
            "cause": self.cause,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobResult":
        return cls(
            spec=JobSpec.from_dict(data["spec"]),
            status=data["status"],
            summary=data["summary"],
            frames=data.get("frames", []),
            detections=data.get("detections", []),
            info=data.get("info", {}),
            cause=data.get("cause", ""),
        )
