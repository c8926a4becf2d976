"""From files on disk to a validated Project: load (merge, interpolate) -> schema -> typed model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hypr.compose import schema
from hypr.compose.load import load, project_name
from hypr.compose.model import Project, build_project


def load_project(
    files: Sequence[str], *, name: str | None, cwd: Path, environ: Mapping[str, str],
    warn: Callable[[str], None] = lambda message: None, schema_file: Path | None = None,
) -> Project:  # fmt: skip
    """Keys hypr ignores are reported through `warn` at once, so they are seen even when the project is refused."""
    spec = schema.load_schema(schema_file)
    source = load(files, cwd, environ, lambda path, config: schema.validate(config, spec, str(path)))
    for message in schema.unsupported_keys(source.config):
        warn(message)
    return build_project(
        source.config, project_name(name, source), working_dir=source.working_dir, files=source.files,
        environment=source.environment,
    )  # fmt: skip
