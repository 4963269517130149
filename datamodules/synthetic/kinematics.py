"""Where everything in a synthetic video is at every frame, and which actions happen when.

The actor is a stick figure driven by a few per-frame parameters (root position, rotation,
shoulder/elbow and hip/knee angles, crouch). A timeline alternates idle gaps and body actions;
arm actions run on an independent timeline and may overlap them. Actions are planned against
the actor's state (a walk heads where there is room; an approach needs some distance), so the
labels always describe what the pixels show.

Angles are radians measured from "straight down", positive towards +x, in image coordinates
(x right, y down); `direction(a) = (sin a, cos a)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datamodules.synthetic.actions import ARM_ACTIONS, BODY_ACTIONS

LEFT, RIGHT = 0, 1
SIDE_SIGN = (-1.0, 1.0)


@dataclass(frozen=True)
class ActorShape:
    """Limb lengths in pixels, scaled from the actor's height."""

    height: float

    @property
    def torso(self) -> float:
        return 0.32 * self.height

    @property
    def neck(self) -> float:
        return 0.06 * self.height

    @property
    def head_radius(self) -> float:
        return 0.10 * self.height

    @property
    def upper_arm(self) -> float:
        return 0.17 * self.height

    @property
    def forearm(self) -> float:
        return 0.16 * self.height

    @property
    def thigh(self) -> float:
        return 0.21 * self.height

    @property
    def shin(self) -> float:
        return 0.21 * self.height

    @property
    def limb_width(self) -> float:
        return max(1.5, 0.09 * self.height)

    @property
    def reach(self) -> float:
        """Largest distance of any body point from the hip, whatever the rotation."""
        return max(self.torso + self.neck + 2 * self.head_radius, self.thigh + self.shin) + 1.0


@dataclass
class SceneObject:
    """A distractor object: a category (its shape), a size, a colour and a track."""

    category: str
    size: float
    color: tuple[int, int, int]
    positions: np.ndarray  # (T, 2) centre in pixels


@dataclass
class Trajectory:
    """Everything the renderer and the annotation writers need for one video."""

    shape: ActorShape
    joints: np.ndarray  # (T, K, 2) in pixels, order of actions.JOINTS
    objects: list[SceneObject]
    segments: list[tuple[str, int, int]] = field(default_factory=list)  # label, first, end frame


@dataclass
class _Pose:
    """Per-frame actor parameters, filled action by action."""

    n: int
    root: np.ndarray = field(init=False)  # (T, 2) hip position on the ground
    lift: np.ndarray = field(init=False)  # (T,) upward offset (jumps) in pixels
    drop: np.ndarray = field(init=False)  # (T,) downward offset (squats) in pixels
    rotation: np.ndarray = field(init=False)  # (T,)
    shoulder: np.ndarray = field(init=False)  # (T, 2)
    elbow: np.ndarray = field(init=False)  # (T, 2)
    hip: np.ndarray = field(init=False)  # (T, 2)
    knee: np.ndarray = field(init=False)  # (T, 2)

    def __post_init__(self) -> None:
        n = self.n
        self.root = np.zeros((n, 2))
        self.lift, self.drop, self.rotation = np.zeros(n), np.zeros(n), np.zeros(n)
        sign = np.array(SIDE_SIGN)
        self.shoulder = np.tile(np.radians(15.0) * sign, (n, 1))
        self.elbow = np.tile(np.radians(8.0) * sign, (n, 1))
        self.hip = np.tile(np.radians(9.0) * sign, (n, 1))
        self.knee = np.zeros((n, 2))


def direction(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


class _Planner:
    """Fills a `_Pose` along a timeline of body actions and one of arm actions."""

    def __init__(
        self,
        rng: np.random.Generator,
        n_frames: int,
        size: int,
        fps: float,
        walk_speed: float,
        shape: ActorShape,
        objects: list[SceneObject],
    ) -> None:
        self.rng, self.n, self.fps, self.speed = rng, n_frames, fps, walk_speed
        self.shape, self.objects = shape, objects
        self.size = size
        side_margin = 0.25 * shape.height + 2.0
        self.x_range = (side_margin, size - side_margin)
        top = shape.torso + shape.neck + 2 * shape.head_radius + 0.35 * shape.height + 1.0
        self.y_range = (max(top, 0.45 * size), size - (shape.thigh + shape.shin) - 1.0)
        self.pose = _Pose(n_frames)
        self.min_frames = round(1.5 * fps)
        self.min_walk_frames = round(1.0 * fps)

    def frames(self, low_s: float, high_s: float) -> int:
        return max(1, round(self.rng.uniform(low_s, high_s) * self.fps))

    def plan(self) -> list[tuple[str, int, int]]:
        rng = self.rng
        position = np.array([rng.uniform(*self.x_range), rng.uniform(*self.y_range)])
        segments: list[tuple[str, int, int]] = []
        start = self._idle(0, self.frames(0.5, 3.0), position)
        while start < self.n:
            planned = min(self.frames(2.0, 5.0), self.n - start)
            if planned < self.min_frames:
                self._idle(start, self.n - start, position)
                break
            for label in rng.permutation(BODY_ACTIONS):
                done = getattr(self, f"_{label}")(start, planned, position)
                if done > 0:
                    break
            segments.append((str(label), start, start + done))
            position = self.pose.root[start + done - 1].copy()
            start = self._idle(start + done, self.frames(1.0, 3.0), position)
        segments += self._arm_timeline()
        return sorted(segments, key=lambda s: (s[1], s[0]))

    # body actions: each fills frames [start, start + n) and returns how many it used
    def _idle(self, start: int, n: int, position: np.ndarray) -> int:
        n = min(n, self.n - start)
        t = np.arange(n) / self.fps
        sway = 0.5 * np.sin(2 * np.pi * t / 3.0 + self.rng.uniform(0, 2 * np.pi))
        self.pose.root[start : start + n] = position + np.stack([sway, np.zeros(n)], axis=-1)
        return start + n

    def _walk(self, start: int, n: int, position: np.ndarray, heading: float) -> int:
        speed = self.speed * self.rng.uniform(0.8, 1.2)
        room = position[0] - self.x_range[0] if heading < 0 else self.x_range[1] - position[0]
        n = min(n, int(room / speed))
        if n < self.min_walk_frames:
            return 0
        steps = np.arange(1, n + 1)
        self.pose.root[start : start + n] = position + np.outer(steps, [heading * speed, 0.0])
        self._gait(start, n, speed)
        return n

    def _walk_left(self, start: int, n: int, position: np.ndarray) -> int:
        return self._walk(start, n, position, -1.0)

    def _walk_right(self, start: int, n: int, position: np.ndarray) -> int:
        return self._walk(start, n, position, 1.0)

    def _gait(self, start: int, n: int, speed: float) -> None:
        """Legs and arms swing in antiphase, one stride per 0.9 body heights travelled."""
        phase = 2 * np.pi * speed * np.arange(n) / (0.9 * self.shape.height)
        swing = np.radians(28.0) * np.sin(phase)
        sl = slice(start, start + n)
        self.pose.hip[sl] = np.stack([-np.radians(6) + swing, np.radians(6) - swing], axis=-1)
        self.pose.knee[sl] = np.radians(25.0) * np.stack(
            [np.clip(-np.sin(phase), 0, None), np.clip(np.sin(phase), 0, None)], axis=-1
        )
        self.pose.shoulder[sl] = np.stack(
            [-np.radians(15) - 0.6 * swing, np.radians(15) - 0.6 * swing], axis=-1
        )

    def _jump(self, start: int, n: int, position: np.ndarray) -> int:
        period = self.rng.uniform(0.7, 1.0) * self.fps
        height = self.rng.uniform(0.22, 0.32) * self.shape.height
        t = np.arange(n)
        sl = slice(start, start + n)
        self.pose.root[sl] = position
        self.pose.lift[sl] = height * np.abs(np.sin(np.pi * t / period))
        tuck = np.radians(35.0) * np.abs(np.sin(np.pi * t / period))
        self.pose.hip[sl] = np.stack([-tuck, tuck], axis=-1) * 0.5 + self.pose.hip[sl]
        self.pose.knee[sl] = np.stack([tuck, -tuck], axis=-1)
        return n

    def _spin(self, start: int, n: int, position: np.ndarray) -> int:
        reach = self.shape.reach
        if not (
            reach <= position[0] <= self.size - reach and reach <= position[1] <= self.size - reach
        ):
            return 0  # a turn here would leave the frame
        degrees_per_frame = self.rng.uniform(20.0, 35.0)
        turns = max(1, round(n * degrees_per_frame / 360.0))
        sense = self.rng.choice([-1.0, 1.0])
        sl = slice(start, start + n)
        self.pose.root[sl] = position
        self.pose.rotation[sl] = sense * 2 * np.pi * turns * np.arange(1, n + 1) / n
        return n

    def _squat(self, start: int, n: int, position: np.ndarray) -> int:
        period = self.rng.uniform(1.0, 1.6) * self.fps
        bend = (1 - np.cos(2 * np.pi * np.arange(n) / period)) / 2
        sl = slice(start, start + n)
        self.pose.root[sl] = position
        self.pose.drop[sl] = bend * 0.35 * (self.shape.thigh + self.shape.shin)
        self.pose.hip[sl] = np.outer(np.radians(9 + 55 * bend), SIDE_SIGN)
        self.pose.knee[sl] = np.outer(-np.radians(110 * bend), SIDE_SIGN)
        return n

    def _approach_object(self, start: int, n: int, position: np.ndarray) -> int:
        target_object = self.objects[self.rng.integers(len(self.objects))]
        speed = self.speed * self.rng.uniform(0.8, 1.2)
        stand_off = 0.25 * self.shape.height + target_object.size
        current = position.astype(float).copy()
        used = 0
        for used in range(min(n, self.n - start)):
            goal = target_object.positions[start + used].copy()
            goal[0] += stand_off if current[0] > goal[0] else -stand_off
            goal = np.clip(
                goal, [self.x_range[0], self.y_range[0]], [self.x_range[1], self.y_range[1]]
            )
            step = goal - current
            distance = float(np.hypot(*step))
            if distance < speed:
                break
            current = current + step * (speed / distance)
            self.pose.root[start + used] = current
        else:
            used += 1
        if used < self.min_walk_frames:
            return 0
        self._gait(start, used, speed)
        return used

    def _arm_timeline(self) -> list[tuple[str, int, int]]:
        segments = []
        start = self.frames(0.0, 6.0)
        while True:
            n = self.frames(1.5, 4.0)
            if start + n > self.n:
                return segments
            label = str(self.rng.choice(ARM_ACTIONS))
            getattr(self, f"_{label}")(start, n)
            segments.append((label, start, start + n))
            start += n + self.frames(2.0, 8.0)

    def _wave(self, start: int, n: int) -> None:
        side = int(self.rng.integers(2))
        sign = SIDE_SIGN[side]
        frequency = self.rng.uniform(1.5, 2.5) / self.fps
        sl = slice(start, start + n)
        self.pose.shoulder[sl, side] = sign * np.radians(self.rng.uniform(140, 160))
        self.pose.elbow[sl, side] = (
            sign * np.radians(40) * np.sin(2 * np.pi * frequency * np.arange(n))
        )

    def _flap_arms(self, start: int, n: int) -> None:
        period = self.rng.uniform(0.8, 1.2) * self.fps
        raise_ = np.radians(20 + 65 * (1 - np.cos(2 * np.pi * np.arange(n) / period)))
        sl = slice(start, start + n)
        self.pose.shoulder[sl] = np.outer(raise_, SIDE_SIGN)
        self.pose.elbow[sl] = 0.0


def _objects(
    rng: np.random.Generator, n_frames: int, size: int, speed: float, count: int
) -> list[SceneObject]:
    objects = []
    for _ in range(count):
        category = str(rng.choice(["ball", "box", "bar"]))
        radius = rng.uniform(2.5, 4.0)
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        low, high = radius + 1, size - radius - 1
        position = rng.uniform(low, high, size=2)
        velocity = np.zeros(2) if rng.random() < 0.5 else rng.normal(size=2)
        velocity *= rng.uniform(0.5, 1.5) * speed / max(np.hypot(*velocity), 1e-6)
        track = np.empty((n_frames, 2))
        for t in range(n_frames):
            track[t] = position
            position = position + velocity
            for axis in range(2):
                if not low <= position[axis] <= high:
                    velocity[axis] = -velocity[axis]
                    position[axis] = np.clip(position[axis], low, high)
        objects.append(SceneObject(category, radius, color, track))
    return objects


def simulate(
    rng: np.random.Generator,
    n_frames: int,
    size: int,
    fps: float,
    walk_speed: float,
    n_objects: int,
) -> Trajectory:
    """Plan the timeline and compute every joint and object position of one video."""
    shape = ActorShape(height=rng.uniform(0.27, 0.36) * size)
    objects = _objects(rng, n_frames, size, walk_speed, n_objects)
    planner = _Planner(rng, n_frames, size, fps, walk_speed, shape, objects)
    segments = planner.plan()
    return Trajectory(shape, _joints(planner.pose, shape), objects, segments)


def _joints(pose: _Pose, shape: ActorShape) -> np.ndarray:
    hip = pose.root + np.stack([np.zeros(pose.n), pose.drop - pose.lift], axis=-1)
    up = direction(np.pi + pose.rotation)
    neck = hip + shape.torso * up
    head = neck + (shape.neck + shape.head_radius) * up
    joints = [head, neck, hip]
    for side in (LEFT, RIGHT):
        arm = pose.rotation + pose.shoulder[:, side]
        elbow = neck + shape.upper_arm * direction(arm)
        joints += [elbow, elbow + shape.forearm * direction(arm + pose.elbow[:, side])]
    for side in (LEFT, RIGHT):
        leg = pose.rotation + pose.hip[:, side]
        knee = hip + shape.thigh * direction(leg)
        joints += [knee, knee + shape.shin * direction(leg + pose.knee[:, side])]
    return np.stack(joints, axis=1)
