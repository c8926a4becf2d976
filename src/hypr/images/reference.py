"""Docker's image references, parsed and normalised as the docker CLI and dockerd do (distribution/reference).

    nginx                      -> docker.io/library/nginx:latest
    user/app:1.2               -> docker.io/user/app:1.2
    localhost:5000/x           -> localhost:5000/x:latest
    127.0.0.1:5000/a/b@sha256:… -> by digest (a tag given with a digest is kept for display but the digest wins)

Pure: no I/O. Errors are Docker's `invalid reference format` messages (HTTP 400).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hypr.errors import InvalidParameter

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = ("index.docker.io", "registry-1.docker.io")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"(?:localhost|\[[0-9a-fA-F:.]+\]|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)"
    r"(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
NAME_MAX = 255


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"
    repository: str  # "library/nginx"
    tag: str | None  # None with a digest and no tag
    digest: str | None  # "sha256:<64 hex>"

    @property
    def name(self) -> str:
        """registry/repository, the fully qualified name (what skopeo is given)."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """What docker shows: `nginx`, `user/app`, `localhost:5000/x`."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return self.name

    @property
    def tagged(self) -> str:
        """`nginx:latest`: the familiar name with its tag (the tag a pull by name creates)."""
        return f"{self.familiar_name}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def remote(self) -> str:
        """What is asked of the registry: `name@digest` when there is a digest (a tag beside it is only shown, as
        dockerd does: the docker CLI sends `name:tag@digest` as the name and the digest), else `name:tag`."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag or DEFAULT_TAG}"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def with_registry(self, registry: str) -> Reference:
        return Reference(registry, self.repository, self.tag, self.digest)

    @property
    def is_loopback(self) -> bool:
        """Docker speaks plain HTTP to registries on 127.0.0.0/8 and ::1 (and `localhost`)."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry
        host = host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _invalid(text: str) -> InvalidParameter:
    return InvalidParameter(f"invalid reference format: {text!r}")


def parse(text: str) -> Reference:
    """Parse and normalise. Raises InvalidParameter with Docker's wording."""
    if not text or len(text) > NAME_MAX + 200 or any(c.isspace() for c in text):
        raise _invalid(text)
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise _invalid(text)
    tag: str | None = None
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, _, tag = remainder.rpartition(":")
        if not _TAG.match(tag):
            raise _invalid(text)
    first, slash, rest = remainder.partition("/")
    if slash and (("." in first or ":" in first or first == "localhost") or first.startswith("[")):
        registry, path = first, rest
        if not _DOMAIN.match(registry):
            raise _invalid(text)
    else:
        registry, path = DEFAULT_REGISTRY, remainder
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if path.lower() != path and all(_COMPONENT.match(c) for c in path.lower().split("/")):
        raise InvalidParameter(f"invalid reference format: repository name ({path}) must be lowercase")
    components = path.split("/")
    if not path or not all(_COMPONENT.match(c) for c in components):
        raise _invalid(text)
    if registry == DEFAULT_REGISTRY and len(components) == 1:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > NAME_MAX:
        raise InvalidParameter(f"invalid reference format: repository name must not be more than {NAME_MAX} characters")
    return Reference(registry, path, tag if tag else (None if digest else DEFAULT_TAG), digest or None)


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))
