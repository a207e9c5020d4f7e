"""What one job is (a backend x model x source x device) and what it produced.

Both are plain dataclasses of JSON-able values so that a job can be sent to a subprocess and its result
sent back, and so that ``jobs.json`` can be read by a later ``--resume``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.policy import PostprocessPolicy

STATUSES = ("ok", "fallback", "failed", "timeout", "crashed", "interrupted")


def slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return text or "x"


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job; ``job_id`` names its files in the results folder."""

    backend: str
    source: str  # asset name or path of a video / image folder
    model: str | None = None  # asset name or path; None = the backend's reference model
    device: str = "cpu"
    frames: int | None = None  # at most this many frames (None = all)
    warmup: int = 10
    preprocess: str = "native"  # "native" | "shared"
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    record_threshold: float = 0.01  # detections saved (and used for AP) are those above this score
    score_threshold: float = 0.3  # the comparison policy: agreement, drawing, counts
    top_k: int = 100
    classes: tuple[int, ...] | None = None
    strict_device: bool = False
    timeout_s: float | None = None
    job_id: str = ""

    def __post_init__(self) -> None:
        if not self.job_id:
            model = self.model or "ref"
            model_name = model.rstrip("/").rsplit("/", 1)[-1]
            source_name = self.source.rstrip("/").rsplit("/", 1)[-1]
            parts = [self.backend.rsplit(":", 1)[-1], model_name, source_name, self.device]
            if self.preprocess != "native":
                parts.append(self.preprocess)
            object.__setattr__(self, "job_id", slug("_".join(parts)))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        self.policy  # noqa: B018 - validates thresholds/top-k now, not after the job has run

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        data = dict(data)
        if data.get("classes") is not None:
            data["classes"] = tuple(data["classes"])
        return cls(**data)

    @property
    def policy(self) -> dict[str, Any]:
        """The post-processing policy of this job, as written into the results (validated there)."""
        return PostprocessPolicy(record_threshold=self.record_threshold, score_threshold=self.score_threshold,
                                 top_k=self.top_k, classes=self.classes).to_dict()


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
