"""The project itself: version constraints, the security scan, packaging, the test tiers, the GPU check
script and the drift check."""
