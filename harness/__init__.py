"""A framework-agnostic detector comparison harness.

Importing ``harness`` imports no ML framework: backends load TensorFlow, PyTorch or OpenCV lazily.
"""

from harness.core.converter import Converter
from harness.core.detections import Detections, convert_boxes
from harness.core.detector import Detector, DetectorConfig, Placement, StageTimes

__all__ = ["Converter", "Detections", "Detector", "DetectorConfig", "Placement", "StageTimes", "convert_boxes"]
__version__ = "0.1.0"
