"""The frozen teachers of a distillation run, in one package:

- `loading`: check a teacher file, load a TeacherModule checkpoint, freeze it; the
  `TeacherMismatchError` checks (class order, inputs the data loads);
- `provider`: the config objects of `teacher_source` (`Online`, `Cached`) and the
  `TeacherProvider` they make, whose `teacher_outputs(batch)` a DistillModule trains from;
- `cache`: the teacher cache (key, pack/unpack, build, open and check);
- `whole_videos`: the whole-video pass shared by `extract-features` and `cache-teachers`.

Nothing here imports `lightning_modules.distill`: the student uses the teachers, not the other
way round.
"""

from lightning_modules.teachers.loading import (
    TeacherMismatchError,
    check_teacher_file,
    load_frozen_teacher,
    load_teacher_module,
    teacher_modalities,
)
from lightning_modules.teachers.provider import (
    Cached,
    CachedTeachers,
    Online,
    OnlineTeachers,
    TeacherProvider,
    TeacherSource,
)

__all__ = [
    "Cached",
    "CachedTeachers",
    "Online",
    "OnlineTeachers",
    "TeacherMismatchError",
    "TeacherProvider",
    "TeacherSource",
    "check_teacher_file",
    "load_frozen_teacher",
    "load_teacher_module",
    "teacher_modalities",
]
