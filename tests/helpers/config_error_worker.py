"""A worker whose configuration can never work: it exits with the config-error code."""

from workers.runtime import WorkerRuntime

WorkerRuntime.from_stdin().fail_config("config_error_worker: setting 'x' is wrong; fix it")
