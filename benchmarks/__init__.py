"""Benchmarks run on purpose (see README.md here); a package so that tests can reuse bare_loops."""
