"""Unit tests: the harness's logic on fabricated inputs and small real ones (detections, metrics, suites, flags,
plan checks, validity, the doctor's rules, the asset layer against local servers)."""
