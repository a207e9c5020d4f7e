"""The torch backend's three timed stages for a family net, kept apart from the backend's other model kinds.

* preprocess: ``cv2.resize`` of the BGR frame to the input size (the family's PredictionTransform resizes
  the uint8 image the same way), upload as uint8, then on the device: HWC -> CHW, BGR -> RGB, float,
  ``(x - mean) / std``.
* infer: the network only (backbone, heads, softmax, box decoding against the priors), then the scores and
  boxes copied to the host.
* postprocess: the family Predictor's per-class hard NMS (numpy), boxes scaled to the frame, class indices
  mapped to the label space.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from backends.torch_family.labels import label_map_for
from backends.torch_family.loader import FamilyModel
from backends.torch_family.nms import predict
from backends.torch_family.preprocess import resize
from harness.core.detections import Detections
from harness.core.labels import LabelMap

#: the Predictor's default ``filter_threshold``: class scores at or below it are no candidates
PROB_THRESHOLD = 0.01


class FamilyStages:
    def __init__(self, model: FamilyModel, torch: Any, device: Any) -> None:
        self.model = model
        self.torch = torch
        self.device = device
        self.label_map: LabelMap = label_map_for(model.labels)
        self._mean = torch.tensor(model.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(model.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def preprocess_batch(self, frames_bgr: Sequence[np.ndarray]) -> Any:
        torch = self.torch
        resized = np.stack([resize(f, self.model.input_size) for f in frames_bgr])
        frames = torch.from_numpy(resized).to(self.device, non_blocking=True)
        images = frames.permute(0, 3, 1, 2).flip(1).float()  # NHWC BGR uint8 -> NCHW RGB float
        out = ((images - self._mean) / self._std).contiguous()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out

    def infer(self, network: Callable[[Any], Any], inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            scores, boxes = network(inputs)
            return scores.float().cpu().numpy(), boxes.float().cpu().numpy()

    def postprocess_batch(self, raw: tuple[np.ndarray, np.ndarray],
                          frame_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        scores, boxes = raw
        out = []
        for i, size in enumerate(frame_sizes):
            b, p, c = predict(scores[i], boxes[i], iou_threshold=self.model.iou_threshold,
                              prob_threshold=PROB_THRESHOLD, candidate_size=self.model.candidate_size)
            out.append(Detections.from_boxes(b, p, self.label_map.apply(c), size, fmt="xyxy", normalized=True,
                                             label_space=self.label_map.space))
        return out

    def details(self) -> dict[str, Any]:
        m = self.model
        return {"family_arch": m.arch, "classes": m.labels, "input_size": list(m.input_size),
                "postprocess": {"nms": "per-class hard NMS (the family's Predictor)", "iou_threshold": m.iou_threshold,
                                "candidate_size": m.candidate_size, "prob_threshold": PROB_THRESHOLD},
                **({"width_mult": m.width_mult} if m.width_mult is not None else {})}
