"""The one error the compose package raises: the message names the file, key or resource at fault."""

from __future__ import annotations

from hypr.errors import InvalidParameter


class ComposeError(InvalidParameter):
    """A compose file or project that cannot be loaded, validated or carried out."""
