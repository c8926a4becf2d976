"""hypr: Docker-compatible networking for microVMs and sandboxes."""

__version__ = "0.1.0"
