"""`hypr compose`: load compose files (compose-spec), plan a project, and drive hyprd's API to carry it out.

load.py     discovery, YAML, `-f` merge, `${VAR}` interpolation, `.env`, project name       (pure but file reads)
schema.py   validation against the compose-spec JSON schema; unsupported keys -> warnings (pure)
model.py    the typed project: networks and services as frozen values, built from the validated mapping (pure)
plan.py     project + what the daemon has -> the networks and workloads to create, keep, recreate (pure)
apply.py    carries a plan out through `hypr.client.Client`, reporting progress
"""

from hypr.compose.errors import ComposeError

__all__ = ["ComposeError"]
