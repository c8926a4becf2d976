"""Desired state in SQLite: the one source of truth the kernel is reconciled against."""

from hypr.state.db import Store

__all__ = ["Store"]
