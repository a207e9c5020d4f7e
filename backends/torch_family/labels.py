"""The family's class names -> the harness's label space (VOC or COCO names to COCO ids; other names keep
their own space). One implementation for every framework, in :mod:`backends._family_decode` (importable
without torch), re-exported here."""

from __future__ import annotations

from backends._family_decode import _BACKGROUND as BACKGROUND_NAMES
from backends._family_decode import label_map_for

__all__ = ["BACKGROUND_NAMES", "label_map_for"]
