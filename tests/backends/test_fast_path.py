"""Each backend stays on its framework's fast path: structural checks, no timings.

* tf2: no retracing. 20 PETS frames of different content (and frames of another size) through ``detect()``
  build no new ``FuncGraph`` (every trace of a ``tf.function`` builds one); a positive control shows the
  counter does see a function that retraces per frame.
* tf1: one Session, the four OD API output tensors fetched and nothing else, the frame fed as one contiguous,
  aligned uint8 RGB array that Session.run uses as it is (no float copy, no copy inside the timed call),
  ``--threads`` reaches the session config.
* torch: the forward pass runs under ``inference_mode`` with every parameter on the one chosen device, the
  only host transfer per frame is one ``.cpu()`` of the result (no ``.item()``/``.tolist()``), ``--threads``
  sets ``torch.get_num_threads()``.
* opencv: exactly one ``blobFromImage`` per frame, the backend/target in effect recorded.
* every backend (stage attribution): preprocess hands infer an input in the framework's dtype, layout,
  contiguity and device, equal to what a framework-only loop feeds, and infer's median stays near that
  loop's, measured interleaved in one process (a generous bound; benchmarks/ reports the ratio).
(ONNX Runtime's and OpenCV's thread settings are checked in their own backend tests.)
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from harness.core.detector import DetectorConfig
from harness.core.registry import create_detector
from tests.conftest import requires_cv2, requires_tf, requires_torch

N_FRAMES = 20


@pytest.fixture(scope="module")
def pets_frames(pets_video: Path) -> list[np.ndarray]:
    """20 consecutive PETS frames: same shape, different content (people move)."""
    from harness.data.video import open_source

    frames = [f.image for f in open_source(pets_video).frames(limit=N_FRAMES)]
    assert len(frames) == N_FRAMES
    assert not np.array_equal(frames[0], frames[-1])
    return frames


# tf2 --------------------------------------------------------------------------------------------------------

class TraceCounter:
    """Counts ``FuncGraph`` constructions: each trace (or retrace) of a tf.function builds exactly one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tensorflow.python.framework import func_graph

        self.count = 0
        original = func_graph.FuncGraph.__init__

        def counting_init(graph: Any, *args: Any, **kwargs: Any) -> None:
            self.count += 1
            original(graph, *args, **kwargs)

        monkeypatch.setattr(func_graph.FuncGraph, "__init__", counting_init)


@requires_tf
def test_trace_counter_sees_a_function_that_retraces_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the usual bug (a Python value that changes per frame reaching a tf.function) is counted."""
    import tensorflow as tf

    counter = TraceCounter(monkeypatch)

    @tf.function
    def scaled(image: Any, frame_index: int) -> Any:
        return tf.cast(image, tf.float32) * float(frame_index)

    image = tf.zeros([1, 8, 8, 3], tf.uint8)
    for k in range(5):
        scaled(image, k)
    assert counter.count == 5


@requires_tf
def test_tf2_does_not_retrace_on_frames_of_varying_content(pets_frames: list[np.ndarray],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    from harness.data.preprocess import shared_resize

    det = create_detector("tf2", DetectorConfig())
    det.load()
    try:
        assert isinstance(det._fn, tf.types.experimental.ConcreteFunction)
        shared = [shared_resize(f, det.input_size) for f in pets_frames]
        det.detect(shared[0])  # anything lazy happens here, before counting
        counter = TraceCounter(monkeypatch)
        n_boxes = [len(det.detect(f)[0].filtered(min_score=0.3)) for f in shared]
        assert counter.count == 0, f"{counter.count} traces over {N_FRAMES} frames of one shape"
        # the native 768x576 frames: the reference signature takes any H, W without a new trace
        for f in pets_frames[:3]:
            det.detect(f)
        assert counter.count == 0, "a frame of another size retraced"
    finally:
        det.close()
    assert sum(n_boxes) > N_FRAMES  # the frames really were run (PETS has several people per frame)


# tf1 --------------------------------------------------------------------------------------------------------

@requires_tf
def test_tf1_fetches_only_the_four_outputs_and_feeds_a_ready_uint8_array(pets_frames: list[np.ndarray]) -> None:
    """The fed array is one TensorFlow uses as it is: C-contiguous (a reversed-channel view made Session.run
    copy it, 5-7 % of its time, charged to inference) and aligned (TF_NewTensor copies misaligned buffers);
    infer hands Session.run that very object."""
    from harness.data.preprocess import is_aligned

    det = create_detector("tf1", DetectorConfig(threads=1))
    det.load()
    try:
        assert sorted(t.name for t in det._fetches) == sorted(
            ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"])
        assert det._sess._config.intra_op_parallelism_threads == 1
        session = det._sess
        frame = pets_frames[0]
        fed = det.preprocess(frame)
        assert fed.dtype == np.uint8 == det._input.dtype.as_numpy_dtype and fed.shape == (1, *frame.shape)
        assert fed.flags.c_contiguous, "a strided view: Session.run would copy it inside the timed call"
        assert is_aligned(fed), "misaligned: TensorFlow would copy it inside the timed call"
        assert np.array_equal(fed[0], frame[:, :, ::-1])

        class FeedSpy:
            def __init__(self) -> None:
                self.feeds: list[dict] = []

            def run(self, fetches: Any, feed_dict: dict) -> Any:
                self.feeds.append(feed_dict)
                return session.run(fetches, feed_dict=feed_dict)

        spy = FeedSpy()
        det._sess = spy
        raw = det.infer(fed)
        det._sess = session
        assert len(raw) == 4
        assert len(spy.feeds) == 1 and spy.feeds[0][det._input] is fed  # nothing made in between
        for f in pets_frames[1:5]:
            det.detect(f)
        assert det._sess is session  # one Session for the whole job
    finally:
        det.close()


# torch ------------------------------------------------------------------------------------------------------

@pytest.fixture()
def restore_torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@requires_torch
def test_torch_stays_on_one_device_in_inference_mode_with_one_transfer_per_frame(
    pets_frames: list[np.ndarray], restore_torch_threads: None,
) -> None:
    import torch
    from torch.overrides import TorchFunctionMode

    class HostTransfers(TorchFunctionMode):
        """Counts the tensor calls that move data to the host or sync on it."""

        NAMES = ("cpu", "numpy", "item", "tolist", "__bool__", "__int__", "__float__")

        def __init__(self) -> None:
            super().__init__()
            self.calls: Counter[str] = Counter()

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = getattr(func, "__name__", "")
            if name in self.NAMES:
                self.calls[name] += 1
            return func(*args, **(kwargs or {}))

    threads = 1 if torch.get_num_threads() != 1 else 2
    det = create_detector("torch", DetectorConfig(threads=threads))
    det.load()
    try:
        assert torch.get_num_threads() == threads
        seen: list[tuple[bool, set[str]]] = []
        hook = det.model.register_forward_hook(
            lambda m, i, o: seen.append((torch.is_inference_mode_enabled(), {str(p.device) for p in m.parameters()})))
        from harness.data.preprocess import shared_resize

        spy = HostTransfers()
        for f in pets_frames[:5]:
            inputs = det.preprocess(shared_resize(f, det.input_size))
            with spy:
                out = det.infer(inputs)
            assert isinstance(out, np.ndarray) and out.shape[1] == 6
        hook.remove()
        assert seen == [(True, {str(det.device)})] * 5
        assert {str(p.device) for p in det.model.parameters()} == {str(det.device)}
        # per frame: one .cpu() of the [K, 6] result and its .numpy(), nothing else reaching the host
        assert spy.calls == Counter({"cpu": 5, "numpy": 5}), spy.calls
    finally:
        det.close()


# opencv -----------------------------------------------------------------------------------------------------

@requires_cv2
def test_opencv_makes_one_blob_per_frame_on_the_chosen_backend(pets_frames: list[np.ndarray],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    det = create_detector("opencv", DetectorConfig())
    det.load()
    try:
        blobs = Counter[str]()
        original = cv2.dnn.blobFromImage

        def counting_blob(*args: Any, **kwargs: Any) -> Any:
            blobs["n"] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cv2.dnn, "blobFromImage", counting_blob)
        for f in pets_frames[:5]:
            det.detect(f)
        assert blobs["n"] == 5
        d = det.describe()
        assert d["backend_target"]["target"] == "cpu" and d["backend_target"]["backend"] in ("default", "opencv")
        assert d["threads"] == {"threads": cv2.getNumThreads()}
        assert "target=cpu" in det.placement().evidence
    finally:
        det.close()


# stage attribution ------------------------------------------------------------------------------------------

STAGE_BACKENDS = [
    ("tf1", None), ("tf2", None), ("onnxruntime", None), ("opencv", None),
    ("tflite", "tflite-coco-ssd-mobilenet-v1-quant"), ("torch", None),
]
#: generous on purpose (two shared cores, 20 samples a side): the real ratio is the benchmark's to report
MEDIAN_RATIO_BOUND = 1.5
STAGE_FRAMES = 10


def _assert_ready(backend: str, det: Any, x: Any) -> None:
    """``x`` (what preprocess made) is in the framework's own dtype, layout, contiguity and device."""
    from harness.data.preprocess import is_aligned

    if backend == "tf1":
        assert x.dtype == det._input.dtype.as_numpy_dtype and x.flags.c_contiguous and is_aligned(x)
    elif backend == "tf2":
        assert x.dtype == det._input_spec.dtype and det._input_spec.is_compatible_with(x)
        assert x.device.endswith(det._device.strip("/").replace("/", "")), x.device
    elif backend == "onnxruntime":
        meta = det._session.get_inputs()[0]
        assert x.flags.c_contiguous and x.dtype == det._dtype and meta.type == "tensor(uint8)"
        assert all(not isinstance(d, int) or d == n for d, n in zip(meta.shape, x.shape)), (meta.shape, x.shape)
    elif backend == "opencv":
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (1, 3, *det.spec.size[::-1])
    elif backend == "tflite":
        assert x.flags.c_contiguous and x.dtype == det._input["dtype"] and x.shape == tuple(det._input["shape"])
    elif backend == "torch":
        import torch

        fmt = torch.channels_last if det._channels_last else torch.contiguous_format
        assert x.device == det.device and x.dtype == torch.float32 and x.is_contiguous(memory_format=fmt)


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


@pytest.mark.parametrize(("backend", "model"), STAGE_BACKENDS, ids=[b for b, _ in STAGE_BACKENDS])
def test_infer_holds_only_the_framework_call_on_a_ready_input(backend: str, model: str | None,
                                                              pets_frames: list[np.ndarray]) -> None:
    """Stage attribution, per backend: preprocess leaves the framework nothing to convert (structure, and the
    very values a framework-only loop feeds), and the harness's infer median stays near that loop's on its own
    ready inputs, interleaved in this process (benchmarks/bare_loops.py; benchmarks/ reports the ratio)."""
    import importlib.util

    from benchmarks.bare_loops import bare_call, ready_input
    from harness.data.preprocess import shared_resize
    from harness.core.registry import backend_class

    cls = backend_class(backend)
    if cls.missing_modules() or (backend == "onnxruntime" and importlib.util.find_spec("tf2onnx") is None):
        pytest.skip(f"{backend} is not installed")
    det = cls(DetectorConfig(model=model))
    det.load()
    try:
        frames = [shared_resize(f, det.input_size) for f in pets_frames[:STAGE_FRAMES]]
        ready = [ready_input(backend, det, f) for f in frames]
        for f, r in zip(frames[:3], ready[:3]):
            x = det.preprocess(f)
            _assert_ready(backend, det, x)
            np.testing.assert_allclose(_as_numpy(x), _as_numpy(r), atol=1e-6)  # the same input, made by the adapter
        bare = bare_call(backend, det)
        for f, r in zip(frames[:3], ready[:3]):  # warm-up, both sides
            det.detect(f)
            bare(r)
        clock = time.perf_counter_ns
        harness_ns: list[int] = []
        bare_ns: list[int] = []
        for k in range(2 * len(frames)):
            f, r = frames[k % len(frames)], ready[k % len(frames)]
            for side in (("h", "b") if k % 2 == 0 else ("b", "h")):  # ABBA
                if side == "h":
                    harness_ns.append(det.detect(f)[1].infer_ns)
                else:
                    t0 = clock()
                    bare(r)
                    bare_ns.append(clock() - t0)
    finally:
        det.close()
    ratio = float(np.median(harness_ns)) / float(np.median(bare_ns))
    print(f"{backend}: harness infer median {np.median(harness_ns) / 1e6:.2f} ms, framework-only loop "
          f"{np.median(bare_ns) / 1e6:.2f} ms, ratio {ratio:.3f} ({len(harness_ns)} samples a side)")
    assert ratio <= MEDIAN_RATIO_BOUND
