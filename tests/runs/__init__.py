"""Whole runs: the runner and executors (process isolation, Ray), resume, bad input, scenarios, LoadGen,
serving, the default suite and a fresh machine."""
