"""The README's section on flow, frame folders and skeletons: its `crossdistill flow` commands
run, and every config in it builds."""

from __future__ import annotations

import importlib
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lightning_modules.commands import main
from tests.data_helpers import write_videos

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Bringing real data: flow, frame folders, skeletons"


def section() -> str:
    return (REPO_ROOT / "README.md").read_text().split(SECTION)[1].split("\n## ")[0]


def readme_commands(name: str) -> list[list[str]]:
    """The `crossdistill NAME ...` lines of the README (continuations joined)."""
    text = section().replace("\\\n", " ")
    lines = re.findall(rf"^\s*crossdistill {name} (.+)$", text, flags=re.MULTILINE)
    return [shlex.split(line.split("#")[0]) for line in lines]


def test_the_readme_flow_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands("flow")
    assert len(commands) >= 3
    monkeypatch.chdir(tmp_path)
    write_videos(tmp_path / "data" / "my_videos")
    for argv in commands:
        if "raft" in argv:  # the user's weights file; test_flow_command.py runs RAFT
            continue
        assert main(["flow", *argv]) == 0, argv
    flows = sorted(
        str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("flow_x_00001.jpg")
    )
    assert flows and all(os.sep in f for f in flows)
    assert sorted(p.name for p in (tmp_path / "data" / "flow").glob("*.mp4")) == [
        "down.mp4",
        "left.mp4",
    ]


def readme_section_configs() -> list[dict]:
    """Every `{class_path, init_args}` of the YAML blocks of the README's section on flow, frame
    folders and skeletons."""
    found: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "class_path" in node:
                found.append(node)
            for value in node.values():
                walk(value)

    for block in re.findall(r"```yaml\n(.*?)```", section(), flags=re.DOTALL):
        # blocks list alternatives under one key; read each entry on its own
        entries = re.split(r"\n(?=\S)", block.strip())
        for entry in entries:
            walk(yaml.safe_load(entry))
    return found


def test_the_readme_configs_of_the_section_build() -> None:
    configs = readme_section_configs()
    classes = {config["class_path"].rsplit(".", 1)[1] for config in configs}
    assert classes == {"FlowSource", "VideoSource", "KeypointSource", "KeypointGCN"}
    assert len(configs) >= 7
    for config in configs:
        module, name = config["class_path"].rsplit(".", 1)
        built = getattr(importlib.import_module(module), name)(**config["init_args"])
        assert built is not None
