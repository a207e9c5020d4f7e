"""What went wrong in a build, in the installer's own words cut to the lines that say it.

uv and pip print a lot; a user needs the resolver's explanation ("there is no version of
opencv-python==0.0.1"), or the fact that the registry could not be reached, and what to do. The full output
stays in the build log, named in the message.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.core.errors import EnvError

_NETWORK = re.compile(
    r"failed to fetch|error sending request|connection refused|connection reset|dns error|"
    r"failed to lookup address|name or service not known|temporary failure in name resolution|"
    r"network is unreachable|no route to host|could not connect|tcp connect error|operation timed out|"
    r"max retries exceeded|newconnectionerror|could not fetch url|proxyerror|ssl: certificate",
    re.IGNORECASE,
)
_RESOLUTION = re.compile(
    r"no solution found|unsatisfiable|could not find a version that satisfies|no matching distribution|"
    r"resolutionimpossible|conflicting dependencies|not found in the package registry",
    re.IGNORECASE,
)
_NOISE = re.compile(r"^(Using Python .* environment at|Resolved \d+ packages|Prepared \d+ packages|"
                    r"Installed \d+ packages|Audited \d+ packages|Building |Built |Downloading |Collecting |"
                    r"\s*(Obtaining|Downloading|Using cached) )")
MAX_LINES = 12
MAX_WIDTH = 300


class CommandFailed(Exception):
    """An installer command exited non-zero; ``output`` is its stdout and stderr together."""

    def __init__(self, command: list[str], returncode: int, output: str) -> None:
        self.command = command
        self.returncode = returncode
        self.output = output
        super().__init__(f"{' '.join(command)} exited with {returncode}")


def useful_lines(output: str, keep: int = MAX_LINES) -> list[str]:
    """The installer's error, without progress noise: from its first ``error``/``ERROR``/``×`` line on, or
    its last lines when it printed none."""
    lines = [ln.rstrip()[:MAX_WIDTH] for ln in output.splitlines() if ln.strip() and not _NOISE.match(ln)]
    start = next((i for i, ln in enumerate(lines)
                  if re.match(r"^\s*(error|ERROR|×|x No solution)", ln)), None)
    chosen = lines[start:] if start is not None else lines[-keep:]
    if len(chosen) > keep:
        chosen = chosen[: keep - 1] + [f"... ({len(chosen) - keep + 1} more lines in the build log)"]
    return chosen


def explain(failure: CommandFailed, env: str, log: Path | None) -> EnvError:
    """One :class:`EnvError` for a failed build step: unreachable registry, unresolvable requirements, or
    anything else, each with the installer's own lines and the fix."""
    text = "\n    ".join(useful_lines(failure.output)) or f"(no output; exit status {failure.returncode})"
    where = f" (full output: {log})" if log else ""
    if _NETWORK.search(failure.output):
        return EnvError(
            f"cannot reach the package registry to build environment {env!r}{where}:\n    {text}",
            "check the network or the index settings (UV_DEFAULT_INDEX / PIP_INDEX_URL, a proxy); or set "
            "HARNESS_OFFLINE=1 to use only environments that are already built",
        )
    if _RESOLUTION.search(failure.output):
        return EnvError(
            f"the requirements of environment {env!r} do not resolve{where}:\n    {text}",
            "change the requirements (a version that exists for this Python and platform, compatible pins) "
            "and run harness env create again",
        )
    return EnvError(f"building environment {env!r} failed: {' '.join(failure.command[:3])} ... exited with "
                    f"{failure.returncode}{where}:\n    {text}",
                    "see the build log; fix the cause and run harness env create again")
