"""The data types every other layer shares: detections, labels, the detector interface and registry, jobs and
their settings, device and precision, errors.

The bottom layer: it imports nothing from the layers above it (data, measure, execution, suites, report,
results, serving, commands), which tests/test_layers.py checks, so a value type can be read, tested and
reused without the machinery that runs jobs.
"""
