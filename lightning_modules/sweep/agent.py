"""A trial's command line, built exactly as `wandb agent` builds it.

The agent replaces `${envvar:NAME}` inside items, then each item that is a whole `${macro}` by a
list of words: `${env}` (`/usr/bin/env`), `${interpreter}` (`python`), `${program}` (the sweep's
`program`), `${args}` (`--name=value`), `${args_no_equals}` (`--name value`),
`${args_no_hyphens}` (`name=value`), `${args_no_boolean_flags}` (`--name` for true, nothing for
false), `${args_json}` (one JSON word), `${args_json_file}` (a file holding that JSON),
`${args_append_hydra}` (`+name=value`), `${args_override_hydra}` (`++name=value`); an unknown
macro becomes nothing. Values are formatted by W&B's own function, which the agent calls too.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]


def agent_command(
    sweep: Mapping[str, Any], params: Mapping[str, Any], args_json_file: Path
) -> list[str]:
    """The words the agent would run for `params` (`args_json_file` is written if used)."""
    template = [str(word) for word in sweep.get("command") or DEFAULT_COMMAND]
    template = create_sweep_command(template)
    words = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    if "${program}" in template and not sweep.get("program"):
        raise ValueError("the sweep's command uses ${program} but the file has no `program`")
    words["program"] = [sweep.get("program")]
    words["interpreter"] = ["python"]
    words["args_json_file"] = [str(args_json_file)]
    if platform.system() != "Windows":
        words["env"] = ["/usr/bin/env"]
    if "${args_json_file}" in template:
        args_json_file.parent.mkdir(parents=True, exist_ok=True)
        args_json_file.write_text(words["args_json"][0])
    command: list[str] = []
    for word in template:
        if word.startswith("${") and word.endswith("}"):
            command += words.get(word[2:-1]) or []
        else:
            command.append(word)
    return command
