"""A device as a job asks for it, parsed once where it enters (flags, suite files, jobs.json, the worker).

:class:`Device` is a ``str`` in its canonical form (``"gpu:1"``), so it reads, compares, prints and travels
in JSON exactly as the text did, while the questions every layer asks of it (is it an accelerator? which GPU?
does Ray need to give it a CUDA GPU?) have one answer each, here.
"""

from __future__ import annotations

import re
from typing import Any

from harness.core.errors import HarnessError

#: devices named by a backend target rather than "the GPU": OpenCV DNN picks its backend/target from them
#: (``cuda_fp16``: CUDA at half precision, ``opencl``/``opencl_fp16``: OpenCL); any other backend treats them
#: as a request for its GPU, and a run that ends on the CPU is a FALLBACK like any GPU request
DEVICE_TARGETS: tuple[str, ...] = ("cuda_fp16", "opencl", "opencl_fp16", "vulkan", "npu")

#: the device forms a job accepts, as shown in errors and help
DEVICE_FORMS = ("cpu", "gpu", "gpu:N", "cuda", "cuda:N", *DEVICE_TARGETS)

#: ``cpu:0`` (TensorFlow's spelling) is accepted as the CPU too, as it always was
_DEVICE_RE = re.compile(r"((cpu|gpu|cuda)(:\d+)?|" + "|".join(DEVICE_TARGETS) + ")")


class Device(str):
    """A checked device in canonical (lower-case, trimmed) form.

    An unknown device used to run on the CPU and report ``ok`` (``--device tpu``), which is the silent
    fallback the harness exists to catch, so anything not in :data:`DEVICE_FORMS` is refused when parsed.
    """

    __slots__ = ()

    def __new__(cls, text: Any = "cpu") -> "Device":
        if isinstance(text, Device):
            return text
        device = str(text).strip().lower()
        if not _DEVICE_RE.fullmatch(device):
            raise HarnessError(
                f"unknown device {text!r}",
                f"use one of: {', '.join(DEVICE_FORMS)} (N = the GPU's index, e.g. gpu:1); backend targets such "
                "as cuda_fp16 or opencl are read by OpenCV DNN, other backends take them as their GPU",
            )
        return super().__new__(cls, device)

    @property
    def is_accelerator(self) -> bool:
        """It asks for anything but the CPU (``gpu``, ``gpu:1``, ``cuda_fp16``, ``opencl`` ...): a run that ends
        on the CPU is a fallback."""
        return not self.startswith("cpu")

    @property
    def is_cuda_gpu(self) -> bool:
        """It asks for a CUDA GPU (``gpu``, ``cuda``, ``cuda_fp16``...): what the doctor judges a build against,
        and what Ray must give the job (``num_gpus = 1``). OpenCL, Vulkan and NPU targets are not."""
        return self.startswith(("gpu", "cuda"))

    @property
    def index(self) -> int:
        """The N of ``gpu:N`` / ``cuda:N``; 0 when not given."""
        _, _, idx = self.partition(":")
        return int(idx) if idx.isdigit() else 0


def is_accelerator(device: Any) -> bool:
    """Text that may not be a checked device (an old results folder's cell, what a backend was handed) asks for
    anything but the CPU; empty text does not."""
    text = str(device or "").strip().lower()
    return bool(text) and not text.startswith("cpu")
