"""Toyota Smarthome Untrimmed (TSU) JSON: `smarthome_{CS,CV}_51.json` with `Action_list`.

Unlike MultiTHUMOS, TSU writes durations and action bounds in frames, and numbers its 51 classes
from 0. The frame rate is in neither the files nor the repository's README, so it is a
parameter; TSU_FPS is 20 because the files and the dataset paper agree on it: the mean duration
is 25,018 frames and the paper describes videos of 21 minutes on average (25,018 frames over
1,260 s is 19.9 fps; at 30 fps the mean would be 14 minutes).
"""

from __future__ import annotations

from pathlib import Path

from datamodules.annotation_formats.actions_json import read_actions_json
from datamodules.annotation_formats.common import numbered_vocabulary
from datamodules.annotations import AnnotationSet

TSU_FPS = 20.0
FIRST_CLASS = 0


def read_tsu(
    path: str | Path, action_list: str | Path | None = None, fps: float = TSU_FPS
) -> AnnotationSet:
    """Read a TSU split file; frames become seconds at `fps`, class numbers 0-50 become names.

    `action_list` defaults to the `Action_list` file next to the JSON (`0<TAB>Enter` lines), as
    the Toyota Smarthome repository ships them together.
    """
    path = Path(path)
    vocabulary = numbered_vocabulary(
        Path(action_list) if action_list is not None else path.parent / "Action_list",
        FIRST_CLASS,
        "put TSU's Action_list next to the JSON, or pass action_list=",
    )
    return read_actions_json(path, vocabulary, fps=fps)
