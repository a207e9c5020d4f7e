"""The GPU layout: one environment per framework family, so their CUDA libraries never meet.

With everything in one environment, PyTorch's CUDA 13 wheels own ``site-packages/nvidia/cudnn`` and
TensorFlow (built for CUDA 12) finds no CUDA 12 runtime, cuBLAS or cuDNN: it quietly runs on the CPU.
``tensorflow[and-cuda]`` would put its cuDNN for CUDA 12 into the same folder as PyTorch's. Separate
environments end the collision: ``harness env create --gpu`` makes these three.

The OpenCV backend is not here: the opencv-python wheels are built without CUDA (see docs/doctor.md).
Converted reference models (ONNX, the PyTorch port's weights) are made with TensorFlow; these environments
read them from the shared harness cache, so run ``harness convert`` once in the default environment.
"""

from __future__ import annotations

from harness.envs.spec import EnvSpec

#: name -> (requirements, the backends it is for, why)
GPU_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "tf-gpu": (
        ("tensorflow[and-cuda]==2.21.*", "tensorflow-hub>=0.16", "setuptools<82"),
        ("tf1", "tf2", "tflite"),
        "TensorFlow with its CUDA 12 / cuDNN 9 wheels (nvidia-*-cu12)",
    ),
    "torch-gpu": (
        ("torch>=2.14.1", "torchvision>=0.29.1"),
        ("torch",),
        "PyTorch's default Linux wheels, built for CUDA 13, with their nvidia-*-cu13 libraries",
    ),
    "ort-gpu": (
        ("onnxruntime-gpu[cuda,cudnn]>=1.20",),
        ("onnxruntime",),
        "ONNX Runtime's CUDA build with the CUDA and cuDNN wheels its extras name (1.31: CUDA 13, and a "
        "newer cuDNN than PyTorch pins, so not in torch-gpu either)",
    ),
}


def gpu_specs(python: str | None = None) -> list[EnvSpec]:
    """The built-in GPU environments as specs (``python`` X.Y, default: the running one)."""
    return [EnvSpec.make(name, reqs, python, description=f"{why}; for {', '.join(backends)}")
            for name, (reqs, backends, why) in GPU_LAYOUT.items()]


def gpu_env_for(backend: str) -> str | None:
    """The GPU environment meant for ``backend``, if the layout has one."""
    return next((name for name, (_, backends, _) in GPU_LAYOUT.items() if backend in backends), None)
