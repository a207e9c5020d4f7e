"""Python environments for jobs: each job in the environment it needs, built with uv and cached by content.

Why: frameworks whose CUDA libraries collide (TensorFlow's CUDA 12 wheels, PyTorch's CUDA 13 ones) must
not share a ``site-packages``, and "which OpenCV / TensorFlow version works here, and how fast is each"
needs the versions side by side. A job names an environment (``JobSpec.env``) or an existing interpreter
(``JobSpec.python``); the process executor starts its worker with that interpreter.

One module per concern:

* :mod:`~harness.envs.spec`: :class:`EnvSpec` (name, requirements, Python) and its content key;
* :mod:`~harness.envs.source`: the harness's own source and digest, installed as a wheel (non-editable);
* :mod:`~harness.envs.store`: the folders under the harness cache, the name registry, build records;
* :mod:`~harness.envs.locks`: build and use locks between processes (``fcntl``);
* :mod:`~harness.envs.installers`: uv, else ``venv`` + pip;
* :mod:`~harness.envs.failures`: the installer's errors cut to the lines that explain them;
* :mod:`~harness.envs.builder`: one atomic build, and resolving without installing;
* :mod:`~harness.envs.interpreter`: starting another interpreter cleanly, its hello check, its packages;
* :mod:`~harness.envs.resolve`: :func:`ensure` and the per-run :class:`InterpreterResolver`;
* :mod:`~harness.envs.gpu`: the built-in GPU layout (tf-gpu, torch-gpu, ort-gpu);
* :mod:`~harness.envs.missing`: a framework missing from a job's environment, named with it.

Importing this package imports no ML framework and starts no process.
"""

from harness.envs.gpu import GPU_LAYOUT, gpu_env_for, gpu_specs
from harness.envs.interpreter import Interpreter, check_python, list_packages
from harness.envs.resolve import Ensured, InterpreterResolver, current_key, ensure
from harness.core.env_names import DEFAULT_ENV
from harness.envs.spec import REFERENCE_MODEL, EnvSpec
from harness.envs.store import BuildRecord, EnvState, EnvStore

__all__ = [
    "DEFAULT_ENV", "GPU_LAYOUT", "REFERENCE_MODEL", "BuildRecord", "Ensured", "EnvSpec", "EnvState", "EnvStore",
    "Interpreter", "InterpreterResolver", "check_python", "current_key", "ensure", "gpu_env_for", "gpu_specs",
    "list_packages",
]
