"""How jobs run: the executors (in-process, a worker process per job, Ray), the worker and its protocol, the
runner that measures one job, the scenarios that feed it frames, and the guards around a job's process."""
