"""How environments are named: the rule every ``--env`` value and ``[envs.NAME]`` table is checked against, and
the two names no environment can take.

It lives in the core, apart from the environment machinery (:mod:`harness.envs`), because a job's settings
are checked against it where they enter, before anything about environments is loaded.
"""

from __future__ import annotations

import re

#: the running interpreter's environment: never built, never removed
DEFAULT_ENV = "default"
#: not an environment but a choice a job can name (``env = "gpu-layout"``): for each backend, its GPU layout
#: environment (tf-gpu, torch-gpu, ort-gpu) when that one is built for this harness, else the default one
#: (harness.suites.env_choice); reserved so that no environment can take the name
GPU_LAYOUT_ENV = "gpu-layout"
RESERVED_NAMES = (DEFAULT_ENV, GPU_LAYOUT_ENV)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")


def is_env_name(name: object) -> bool:
    """Whether ``name`` is spelled like an environment name (defined or not)."""
    return isinstance(name, str) and _NAME.match(name) is not None
