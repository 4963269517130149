"""Check a trial's command before launching it: `--print_config` parses it and prints the config.

A misspelt or misplaced key makes crossdistill exit with an error that names the option; a key
that parses but does not reach the config (an `${args}` placed before a `--config` that sets
the same key again) shows up when the printed values are compared with the drawn ones.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import yaml


class CommandError(RuntimeError):
    """A trial command that crossdistill rejects, or whose parameters do not reach the config."""


def dry_run(
    command: Sequence[str], params: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """The resolved config that `command` would run with; CommandError naming the bad keys."""
    done = subprocess.run(
        [*command, "--print_config"], capture_output=True, text=True, env=dict(env)
    )
    if done.returncode != 0:
        error = _error_part(done.stderr)
        named = [name for name in params if _mentions(error, name)]
        keys = f" (it names: {', '.join(named)})" if named else ""
        raise CommandError(
            f"the command was rejected, exit status {done.returncode}{keys}:\n{error}"
        )
    config = yaml.safe_load(done.stdout)
    if not isinstance(config, dict):
        raise CommandError(f"--print_config printed no config:\n{done.stdout[-2000:]}")
    for name, value in params.items():
        found, resolved = lookup(config, name)
        if not found:
            raise CommandError(f"parameter {name} is not a key of the resolved config")
        if not _same(resolved, value):
            raise CommandError(
                f"parameter {name}={value!r} does not reach the config, which has {resolved!r} "
                "(is ${args} before a --config that sets it again?)"
            )
    return config


def lookup(config: Any, dotted: str) -> tuple[bool, Any]:
    """`config[a][b][0]...` for `a.b.0...` (list items by index)."""
    node = config
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _same(resolved: Any, drawn: Any) -> bool:
    if isinstance(drawn, bool) or isinstance(resolved, bool):
        return resolved == drawn
    if isinstance(drawn, int | float) and isinstance(resolved, int | float):
        return math.isclose(resolved, drawn, rel_tol=1e-9, abs_tol=1e-12)
    return resolved == drawn or str(resolved) == str(drawn)


def _error_part(stderr: str) -> str:
    """The error message without the usage text before it."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return "\n".join(lines[-30:])
    return "\n".join(lines[start : start + 30])


def _mentions(error: str, name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return name in error or f"'{last}'" in error or f'"{last}"' in error
