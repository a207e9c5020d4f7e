"""Each backend stays on its framework's fast path: structural checks, no timings.

* tf2: no retracing. 20 PETS frames of different content (and frames of another size) through ``detect()``
  build no new ``FuncGraph`` (every trace of a ``tf.function`` builds one); a positive control shows the
  counter does see a function that retraces per frame.
* tf1: one Session, the four OD API output tensors fetched and nothing else, the frame fed as a uint8 view of
  the decoded frame (no float copy, no pixel copy in Python), ``--threads`` reaches the session config.
* torch: the forward pass runs under ``inference_mode`` with every parameter on the one chosen device, the
  only host transfer per frame is one ``.cpu()`` of the result (no ``.item()``/``.tolist()``), ``--threads``
  sets ``torch.get_num_threads()``.
* opencv: exactly one ``blobFromImage`` per frame, the backend/target in effect recorded.
(ONNX Runtime's and OpenCV's thread settings are checked in their own backend tests.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from harness.detector import DetectorConfig
from harness.registry import create_detector
from tests.conftest import requires_cv2, requires_tf, requires_torch

N_FRAMES = 20


@pytest.fixture(scope="module")
def pets_frames(pets_video: Path) -> list[np.ndarray]:
    """20 consecutive PETS frames: same shape, different content (people move)."""
    from harness.video import open_source

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

    from harness.preprocess import shared_resize

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
def test_tf1_fetches_only_the_four_outputs_and_feeds_a_uint8_view(pets_frames: list[np.ndarray]) -> None:
    det = create_detector("tf1", DetectorConfig(threads=1))
    det.load()
    try:
        assert sorted(t.name for t in det._fetches) == sorted(
            ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"])
        assert det._sess._config.intra_op_parallelism_threads == 1
        session = det._sess
        frame = pets_frames[0]
        fed = det.preprocess(frame)
        assert fed.dtype == np.uint8 and fed.shape == (1, *frame.shape)
        assert np.shares_memory(fed, frame), "preprocess copied the frame"
        assert np.array_equal(fed[0], frame[:, :, ::-1])
        raw = det.infer(fed)
        assert len(raw) == 4
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
        from harness.preprocess import shared_resize

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
        assert d["threads"]["now"] == cv2.getNumThreads()
        assert "target=cpu" in det.placement().evidence
    finally:
        det.close()
