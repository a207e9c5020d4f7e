"""Errors a user can act on: each names what went wrong and how to fix it."""

from __future__ import annotations

import difflib
from typing import Iterable


class HarnessError(Exception):
    """An error that explains itself: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")


class ModelError(HarnessError):
    """A model file is missing, of the wrong kind, or its outputs don't fit the expected convention."""


class SourceError(HarnessError):
    """A video or image source is missing, empty or unreadable."""


class BackendUnavailable(HarnessError):
    """A backend's framework is not installed or cannot be imported."""


class DeviceFallback(HarnessError):
    """A GPU was requested but the work ran on the CPU (raised only under --strict-device)."""


class AssetError(HarnessError):
    """A named asset cannot be resolved, downloaded or verified."""


class EnvError(HarnessError):
    """A Python environment cannot be built, found or used to run a job (see :mod:`harness.envs`)."""


class ProtocolMismatch(EnvError):
    """A worker in another environment speaks another version of the parent-worker protocol."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
