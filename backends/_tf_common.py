"""What the TF1 and TF2 adapters share: importing TensorFlow quietly, thread and GPU-memory settings, and
reading device placement out of a RunMetadata / step-stats trace."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from harness.detector import Placement, gpu_index, is_accelerator_request
from harness.errors import BackendUnavailable


def import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorFlow is not installed ({exc})", "pip install -e '.[tf]'  (or pip install tensorflow)"
        ) from exc
    return tf


def tf_versions(tf: Any) -> dict[str, str]:
    info = dict(tf.sysconfig.get_build_info())
    out = {"tensorflow": tf.__version__}
    for key in ("cuda_version", "cudnn_version"):
        if info.get(key):
            out[f"tensorflow_built_for_{key}"] = str(info[key])
    return out


def placement_from_step_stats(step_stats: Any, requested: str) -> Placement:
    """Count the ops of one traced run per device: ``GPU:0 94% of ops, CPU 6%``."""
    counts: Counter[str] = Counter()
    for dev in step_stats.dev_stats:
        name = dev.device  # e.g. /job:localhost/replica:0/task:0/device:GPU:0 (and .../stream:all copies)
        if "stream:" in name or "memcpy" in name:
            continue
        short = name.rsplit("device:", 1)[-1]
        counts[short] += len(dev.node_stats)
    total = sum(counts.values())
    if total == 0:
        return Placement(requested, "unknown", "the trace recorded no ops")
    shares = {dev: n / total for dev, n in counts.most_common()}
    gpu_share = sum(v for k, v in shares.items() if k.upper().startswith("GPU"))
    if gpu_share >= 0.5:
        gpu_dev = max((k for k in shares if k.upper().startswith("GPU")), key=lambda k: shares[k])
        actual = "gpu:" + gpu_dev.rsplit(":", 1)[-1]
    else:
        actual = "cpu"
    evidence = "ops of one traced inference: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    return Placement(requested, actual, evidence, shares)


def visible_gpu_note(tf: Any) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"TensorFlow sees {len(gpus)} GPU(s)"
    built = tf.test.is_built_with_cuda()
    return "TensorFlow sees no GPU (" + ("CUDA build: see `harness doctor` for why" if built else "CPU-only build") + ")"


def configure_gpu_memory_growth(tf: Any) -> None:
    """Don't let TF take all GPU memory: other jobs and frameworks share the card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialized in this process


def tf_device_string(device: str) -> str:
    return f"/GPU:{gpu_index(device)}" if is_accelerator_request(device) else "/CPU:0"


def apply_tf2_threads(tf: Any, intra: int | None, inter: int | None = None) -> dict[str, int]:
    """Set TF2's process-wide thread pools (only possible before TF runs anything in this process: true in
    the worker process each job gets). Returns the values in effect (0 = TF's own choice)."""
    for value, setter in ((intra, tf.config.threading.set_intra_op_parallelism_threads),
                          (inter, tf.config.threading.set_inter_op_parallelism_threads)):
        if value:
            try:
                setter(int(value))
            except RuntimeError:  # TF already initialized (inline executor): keep what is in effect
                pass
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
