"""The family's ``Predictor`` postprocessing, in numpy: per class (background excluded), the scores above a
threshold, the ``candidate_size`` best, greedy hard NMS (a box is dropped when its IoU with a kept one exceeds
the threshold; IoU with the family's 1e-5 in the denominator), at most ``top_k`` kept per class. Results are
listed by class, then in NMS order, as the Predictor lists them.

One implementation for every framework: it lives in :mod:`backends._family_decode` (importable without torch,
for the ONNX Runtime, OpenVINO and OpenCV backends that run the family's ONNX exports) and is re-exported here.
"""

from __future__ import annotations

from backends._family_decode import hard_nms, predict

__all__ = ["hard_nms", "predict"]
