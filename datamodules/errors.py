"""Telling a user's mistake from a bug: config parsers (jsonargparse) wrap the errors our
classes raise for bad input in their own, so the commands look down the chain of causes for one
of ours and print only its message, which names the file and the fix."""

from __future__ import annotations

import os

DEBUG_ENV = "CROSSDISTILL_DEBUG"
"""Set (by `crossdistill --debug ...`) to get the traceback of a user error as well."""


class ConfigError(ValueError):
    """A config value that cannot work (a misspelt name, a reserved one); the message names the
    key and the fix."""


def find_cause(err: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` in `err`'s chain of causes (`err` itself included)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def debugging() -> bool:
    return bool(os.environ.get(DEBUG_ENV))
