"""The lock files' header: one format, written by scripts/lock_deps.py, read by profiles.py.

A lock starts with a title line, then one `# key: value` line per field, then the pins:

    # runpod-slim lock
    # handler: tts-piper          the env (a catalog Env's name)
    # variant: none               a torch build (catalog.TORCH_BUILDS) or none
    # python: 3.11
    # platform: x86_64-manylinux_2_28
    # hashed: true                installed with hashes required, no resolution
    # index: https://...          only where torch comes from PyTorch's own index
    # generated-by: scripts/lock-deps.sh from bootstrap/requirements/<env>.in
"""

from __future__ import annotations

from dataclasses import dataclass

TITLE = "# runpod-slim lock"
KEYS = ("handler", "variant", "python", "platform", "hashed", "index", "generated-by")


@dataclass(frozen=True)
class LockHeader:
    """What a lock file says it is for."""

    handler: str  # the env's name (kept as "handler": the locks written so far say so)
    variant: str
    python: str
    platform: str
    hashed: bool
    index: str | None = None  # the index torch comes from, given priority at install time

    def fields(self) -> list[tuple[str, str]]:
        """The header's (key, value) pairs, in the documented order."""
        pairs = [
            ("handler", self.handler),
            ("variant", self.variant),
            ("python", self.python),
            ("platform", self.platform),
            ("hashed", "true" if self.hashed else "false"),
        ]
        if self.index:
            pairs.append(("index", self.index))
        pairs.append(
            ("generated-by", f"scripts/lock-deps.sh from bootstrap/requirements/{self.handler}.in")
        )
        return pairs

    def render(self) -> str:
        """The header's text, ending in a newline: what goes before the pins."""
        return TITLE + "\n" + "".join(f"# {key}: {value}\n" for key, value in self.fields())


def read_fields(text: str) -> dict[str, str]:
    """The `# key: value` lines at the top of a lock's text (the title has no colon)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def read_header(text: str, *, handler: str, variant: str, python: str) -> LockHeader:
    """A lock's header; a field it lacks falls back to what its file name says."""
    fields = read_fields(text)
    return LockHeader(
        handler=fields.get("handler", handler),
        variant=fields.get("variant", variant),
        python=fields.get("python", python),
        platform=fields.get("platform", "unknown"),
        hashed=fields.get("hashed", "false").lower() == "true",
        index=fields.get("index"),
    )
