"""The MLServer model class that hosts one harness backend: a real :class:`~harness.core.detector.Detector`, loaded
through the registry exactly as ``harness run`` loads it (backend, model, device, precision, threads, options).

MLServer speaks the v2 protocol (metadata, ready, infer, errors as ``{"error": ...}``); this class only turns
a v2 request into frames, runs the backend's three stages, and answers the canonical detections with the
server's own stage times as response parameters. With ``--workers N`` MLServer runs N copies of it, each in
its own process with its own backend instance.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput

from harness.core.detector import Detector, DetectorConfig
from harness.serving.protocol import (FRAMES_INPUT, IMAGE_INPUT, BadRequest, decode_images, pack_detections,
                                      unpack_frames)

_DATATYPES = {np.float32: "FP32", np.int64: "INT64", np.int32: "INT32"}


def detector_config(extra: dict[str, Any]) -> DetectorConfig:
    """The job's :class:`DetectorConfig` from the model settings' ``parameters.extra`` (``harness serve``'s flags)."""
    return DetectorConfig(model=extra.get("model"), device=extra.get("device", "cpu"), threads=extra.get("threads"),
                          options=dict(extra.get("options") or {}), precision=extra.get("precision"))


class HarnessModel(MLModel):
    """One backend instance behind the v2 endpoint."""

    detector: Detector

    async def load(self) -> bool:
        from harness.core.registry import backend_class

        extra = dict(self.settings.parameters.extra or {}) if self.settings.parameters else {}
        cls = backend_class(extra["backend"])
        config = detector_config(extra)
        cls.validate_options(config.options)
        self.detector = cls(config)
        self.detector.load()
        # one frame through the stages so that the first request is not the one that pays for lazy init
        self.detector.detect(np.zeros((300, 300, 3), np.uint8))
        self._placement = self.detector.placement()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            return self._predict(payload)
        except BadRequest as exc:
            raise InferenceError(str(exc)) from None

    def _predict(self, payload: InferenceRequest) -> InferenceResponse:
        t0 = time.perf_counter_ns()
        frames = self._frames(payload)
        decode_ns = time.perf_counter_ns() - t0
        pre = infer = post = 0
        results = []
        for frame in frames:
            dets, stages = self.detector.detect(frame)
            results.append(dets)
            pre, infer, post = pre + stages.pre_ns, infer + stages.infer_ns, post + stages.post_ns
        outputs = [ResponseOutput(name=name, shape=list(arr.shape), datatype=_DATATYPES[arr.dtype.type],
                                  data=arr.reshape(-1).tolist())
                   for name, arr in pack_detections(results).items()]
        # the stage times twice: milliseconds (floats, read by people over REST) and nanoseconds (integers:
        # MLServer's gRPC side carries only bool, int64 and string parameters and drops floats)
        params = Parameters(server_decode_ms=decode_ns / 1e6, server_pre_ms=pre / 1e6, server_infer_ms=infer / 1e6,
                            server_post_ms=post / 1e6, server_decode_ns=decode_ns, server_pre_ns=pre,
                            server_infer_ns=infer, server_post_ns=post, backend=self.detector.name,
                            label_space=results[0].label_space if results else self.detector.label_map.space,
                            placement=self._placement.actual, placement_evidence=self._placement.evidence)
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=outputs, parameters=params)

    def _frames(self, payload: InferenceRequest) -> list[np.ndarray]:
        by_name = {inp.name: inp for inp in payload.inputs}
        unknown = sorted(set(by_name) - {IMAGE_INPUT, FRAMES_INPUT})
        if unknown or len(by_name) != 1:
            raise BadRequest(f"send exactly one input, {IMAGE_INPUT!r} (BYTES [N]: base64 JPEG/PNG) or "
                             f"{FRAMES_INPUT!r} (UINT8 [N,H,W,3] RGB); got {sorted(by_name) or 'none'}")
        if IMAGE_INPUT in by_name:
            inp = by_name[IMAGE_INPUT]
            if inp.datatype != "BYTES":
                raise BadRequest(f"input {IMAGE_INPUT!r} must be BYTES, got {inp.datatype}")
            data = inp.data.root
            elements = data if isinstance(data, list) else [data]
            if len(elements) != int(np.prod(inp.shape or [0])):
                raise BadRequest(f"input {IMAGE_INPUT!r}: {len(elements)} elements for shape {inp.shape}")
            return decode_images(elements)
        inp = by_name[FRAMES_INPUT]
        return unpack_frames(inp.data.root, inp.shape, inp.datatype)


__all__ = ["HarnessModel", "MLServerError", "detector_config"]
