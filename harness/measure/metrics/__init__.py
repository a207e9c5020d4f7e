"""Latency statistics, accuracy (COCO AP) and cross-backend agreement."""
