"""TF2 SavedModel (and TF Hub handles) called through a fixed ``serving_default`` concrete function.

Why a concrete function: a ``tf.function`` retraces (seconds of graph building) whenever it sees a new input
signature, and a benchmark that retraces mid-run measures tracing, not inference. A signature's
``ConcreteFunction`` is traced once when the SavedModel is written and *cannot* retrace: a mismatched input
raises instead. The adapter reads the input name, dtype and shape from ``structured_input_signature``, hands it
exactly that (uint8 ``[1, H, W, 3]`` RGB for Object Detection API exports), and reports the fixed signature
as its retracing evidence.

Placement is measured, not assumed: after warm-up, one inference runs through a fresh ``tf.function`` with
eager run metadata switched on; the runtime then records the partitioned graphs it really executed (after
Grappler rewrote them, e.g. ``_MklNativeFusedConv2D`` on CPU), and the devices of those ops are counted, along
with the devices of the output tensors.

The reference frozen graph is turned into a SavedModel once (:mod:`backends.tf2_convert`: ``wrap_function`` +
``prune``, then ``tf.saved_model.save`` with an OD API style signature) and cached by content, in the same
cache ``harness convert`` fills (:func:`harness.data.cache.use_reference_conversion`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backends._tf_common import (
    apply_tf2_threads,
    configure_gpu_memory_growth,
    import_tf,
    tf_device_string,
    tf_versions,
    visible_gpu_note,
)
from backends._tf_common import OD_API_OUTPUTS, SIGNATURE
from backends.tf2_convert import TF2Converter
from harness.data.cache import use_reference_conversion
from harness.core.detections import Detections
from harness.core.detector import Detector, DetectorConfig, Placement, ThreadSettings, split_batch
from harness.core.errors import BackendUnavailable, ModelError
from harness.core.labels import LabelMap
from harness.data.models import DEFAULT_MODEL, label_map_option, resolve_model
from harness.data.preprocess import rgb_batch, rgb_stack, shared_resize

HUB_PREFIX = "hub:"

# Ops that say nothing about where compute ran: graph plumbing and constants
_PLUMBING_OPS = {"_Arg", "_Retval", "_Send", "_Recv", "_HostSend", "_HostRecv", "NoOp", "Const", "Identity"}


def is_hub_handle(model: str) -> bool:
    """``https://...`` / ``hub:<url or folder>`` go through tensorflow_hub; plain paths through tf.saved_model."""
    return model.startswith(("http://", "https://", HUB_PREFIX))


def import_hub() -> Any:
    import warnings

    try:
        with warnings.catch_warnings():  # hub 0.16.1 imports the deprecated pkg_resources (tensorflow/hub#934)
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import tensorflow_hub as hub
    except ImportError as exc:
        raise BackendUnavailable(
            f"tensorflow_hub cannot be imported ({exc})",
            "pip install -e '.[tf]'; tensorflow-hub 0.16.1 needs setuptools<82 for pkg_resources "
            "(tensorflow/hub#934)",
        ) from exc
    return hub


def load_hub_handle(tf: Any, handle: str) -> Any:
    """``hub.load`` a URL or a local folder. URLs are fetched into ``TFHUB_CACHE_DIR`` (hub's own cache)."""
    hub = import_hub()
    target = handle[len(HUB_PREFIX):] if handle.startswith(HUB_PREFIX) else handle
    is_url = target.startswith(("http://", "https://"))
    if not is_url and not Path(target).expanduser().is_dir():
        raise ModelError(f"TF Hub handle {handle!r}: {target} is neither a URL nor an existing folder",
                         "give hub:<folder of an unpacked Hub SavedModel> or hub:https://tfhub.dev/...")
    try:
        return hub.load(str(Path(target).expanduser()) if not is_url else target)
    except Exception as exc:  # network errors, bad archives, not a SavedModel
        cache = os.environ.get("TFHUB_CACHE_DIR", "(unset: hub uses a temp folder)")
        raise ModelError(
            f"TF Hub handle {handle!r} could not be loaded: {type(exc).__name__}: {str(exc)[:300]}",
            "offline: download the model's .tar.gz (add ?tf-hub-format=compressed to the URL) where there is "
            "internet, unpack it and pass hub:/that/folder, or pre-fill TFHUB_CACHE_DIR (now "
            f"{cache}) on a machine with internet and copy it here",
        ) from exc


def load_saved_model(tf: Any, path: Path) -> Any:
    """``tf.saved_model.load`` with one clear error for the usual wrong inputs."""
    if path.is_file():
        if path.suffix == ".pb":
            fix = ("this looks like a frozen graph: run it with --backend tf1, or `harness convert` it to a "
                   "SavedModel")
        else:
            fix = "a SavedModel is a folder holding saved_model.pb and variables/; give the folder"
        raise ModelError(f"{path} is a file, not a SavedModel folder", fix)
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelError(f"{path} has no saved_model.pb: not a SavedModel folder",
                         "point at the folder that directly contains saved_model.pb (e.g. .../saved_model)")
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:  # DecodeError, OSError, ValueError... from a corrupt or foreign file
        raise ModelError(f"{path} cannot be loaded as a SavedModel: {type(exc).__name__}: {str(exc)[:300]}",
                         "re-export it with tf.saved_model.save (TF2), or check that the file is complete") from exc


class TF2Detector(Detector):
    name = "tf2"
    distributions = ("tensorflow", "tensorflow-hub")
    converter = TF2Converter
    known_options = {
        **{k: f"output key of the signature for {k} (default {v})" for k, v in OD_API_OUTPUTS.items()},
        "signature": f"the SavedModel signature to call (default {SIGNATURE})",
        "labels": "label file (one name per line), or coco | person",
        "inter_op_threads": "TensorFlow's inter-op pool (tf.config.threading; 0 = TensorFlow's choice)",
    }

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self._outputs = {k: str(config.option(k, v)) for k, v in OD_API_OUTPUTS.items()}
        self._signature_name = str(config.option("signature", SIGNATURE))
        self._fn: Any = None
        self._input_name = ""
        self._input_spec: Any = None
        self._last_inputs: Any = None
        self._last_outputs: dict[str, Any] = {}
        self._source = ""

    # loading --------------------------------------------------------------------------------------------
    def load(self) -> None:
        tf = import_tf()
        self._tf = tf
        configure_gpu_memory_growth(tf)
        self._device = tf_device_string(self.config.device)
        self._threads = apply_tf2_threads(tf, self.config.threads, self.config.option("inter_op_threads"))
        model = self.config.model
        labels = label_map_option(self.config.option("labels"))
        with tf.device(self._device):
            if model is None or model == DEFAULT_MODEL:
                self.model_ref = resolve_model(DEFAULT_MODEL, role="graph")
                path = use_reference_conversion(self, self.model_ref.path)
                self._source = f"{path} (converted from {self.model_ref.path})"
                self._obj = load_saved_model(tf, path)
            elif is_hub_handle(model):
                self._source = f"TF Hub {model}"
                self._obj = load_hub_handle(tf, model)
            else:
                self.model_ref = resolve_model(model)
                self._source = str(self.model_ref.path)
                self._obj = load_saved_model(tf, self.model_ref.path)
        self._fn = self._signature_function()
        self._input_name, self._input_spec = self._read_input_spec()
        missing = [v for v in self._outputs.values() if v not in self._fn.structured_outputs]
        if missing:
            raise ModelError(
                f"{self._source}: signature {self._signature_name!r} has no output(s) {', '.join(missing)}",
                f"its outputs are {', '.join(sorted(self._fn.structured_outputs))}; name them with "
                "--opt boxes=... scores=... classes=... num=...",
            )
        ref_map: LabelMap | None = self.model_ref.label_map if self.model_ref else None
        self.label_map = labels or ref_map or self.label_map
        shape = self._input_spec.shape
        fixed = (int(shape[2]), int(shape[1])) if shape.rank == 4 and None not in (shape[1], shape[2]) else None
        self.input_size = (self.model_ref.input_size if self.model_ref else None) or fixed
        self._fixed_size = fixed

    def _signature_function(self) -> Any:
        sigs = getattr(self._obj, "signatures", None) or {}
        if self._signature_name in sigs:
            return sigs[self._signature_name]
        raise ModelError(
            f"{self._source} has no signature {self._signature_name!r}",
            f"its signatures: {', '.join(sigs) or 'none'}; choose one with --opt signature=NAME "
            "(a SavedModel without signatures must be re-exported with one)",
        )

    def _read_input_spec(self) -> tuple[str, Any]:
        args, kwargs = self._fn.structured_input_signature
        if args or len(kwargs) != 1:
            raise ModelError(
                f"{self._source}: signature {self._signature_name!r} takes {len(args)} positional and "
                f"{len(kwargs)} keyword inputs; an image detector takes exactly one image tensor",
                "export the detector with a single uint8 image input [1, H, W, 3] (the OD API's input_tensor)",
            )
        name, spec = next(iter(kwargs.items()))
        tf = self._tf
        if spec.dtype not in (tf.uint8, tf.float32) or spec.shape.rank not in (None, 4):
            raise ModelError(
                f"{self._source}: input {name!r} is {spec.dtype.name} {spec.shape}; expected an image batch",
                "export with a uint8 [1, H, W, 3] RGB input (exporter_main_v2.py --input_type image_tensor)",
            )
        return name, spec

    # the three stages -----------------------------------------------------------------------------------
    def preprocess(self, frame_bgr: np.ndarray) -> Any:
        """BGR->RGB with a batch axis, as one tensor of exactly the signature's dtype, already on the device the
        function runs on (on a GPU the host-to-device copy is made here, not inside the timed call)."""
        if self._fixed_size and (frame_bgr.shape[1], frame_bgr.shape[0]) != self._fixed_size:
            frame_bgr = shared_resize(frame_bgr, self._fixed_size)
        return self._to_tensor(rgb_batch(frame_bgr))

    def _to_tensor(self, rgb: np.ndarray) -> Any:
        """An ``[N, H, W, 3]`` RGB array as a tensor of the signature's dtype on the job's device. float32 inputs
        get the 0..255 values as they are (OD API float exports expect that)."""
        tf = self._tf
        tensor = tf.constant(rgb if self._input_spec.dtype == tf.uint8 else rgb.astype(np.float32))
        if self.config.device.is_accelerator:
            with tf.device(self._device):
                tensor = tf.identity(tensor)
        return tensor

    def infer(self, inputs: Any) -> dict[str, np.ndarray]:
        self._last_inputs = inputs
        with self._tf.device(self._device):
            out = self._fn(**{self._input_name: inputs})
        self._last_outputs = out
        return {k: out[name].numpy() for k, name in self._outputs.items()}

    def postprocess(self, raw: dict[str, np.ndarray], frame_size: tuple[int, int]) -> Detections:
        try:
            n = int(np.asarray(raw["num"]).reshape(-1)[0])
            boxes = np.asarray(raw["boxes"]).reshape(-1, 4)[:n]
            scores = np.asarray(raw["scores"]).reshape(-1)[:n]
            classes = np.asarray(raw["classes"]).reshape(-1)[:n]
        except (ValueError, IndexError) as exc:
            raise ModelError(
                f"the model's outputs don't fit the Object Detection API layout: {exc}",
                "expected boxes [1,N,4] ymin,xmin,ymax,xmax normalized, scores [1,N], classes [1,N], num [1]",
            ) from exc
        return Detections.from_boxes(
            boxes, scores, self.label_map.apply(classes), frame_size,
            fmt="yxyx", normalized=True, label_space=self.label_map.space,
        )

    # batches: the signature takes [N, H, W, 3] when its batch axis is not fixed ------
    def batch_unsupported(self, size: int) -> str | None:
        shape = self._input_spec.shape
        dim = shape[0] if shape.rank else None
        if size == 1 or dim in (None, size):
            return None
        return f"{self._source}: signature input {self._input_name!r} has a fixed batch of {dim}"

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> Any:
        """:meth:`preprocess` for a batch: one ``[N, H, W, 3]`` tensor of the signature's dtype, on its device."""
        if self._fixed_size:
            frames_bgr = [shared_resize(f, self._fixed_size) for f in frames_bgr]
        return self._to_tensor(rgb_stack(frames_bgr))

    def postprocess_batch(self, raw: dict[str, np.ndarray], frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        keys = list(raw)
        split = split_batch([raw[k] for k in keys], len(frame_sizes))
        return [self.postprocess(dict(zip(keys, one)), size) for one, size in zip(split, frame_sizes)]

    # reporting ------------------------------------------------------------------------------------------
    def op_devices_of_one_run(self) -> Counter[str]:
        """Devices of the ops the runtime executed for one inference, from eager run metadata.

        The runtime records a function's partitioned graphs when it instantiates it, so a fresh
        ``tf.function`` around the signature is run once (same device scope, same input); its graph inlines
        the signature's body, so the count covers the model's own ops after Grappler's rewrites.
        """
        from tensorflow.python.eager import context  # no public TF2 API exposes executed-op placement

        tf = self._tf
        probe = tf.function(lambda x: self._fn(**{self._input_name: x}))
        with tf.device(self._device):
            context.enable_run_metadata()
            try:
                out = probe(self._last_inputs)
                meta = context.export_run_metadata()
            finally:
                context.disable_run_metadata()
        self._last_outputs = out
        counts: Counter[str] = Counter()
        for fg in meta.function_graphs:
            for pg in fg.partition_graphs:
                for node in pg.node:
                    if node.op not in _PLUMBING_OPS:
                        counts[node.device.rsplit("device:", 1)[-1] or "?"] += 1
        return counts

    def placement(self) -> Placement:
        if self._last_inputs is None:
            return Placement(self.config.device, "unknown", "no inference ran yet")
        counts = self.op_devices_of_one_run()
        out_devs = sorted({t.device.rsplit("device:", 1)[-1] for t in self._last_outputs.values()})
        total = sum(counts.values())
        if total == 0:
            return Placement(self.config.device, "unknown", "the run metadata recorded no ops")
        shares = {dev: n / total for dev, n in counts.most_common()}
        gpu = {k: v for k, v in shares.items() if k.upper().startswith("GPU")}
        actual = "gpu:" + max(gpu, key=gpu.get).rsplit(":", 1)[-1] if sum(gpu.values()) >= 0.5 else "cpu"
        evidence = (f"ops of one executed inference (eager run metadata, {total} ops): "
                    + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
                    + f"; output tensors on {', '.join(out_devs)}")
        placement = Placement(self.config.device, actual, evidence, shares)
        if placement.fallback:
            placement.evidence += f"; {visible_gpu_note(self._tf)}"
        return placement

    def peak_gpu_memory_mb(self) -> float | None:
        if not self.config.device.is_accelerator or not self._tf.config.list_physical_devices("GPU"):
            return None
        try:
            info = self._tf.config.experimental.get_memory_info(self._device.strip("/"))
        except (ValueError, RuntimeError):
            return None
        return info["peak"] / 2**20

    def runtime_versions(self) -> dict[str, str]:
        return tf_versions(self._tf) if getattr(self, "_tf", None) else {}

    def thread_settings(self) -> ThreadSettings:
        """TensorFlow's own report (``tf.config.threading``, read back after applying ``--threads``: a setting
        TF refused is not shown as applied); a pool it reports as 0 is TF's unresolved default, so that one
        goes under ``configured``."""
        threads = getattr(self, "_threads", None)
        if threads is None:
            return super().thread_settings()
        return ThreadSettings(in_effect={k: v for k, v in threads.items() if v},
                              configured={k: v for k, v in threads.items() if not v})

    def model_details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self._source}
        if self._fn is not None:
            d["signature"] = self._signature_name
            d["input"] = {"name": self._input_name, "dtype": self._input_spec.dtype.name,
                          "shape": [None if v is None else int(v) for v in self._input_spec.shape]}
            d["outputs"] = dict(self._outputs)
            # a signature is a ConcreteFunction: traced when saved, never retraced here (a mismatch raises)
            d["retracing"] = "none possible: fixed ConcreteFunction, inputs built to its exact TensorSpec"
        return d

    # precision ---------------------------------------------------------------------------------
    def precision_report(self) -> Any:
        """The types the signature's convolutions and matmuls were traced with (its graph and the functions
        it calls): a SavedModel runs at the types it was saved with."""
        from backends._tf_common import graph_def_precision

        return graph_def_precision(self._fn.graph.as_graph_def(), self.config.precision)

    def model_cost(self) -> Any:
        """Parameters: the float constants and variables of the signature's graph. MACs are not counted for a
        SavedModel (its convolutions' shapes are known only inside a call); tf1 and the other backends count
        them for the same weights."""
        from backends._tf_common import graph_def_params
        from harness.core.model_facts import ModelCost

        params = graph_def_params(self._fn.graph.as_graph_def())
        params += sum(int(v.shape.num_elements() or 0) for v in getattr(self._fn, "variables", ()))
        return ModelCost(params, None, f"signature {self._signature_name}: parameters only (MACs not counted)")
