"""Synthetic face-like identities: the package's built-in data (no download).

Each identity is a fixed set of facial traits drawn from ``(seed, identity index)``: face
shape and proportions, skin, hair style and colour, eye/brow/nose/mouth geometry, iris
colour, and distinctive marks (moles, freckles, scar, beard, glasses). Every image of
that identity redraws those traits under a new nuisance: pose (roll, yaw, shift, scale),
expression (smile, open mouth, blink, raised brows), lighting direction and strength,
white balance and exposure, background and clothing, blur, sensor noise, JPEG quality and
occluders. Raw pixels do not separate identities; a small CNN learns to.

Faces are drawn with PIL at twice the output size in a canonical frame, posed with one
affine warp, box-downsampled, composed over a random background and finished in NumPy.
Identity ``i`` depends only on ``(seed, i)``: it is the same whatever the number of
identities asked for, and held-out identities use a separate index range, so they never
appear in training.
"""

import concurrent.futures
import dataclasses
import functools
import io
import math
import multiprocessing
import os
import time

import numpy as np

from keras_arcface._io import atomic_path

HELDOUT_INDEX_OFFSET = 1_000_000
# The canonical drawing leaves room for hair and shoulders; this zoom frames the face
# roughly as in aligned 112x112 face crops.
_FACE_ZOOM = 1.3
_SKIN_LIGHT = np.array([236.0, 200.0, 172.0])
_SKIN_DARK = np.array([92.0, 60.0, 44.0])
_HAIR_COLOURS = np.array(
    [
        [25, 20, 18],
        [60, 40, 25],
        [105, 70, 40],
        [170, 130, 80],
        [215, 185, 120],
        [140, 55, 25],
        [150, 150, 150],
        [225, 225, 220],
        [45, 35, 30],
        [90, 60, 50],
    ],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array(
    [
        [70, 45, 25],
        [110, 75, 40],
        [60, 100, 150],
        [80, 120, 90],
        [120, 120, 125],
        [30, 25, 20],
    ],
    dtype=np.float64,
)
_HAIR_STYLES = ("bald", "short", "fringe", "side_part", "long", "bun")


@dataclasses.dataclass
class SyntheticDifficulty:
    """Knobs of the nuisance that varies between images of one identity.

    Defaults make raw-pixel cosine verification fail (about 0.6 accuracy on held-out
    pairs) while a small CNN separates identities. Scale them down for an easier set.

    Args:
        max_roll: maximum in-plane rotation, degrees.
        max_yaw: maximum yaw, as the sideways shift of the nose in face half-widths.
        max_shift: maximum translation, fraction of the image size.
        scale_range: (min, max) face scale.
        expression: 0..1 strength of smiles, open mouths, blinks and raised brows.
        lighting: 0..1 strength of directional lighting.
        exposure: 0..1 spread of exposure and white balance changes.
        background: 0..1 amount of background clutter (0: flat grey).
        max_blur: maximum Gaussian blur radius in pixels.
        max_noise: maximum sensor noise standard deviation, 0..255 units.
        jpeg_quality: (min, max) JPEG quality of the stored image.
        occlusion_probability: chance of an occluder (sunglasses, mask, hand, hat, box).
        hair_variation: 0..1 per-image change of hairline and hair colour.

    Example:
        >>> easy = SyntheticDifficulty(max_roll=5.0, occlusion_probability=0.0)
    """

    max_roll: float = 12.0
    max_yaw: float = 0.35
    max_shift: float = 0.06
    scale_range: tuple = (0.88, 1.1)
    expression: float = 1.0
    lighting: float = 1.0
    exposure: float = 1.0
    background: float = 1.0
    max_blur: float = 1.2
    max_noise: float = 8.0
    jpeg_quality: tuple = (40, 95)
    occlusion_probability: float = 0.15
    hair_variation: float = 1.0

    def __post_init__(self):
        for name in (
            "expression",
            "lighting",
            "exposure",
            "background",
            "occlusion_probability",
            "hair_variation",
        ):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
        for name in ("max_roll", "max_yaw", "max_shift", "max_blur", "max_noise"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={getattr(self, name)}")
        low, high = self.scale_range
        if not 0.3 <= low <= high <= 2.0:
            raise ValueError(
                f"`scale_range` must be (min, max) within [0.3, 2]. "
                f"Received: scale_range={self.scale_range}"
            )
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(
                f"`jpeg_quality` must be (min, max) within [1, 100]. "
                f"Received: jpeg_quality={self.jpeg_quality}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Builds the knobs from keyword arguments; an unknown name is an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(
                f"Unknown difficulty knob(s) {unknown}; known: {sorted(names)}. "
                f"Received: {', '.join(f'{key}={kwargs[key]!r}' for key in unknown)}"
            )
        return cls(**kwargs)


# --------------------------------------------------------------------------- identity traits
def identity_traits(seed, index):
    """The fixed traits of identity ``index`` under ``seed`` (a dict of floats/arrays).

    Example:
        >>> identity_traits(0, 3)["hair_style"] in _HAIR_STYLES
        True
    """
    rng = np.random.default_rng([int(seed), int(index), 0])
    tone = rng.uniform(0.0, 1.0)
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 8, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 10, 3)
    traits = {
        "face_a": rng.uniform(0.36, 0.50),
        "face_b": rng.uniform(0.50, 0.64),
        "jaw": rng.uniform(0.45, 0.95),
        "power": rng.uniform(1.8, 2.8),
        "skin": np.clip(skin, 30, 250),
        "hair": np.clip(hair, 5, 250),
        "hair_style": _HAIR_STYLES[rng.integers(len(_HAIR_STYLES))],
        "hairline": rng.uniform(0.55, 0.8),
        "hair_part": rng.uniform(-0.25, 0.25),
        "hair_volume": rng.uniform(1.04, 1.2),
        "eye_y": rng.uniform(-0.14, -0.02),
        "eye_gap": rng.uniform(0.14, 0.22),
        "eye_w": rng.uniform(0.055, 0.085),
        "eye_h": rng.uniform(0.022, 0.042),
        "eye_tilt": rng.uniform(-0.15, 0.15),
        "iris": np.clip(
            _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 8, 3), 0, 255
        ),
        "brow_gap": rng.uniform(0.05, 0.11),
        "brow_thick": rng.uniform(0.012, 0.035),
        "brow_len": rng.uniform(0.07, 0.12),
        "brow_arch": rng.uniform(-0.01, 0.04),
        "brow_tilt": rng.uniform(-0.2, 0.25),
        "nose_len": rng.uniform(0.14, 0.28),
        "nose_w": rng.uniform(0.04, 0.09),
        "mouth_y": rng.uniform(0.30, 0.42),
        "mouth_w": rng.uniform(0.09, 0.17),
        "lip_top": rng.uniform(0.012, 0.03),
        "lip_bottom": rng.uniform(0.015, 0.04),
        "lip_tint": rng.uniform(0.0, 1.0),
        "ear": rng.uniform(0.06, 0.11),
        "moles": [
            (rng.uniform(-0.3, 0.3), rng.uniform(-0.25, 0.45), rng.uniform(0.012, 0.022))
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))
        ],
        "freckles": rng.uniform() < 0.2,
        "freckle_seed": int(rng.integers(2**31)),
        "scar": (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0, math.pi))
        if rng.uniform() < 0.12
        else None,
        "beard": rng.choice(["none", "none", "none", "moustache", "goatee", "full"]),
        "glasses": rng.uniform() < 0.15,
        "glasses_colour": rng.uniform(0, 90, 3),
        "glasses_round": rng.uniform() < 0.5,
        "cheek": rng.uniform(0.0, 0.35),
    }
    return traits


# --------------------------------------------------------------------------- drawing helpers
class _Canvas:
    """Maps face coordinates ([-1, 1], y down) to pixels of the 2x drawing canvas."""

    def __init__(self, size):
        from PIL import Image, ImageDraw

        self.size = size
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, u, v):
        return ((u + 1.0) * 0.5 * self.size, (v + 1.0) * 0.5 * self.size)

    def length(self, value):
        return value * 0.5 * self.size

    def ellipse(self, cx, cy, rx, ry, colour, outline=None, width=0):
        x0, y0 = self.px(cx - rx, cy - ry)
        x1, y1 = self.px(cx + rx, cy + ry)
        self.draw.ellipse(
            [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)],
            fill=None if colour is None else _rgba(colour),
            outline=None if outline is None else _rgba(outline),
            width=int(width),
        )

    def polygon(self, points, colour):
        self.draw.polygon([self.px(u, v) for u, v in points], fill=_rgba(colour))

    def line(self, points, colour, width):
        self.draw.line(
            [self.px(u, v) for u, v in points],
            fill=_rgba(colour),
            width=max(1, int(round(self.length(width)))),
            joint="curve",
        )


def _rgba(colour, alpha=255):
    colour = [max(0, min(255, int(round(float(c))))) for c in colour]
    if len(colour) == 4:
        return tuple(colour)
    return (*colour, alpha)


def _shade(colour, factor):
    return np.clip(np.asarray(colour, dtype=np.float64) * factor, 0, 255)


def _face_outline(t, shift_x, n=72):
    """Points of the face outline: a superellipse narrowing towards the chin."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(angles), np.sin(angles)
    p = t["power"]
    x = np.sign(c) * np.abs(c) ** (2 / p) * t["face_a"]
    y = np.sign(s) * np.abs(s) ** (2 / p) * t["face_b"]
    lower = np.clip(y / t["face_b"], 0, 1)
    x = x * (1 - (1 - t["jaw"]) * lower**2)
    return list(zip(x + shift_x, y + 0.02))


def _hair_cap(t, shift_x, hairline, volume, part):
    """Polygon of the hair above the hairline, following an enlarged head outline."""
    a, b = t["face_a"] * volume, t["face_b"] * volume
    angles = np.linspace(np.pi, 2 * np.pi, 40)
    top = [(shift_x + a * np.cos(angle), 0.02 + b * np.sin(angle)) for angle in angles]
    line_y = 0.02 - t["face_b"] * hairline
    xs = np.linspace(a, -a, 24)
    bottom = [
        (shift_x + x, line_y + 0.35 * t["face_b"] * (x / a) ** 2 * (1 - hairline) + part * x * 0.3)
        for x in xs
    ]
    return top + bottom


# --------------------------------------------------------------------------- one image
def _sample_nuisance(rng, knobs):
    n = {
        "roll": float(np.clip(rng.normal(0, knobs.max_roll / 2), -knobs.max_roll, knobs.max_roll)),
        "yaw": rng.uniform(-knobs.max_yaw, knobs.max_yaw),
        "pitch": rng.uniform(-0.03, 0.03) * (knobs.max_yaw > 0),
        "scale": rng.uniform(*knobs.scale_range),
        "shift": rng.uniform(-knobs.max_shift, knobs.max_shift, 2),
        "smile": rng.uniform(-0.4, 1.0) * knobs.expression,
        "mouth_open": (rng.uniform() < 0.3) * rng.uniform(0.005, 0.04) * knobs.expression,
        "eye_open": 1.0
        - (rng.uniform() < 0.12) * 0.8 * knobs.expression
        - rng.uniform(0, 0.3) * knobs.expression,
        "brow_raise": rng.uniform(-0.01, 0.025) * knobs.expression,
        "gaze": rng.uniform(-0.3, 0.3, 2),
        "light_angle": rng.uniform(0, 2 * np.pi),
        "light_strength": rng.uniform(0.1, 0.6) * knobs.lighting,
        "gain": math.exp(rng.uniform(-0.35, 0.3) * knobs.exposure),
        "white_balance": np.exp(rng.normal(0, 0.08, 3) * knobs.exposure),
        "gamma": math.exp(rng.uniform(-0.2, 0.2) * knobs.exposure),
        "blur": rng.uniform(0, knobs.max_blur),
        "noise": rng.uniform(0, knobs.max_noise),
        "quality": int(rng.integers(knobs.jpeg_quality[0], knobs.jpeg_quality[1] + 1)),
        "occluder": rng.choice(["sunglasses", "mask", "hand", "hat", "box"])
        if rng.uniform() < knobs.occlusion_probability
        else None,
        "hairline": rng.normal(0, 0.04) * knobs.hair_variation,
        "hair_tint": np.exp(rng.normal(0, 0.12, 3) * knobs.hair_variation),
        "shirt": rng.uniform(20, 235, 3),
        "occluder_colour": rng.uniform(0, 255, 3),
    }
    return n


def _draw_face(canvas, t, n, rng):
    yaw = n["yaw"]
    fx = yaw * 0.05
    skin = t["skin"]
    hair = np.clip(t["hair"] * n["hair_tint"], 0, 255)
    # Shoulders and neck.
    canvas.ellipse(fx * 0.5, 1.05, 0.75, 0.32, n["shirt"])
    canvas.polygon(
        [(fx - 0.17, 0.4), (fx + 0.17, 0.4), (fx + 0.2, 0.85), (fx - 0.2, 0.85)], _shade(skin, 0.85)
    )
    style = t["hair_style"]
    hairline = t["hairline"] + n["hairline"]
    if style == "long":
        a, b = t["face_a"] * t["hair_volume"] * 1.1, t["face_b"] * 1.05
        canvas.polygon(
            [(fx - a, 0.0), (fx + a, 0.0), (fx + a * 1.05, 0.6), (fx - a * 1.05, 0.6)], hair
        )
        canvas.ellipse(fx, 0.0, a, b, hair)
    elif style == "bun":
        canvas.ellipse(fx, -t["face_b"] - 0.08, 0.14, 0.11, hair)
    # Ears (the far one hides as the head turns).
    for side in (-1, 1):
        hide = max(0.0, side * yaw) * 1.5
        ear = t["ear"] * (1 - min(hide, 0.8))
        canvas.ellipse(
            fx + side * (t["face_a"] * 0.97 - hide * 0.05),
            t["eye_y"] + 0.08,
            ear * 0.55,
            ear,
            _shade(skin, 0.92),
        )
    canvas.polygon(_face_outline(t, fx), skin)
    _draw_marks(canvas, t, fx + yaw * 0.06, skin, hair)
    _draw_nose(canvas, t, fx + yaw * 0.16, n, skin)
    _draw_mouth(canvas, t, fx + yaw * 0.1, n, skin)
    for side in (-1, 1):
        _draw_eye(canvas, t, side, fx + yaw * 0.1, n)
    if style != "bald":
        part = t["hair_part"] if style == "side_part" else 0.0
        line = hairline - (0.25 if style == "fringe" else 0.0)
        canvas.polygon(_hair_cap(t, fx, line, t["hair_volume"], part), hair)
    elif t["hairline"] > 0.7:  # a fringe of hair at the sides for some bald identities
        for side in (-1, 1):
            canvas.ellipse(fx + side * t["face_a"] * 0.92, -0.1, 0.05, 0.12, hair)
    if t["glasses"]:
        _draw_glasses(canvas, t, fx + yaw * 0.1)
    if n["occluder"] is not None:
        _draw_occluder(canvas, t, fx + yaw * 0.1, n, rng)


def _draw_marks(canvas, t, cx, skin, hair):
    if t["cheek"] > 0.15:
        for side in (-1, 1):
            canvas.ellipse(
                cx + side * t["eye_gap"] * 1.1,
                t["mouth_y"] - 0.12,
                0.06,
                0.04,
                np.clip(skin * np.array([1.05, 0.88, 0.88]), 0, 255),
            )
    if t["freckles"]:
        frng = np.random.default_rng(t["freckle_seed"])
        for _ in range(18):
            side = frng.choice([-1, 1])
            u = cx + side * frng.uniform(0.06, 0.26)
            v = t["eye_y"] + frng.uniform(0.08, 0.2)
            canvas.ellipse(u, v, 0.008, 0.008, _shade(skin, 0.7))
    for u, v, r in t["moles"]:
        canvas.ellipse(cx + u, v, r, r, _shade(skin, 0.35))
    if t["scar"] is not None:
        u, v, angle = t["scar"]
        du, dv = 0.09 * math.cos(angle), 0.09 * math.sin(angle)
        canvas.line(
            [(cx + u - du, v - dv), (cx + u + du, v + dv)],
            np.clip(skin * np.array([1.1, 0.8, 0.8]), 0, 255),
            0.012,
        )
    beard = t["beard"]
    beard_colour = _shade(hair, 0.9)
    if beard == "full":
        points = [p for p in _face_outline(t, cx - 0.0) if p[1] > t["mouth_y"] - 0.1]
        canvas.polygon(points, beard_colour)
    if beard == "goatee":
        canvas.ellipse(cx, t["mouth_y"] + 0.1, t["mouth_w"] * 0.6, 0.08, beard_colour)
    if beard in ("moustache", "full"):
        canvas.ellipse(cx, t["mouth_y"] - 0.045, t["mouth_w"] * 1.05, 0.03, beard_colour)


def _draw_nose(canvas, t, cx, n, skin):
    top = t["eye_y"] + 0.03 + n["pitch"]
    bottom = top + t["nose_len"]
    w = t["nose_w"]
    canvas.polygon(
        [(cx - 0.012, top), (cx + 0.012, top), (cx + w, bottom), (cx - w, bottom)],
        _shade(skin, 0.9),
    )
    canvas.ellipse(cx, bottom - 0.01, w * 0.75, 0.03, _shade(skin, 0.96))
    for side in (-1, 1):
        canvas.ellipse(cx + side * w * 0.55, bottom + 0.005, w * 0.28, 0.012, _shade(skin, 0.4))


def _draw_mouth(canvas, t, cx, n, skin):
    y = t["mouth_y"] + n["pitch"]
    w = t["mouth_w"] * (1 + 0.15 * max(n["smile"], 0))
    lip = skin * np.array([0.95, 0.62, 0.62]) * (0.8 + 0.3 * t["lip_tint"])
    ts = np.linspace(-1, 1, 21)
    centre = y - n["smile"] * 0.035 * ts**2
    root = np.sqrt(1 - ts**2)
    upper = centre - (t["lip_top"] + n["mouth_open"] / 2) * root
    lower = centre + (t["lip_bottom"] + n["mouth_open"] / 2) * root
    xs = cx + ts * w
    canvas.polygon(list(zip(xs, upper)) + list(zip(xs[::-1], lower[::-1])), np.clip(lip, 0, 255))
    if n["mouth_open"] > 0.008:
        half = n["mouth_open"] / 2 * root
        canvas.polygon(
            list(zip(xs, centre - half)) + list(zip(xs[::-1], (centre + half)[::-1])), (50, 20, 20)
        )
    else:
        canvas.line(list(zip(xs, centre)), _shade(lip, 0.6), 0.006)


def _draw_eye(canvas, t, side, cx, n):
    near = 1 + 0.35 * side * n["yaw"]
    ex = cx + side * t["eye_gap"]
    ey = t["eye_y"] + n["pitch"] + side * t["eye_tilt"] * 0.04
    w = t["eye_w"] * near
    h = max(t["eye_h"] * n["eye_open"], 0.004)
    canvas.ellipse(ex, ey, w * 1.12, h * 1.3 + 0.006, _shade(t["skin"], 0.55))
    canvas.ellipse(ex, ey, w, h, (235, 232, 225))
    if h > 0.012:
        iris_r = min(h * 1.0, w * 0.55)
        gx, gy = n["gaze"] * np.array([w * 0.35, h * 0.2])
        canvas.ellipse(ex + gx, ey + gy, iris_r, iris_r, t["iris"])
        canvas.ellipse(ex + gx, ey + gy, iris_r * 0.45, iris_r * 0.45, (10, 10, 10))
    brow_y = ey - t["brow_gap"] - n["brow_raise"] - h
    xs = np.linspace(-1, 1, 9)
    us = ex + xs * t["brow_len"] + side * 0.01
    vs = brow_y - t["brow_arch"] * (1 - xs**2) - t["brow_tilt"] * 0.05 * xs * side
    canvas.line(list(zip(us, vs)), _shade(t["hair"], 0.75), t["brow_thick"])


def _draw_glasses(canvas, t, cx):
    colour = t["glasses_colour"]
    r = t["eye_w"] * 1.7
    for side in (-1, 1):
        ex = cx + side * t["eye_gap"]
        if t["glasses_round"]:
            canvas.ellipse(
                ex, t["eye_y"], r, r * 0.8, None, outline=colour, width=canvas.length(0.014)
            )
        else:
            canvas.draw.rectangle(
                [
                    *canvas.px(ex - r, t["eye_y"] - r * 0.7),
                    *canvas.px(ex + r, t["eye_y"] + r * 0.7),
                ],
                outline=_rgba(colour),
                width=int(canvas.length(0.014)),
            )
    gap = t["eye_gap"] - r
    canvas.line([(cx - gap, t["eye_y"] - 0.01), (cx + gap, t["eye_y"] - 0.01)], colour, 0.012)


def _draw_occluder(canvas, t, cx, n, rng):
    kind, colour = n["occluder"], n["occluder_colour"]
    if kind == "sunglasses":
        for side in (-1, 1):
            canvas.ellipse(
                cx + side * t["eye_gap"],
                t["eye_y"],
                t["eye_w"] * 1.8,
                t["eye_w"] * 1.3,
                (15, 15, 20),
            )
        canvas.line(
            [(cx - t["eye_gap"], t["eye_y"]), (cx + t["eye_gap"], t["eye_y"])], (15, 15, 20), 0.015
        )
    elif kind == "mask":
        top = t["eye_y"] + t["nose_len"] * 0.6
        canvas.polygon(
            [
                (cx - t["face_a"] * 0.95, top),
                (cx + t["face_a"] * 0.95, top),
                (cx + t["face_a"] * 0.7, 0.55),
                (cx - t["face_a"] * 0.7, 0.55),
            ],
            np.clip(colour * 0.3 + 170, 0, 255),
        )
    elif kind == "hand":
        u, v = rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.5)
        canvas.ellipse(cx + u, v, 0.16, 0.22, _shade(t["skin"], rng.uniform(0.8, 1.1)))
    elif kind == "hat":
        top = 0.02 - t["face_b"] * 1.15
        brim = 0.02 - t["face_b"] * rng.uniform(0.45, 0.7)
        canvas.polygon(
            [(cx - 0.5, brim), (cx + 0.5, brim), (cx + 0.4, top), (cx - 0.4, top)], colour
        )
    else:
        u, v = rng.uniform(-0.5, 0.5, 2)
        canvas.polygon(
            [
                (u - 0.15, v - 0.12),
                (u + 0.15, v - 0.12),
                (u + 0.15, v + 0.12),
                (u - 0.15, v + 0.12),
            ],
            colour,
        )


def _background(rng, size, knobs):
    """A random background: a colour ramp plus shapes, drawn at low resolution and
    upsampled (cheap, and as soft as an out-of-focus scene)."""
    from PIL import Image, ImageDraw

    small = max(8, size // int(rng.choice([2, 4, 4])))
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    grey = np.float32(128.0)
    c0 = grey + (c0 - grey) * knobs.background
    c1 = grey + (c1 - grey) * knobs.background
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1, 1, small, dtype=np.float32)
    t = np.float32(np.cos(angle)) * ramp[None, :] + np.float32(np.sin(angle)) * ramp[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    array = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    image = Image.fromarray(array.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 7) * knobs.background)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * small
        w, h = rng.uniform(0.1, 0.6, 2) * small
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.uniform() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    return image.resize((size, size), Image.BILINEAR)


@functools.lru_cache(maxsize=8)
def _pixel_grid(size):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xs + 0.5) / size * 2 - 1, (ys + 0.5) / size * 2 - 1


def _lighting(n, size, transform):
    """Shading map: a Lambertian head (ellipsoid) under a directional light, and a gentle
    ramp elsewhere. Smooth, so it is computed on a quarter-size grid and upsampled."""
    from PIL import Image

    small = max(8, size // 4)
    u, v = _pixel_grid(small)
    a, b, c, d, e, f = transform
    nx = (a * u + b * v + c) / 0.55
    ny = (d * u + e * v + f - 0.05) / 0.7
    radius2 = nx * nx + ny * ny
    nz = np.sqrt(np.maximum(1 - radius2, 0))
    inside = np.clip((1 - np.sqrt(radius2)) * 6, 0, 1)
    lx, ly = math.cos(n["light_angle"]), math.sin(n["light_angle"])
    norm = math.sqrt(lx * lx + ly * ly + 0.36)
    lambert = np.clip((lx * nx + ly * ny + 0.6 * nz) / norm, 0, 1)
    face = 1 + n["light_strength"] * (2 * lambert - 1.2)
    scene = 1 + 0.25 * n["light_strength"] * (lx * u + ly * v)
    shading = (inside * face + (1 - inside) * scene).astype(np.float32)
    return np.asarray(Image.fromarray(shading, "F").resize((size, size), Image.BILINEAR))


def render_sample(traits, rng, image_size, knobs):
    """Renders one image (uint8 ``[H, W, 3]``) of an identity and the JPEG quality to use.

    Example:
        >>> image, quality = render_sample(identity_traits(0, 0), np.random.default_rng(0),
        ...                                112, SyntheticDifficulty())
    """
    from PIL import Image, ImageFilter

    n = _sample_nuisance(rng, knobs)
    big = image_size * 2
    canvas = _Canvas(big)
    _draw_face(canvas, traits, n, rng)
    # Output pixel (face units) -> canvas (face units): inverse of scale, roll, shift.
    angle = math.radians(n["roll"])
    zoom = n["scale"] * _FACE_ZOOM
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    sx, sy = n["shift"] * 2
    a, b = cos, sin
    d, e = -sin, cos
    c = -(a * sx + b * sy)
    f = -(d * sx + e * sy)
    # The face-unit affine map in PIL's pixel-space coefficients, sampling the 2x canvas
    # straight into the output size (the canvas' extra resolution smooths the edges).
    out_half, big_half = image_size / 2.0, big / 2.0
    ratio = big_half / out_half
    coeffs = (
        a * ratio,
        b * ratio,
        big_half * (c + 1 - a - b),
        d * ratio,
        e * ratio,
        big_half * (f + 1 - d - e),
    )
    face = canvas.image.transform(
        (image_size, image_size), Image.AFFINE, coeffs, resample=Image.BILINEAR
    )
    background = _background(rng, image_size, knobs).convert("RGBA")
    composed = Image.alpha_composite(background, face).convert("RGB")
    array = np.asarray(composed, dtype=np.float32)
    gains = (n["gain"] * n["white_balance"]).astype(np.float32)
    array = array * _lighting(n, image_size, (a, b, c, d, e, f))[..., None] * gains
    np.clip(array + 0.5, 0, 255, out=array)
    result = Image.fromarray(array.astype(np.uint8), "RGB")
    # Gamma through a lookup table (PIL's point) rather than a float power.
    curve = [int(round(255.0 * (i / 255.0) ** n["gamma"])) for i in range(256)]
    result = result.point(curve * 3)
    if n["blur"] > 0.3:
        result = result.filter(ImageFilter.GaussianBlur(n["blur"]))
    array = np.asarray(result, dtype=np.float32)
    if n["noise"] > 0:
        array = array + rng.standard_normal(array.shape, dtype=np.float32) * np.float32(n["noise"])
    return np.clip(array + 0.5, 0, 255).astype(np.uint8), n["quality"]


def _jpeg(image, quality):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def _render_identity(seed, index, count, image_size, knobs, encode):
    traits = identity_traits(seed, index)
    rng = np.random.default_rng([int(seed), int(index), 1])
    out = []
    for _ in range(count):
        image, quality = render_sample(traits, rng, image_size, knobs)
        out.append(_jpeg(image, quality) if encode else (image, quality))
    return out


def _render_chunk(task):
    seed, indices, count, image_size, knobs, encode = task
    return [_render_identity(seed, index, count, image_size, knobs, encode) for index in indices]


def _iter_rendered(
    seed, indices, count, image_size, knobs, encode, num_workers, progress, description
):
    """Yields the ``count`` images of each identity in ``indices``, in order; parallel over
    identities in worker processes when ``num_workers > 1``."""
    from tqdm.auto import tqdm

    indices = list(indices)
    chunk = max(1, min(8, len(indices) // max(1, 4 * max(num_workers, 1))))
    tasks = [
        (seed, indices[i : i + chunk], count, image_size, knobs, encode)
        for i in range(0, len(indices), chunk)
    ]
    with tqdm(
        total=len(indices) * count, desc=description, unit="img", disable=not progress
    ) as bar:
        if num_workers <= 1 or len(tasks) == 1:
            for task in tasks:
                for identity in _render_chunk(task):
                    bar.update(count)
                    yield identity
            return
        # fork: workers run only NumPy/PIL code, and unlike spawn it does not re-import the
        # caller's __main__ (a script without a main guard would recurse).
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            for result in pool.map(_render_chunk, tasks):
                for identity in result:
                    bar.update(count)
                    yield identity


def _render_many(*args):
    """:func:`_iter_rendered` as a list (one entry per identity)."""
    return list(_iter_rendered(*args))


def _default_workers():
    return max(1, min(4, os.cpu_count() or 1))


def render_identities(
    num_identities,
    images_per_identity,
    seed=0,
    image_size=112,
    *,
    jpeg=True,
    heldout=False,
    num_workers=None,
    progress=False,
    **difficulty,
):
    """Renders synthetic identities in memory.

    Args:
        num_identities: number of identities (labels ``0..num_identities-1``).
        images_per_identity: images of each identity.
        seed: integer seed; identity ``i`` depends only on ``(seed, i)``.
        image_size: side of the square images.
        jpeg: pass each image through JPEG at its sampled quality (as stored on disk).
        heldout: draw the identities from the held-out index range (never in training).
        num_workers: rendering processes (default ``min(4, CPUs)``; 1 renders inline).
        progress: show a progress bar.
        **difficulty: :class:`SyntheticDifficulty` knobs.

    Returns:
        ``(images uint8 [N, H, W, 3], labels int32 [N])`` ordered identity by identity.

    Example:
        >>> images, labels = render_identities(8, 4, seed=0, num_workers=1)
        >>> images.shape, labels[:5]
        ((32, 112, 112, 3), array([0, 0, 0, 0, 1], dtype=int32))
    """
    knobs = SyntheticDifficulty.from_kwargs(**difficulty)
    _check_counts(
        num_identities=num_identities,
        images_per_identity=images_per_identity,
        image_size=image_size,
    )
    offset = HELDOUT_INDEX_OFFSET if heldout else 0
    workers = _default_workers() if num_workers is None else int(num_workers)
    if num_identities * images_per_identity < 200:
        workers = 1  # starting processes costs more than it saves
    rendered = _render_many(
        seed,
        range(offset, offset + num_identities),
        images_per_identity,
        image_size,
        knobs,
        jpeg,
        workers,
        progress,
        "rendering",
    )
    images = np.empty((num_identities * images_per_identity, image_size, image_size, 3), np.uint8)
    position = 0
    for identity in rendered:
        for item in identity:
            images[position] = _decode_jpeg(item) if jpeg else item[0]
            position += 1
    labels = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    return images, labels


def _decode_jpeg(data):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _check_counts(**values):
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def contact_sheet(images_by_identity, path, cell=112):
    """Writes a grid PNG: one row per identity, one column per image.

    Example:
        >>> contact_sheet([[img1, img2], [img3, img4]], "sheet.png")  # doctest: +SKIP
    """
    from PIL import Image

    rows = len(images_by_identity)
    cols = max(len(row) for row in images_by_identity)
    sheet = Image.new(
        "RGB", (cols * cell + (cols + 1) * 2, rows * cell + (rows + 1) * 2), (255, 255, 255)
    )
    for r, row in enumerate(images_by_identity):
        for c, image in enumerate(row):
            tile = Image.fromarray(image)
            if tile.size != (cell, cell):
                tile = tile.resize((cell, cell))
            sheet.paste(tile, (2 + c * (cell + 2), 2 + r * (cell + 2)))
    with atomic_path(path, suffix=".png") as temporary:
        sheet.save(temporary)
    return path


def generate_synthetic(
    out_dir,
    *,
    num_identities=300,
    images_per_identity=30,
    heldout_identities=100,
    heldout_images_per_identity=12,
    num_pairs=3000,
    seed=0,
    image_size=112,
    num_workers=None,
    overwrite=False,
    progress=True,
    contact_identities=8,
    contact_images=8,
    **difficulty,
):
    """Generates the synthetic dataset: training TFRecords, a held-out ``.bin``, a sheet.

    Writes ``out_dir/train/`` (a TFRecord dataset folder with ``manifest.json`` and
    ``labels.tsv``), ``out_dir/verification.bin`` (balanced pairs drawn only from
    ``heldout_identities`` identities never used for training) and
    ``out_dir/contact_sheet.png`` (rows of training identities).

    Args:
        out_dir: output folder.
        num_identities: training identities.
        images_per_identity: training images per identity.
        heldout_identities: identities for the verification set (disjoint from training).
        heldout_images_per_identity: images rendered per held-out identity.
        num_pairs: verification pairs (half same, half different).
        seed: integer seed; the whole output is a function of it and the arguments.
        image_size: side of the square images.
        num_workers: rendering processes (default ``min(4, CPUs)``; 1 renders inline).
        overwrite: replace an existing ``out_dir/train``.
        progress: show progress bars.
        contact_identities: rows of the contact sheet.
        contact_images: columns of the contact sheet.
        **difficulty: :class:`SyntheticDifficulty` knobs (``max_roll``, ``max_yaw``,
            ``occlusion_probability``, ...).

    Returns:
        A summary dict: paths, counts, the difficulty used and timings.

    Example:
        >>> summary = generate_synthetic("runs/synthetic", num_identities=50,
        ...                              images_per_identity=10, num_pairs=600)  # doctest: +SKIP
    """
    from keras_arcface.data.pairs import make_pairs
    from keras_arcface.data.tfrecord_writer import ImageRecord, prepare_destination, write_records
    from keras_arcface.data.verification_bin import write_bin

    knobs = SyntheticDifficulty.from_kwargs(**difficulty)
    _check_counts(
        num_identities=num_identities,
        images_per_identity=images_per_identity,
        heldout_identities=heldout_identities,
        heldout_images_per_identity=heldout_images_per_identity,
        num_pairs=num_pairs,
        image_size=image_size,
    )
    if heldout_identities < 2 or heldout_images_per_identity < 2:
        raise ValueError(
            "Verification pairs need >= 2 held-out identities with >= 2 images. "
            f"Received: heldout_identities={heldout_identities}, "
            f"heldout_images_per_identity={heldout_images_per_identity}"
        )
    out_dir = os.fspath(out_dir)
    train_dir = os.path.join(out_dir, "train")
    prepare_destination(train_dir, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    workers = _default_workers() if num_workers is None else int(num_workers)
    started = time.perf_counter()
    heldout = _render_many(
        seed,
        range(HELDOUT_INDEX_OFFSET, HELDOUT_INDEX_OFFSET + heldout_identities),
        heldout_images_per_identity,
        image_size,
        knobs,
        True,
        workers,
        progress,
        "rendering held-out identities",
    )
    names = [f"synthetic_{index:06d}" for index in range(num_identities)]
    sheet_sources = []

    def records():
        # Streams identities as they are rendered; the writer's round-robin spreads each
        # identity's images over all shards.
        rendered = _iter_rendered(
            seed,
            range(num_identities),
            images_per_identity,
            image_size,
            knobs,
            True,
            workers,
            progress,
            "rendering training identities",
        )
        for label, images in enumerate(rendered):
            if label < contact_identities:
                sheet_sources.append(images[:contact_images])
            for k, encoded in enumerate(images):
                yield ImageRecord(
                    encoded,
                    label,
                    identity=names[label],
                    source_id=f"synthetic/{seed}/{label}/{k}",
                    image_format="jpeg",
                    height=image_size,
                    width=image_size,
                )

    manifest = write_records(
        train_dir,
        records(),
        class_names=names,
        num_images=num_identities * images_per_identity,
        image_size=(image_size, image_size),
        overwrite=overwrite,
        progress=False,
        source={
            "generator": "keras_arcface.data.synthetic",
            "seed": seed,
            "difficulty": dataclasses.asdict(knobs),
        },
    )
    flat = [item for identity in heldout for item in identity]
    flat_labels = np.repeat(np.arange(heldout_identities), heldout_images_per_identity)
    pairs, issame = make_pairs(flat_labels, num_pairs, seed)
    bin_path = write_bin(
        os.path.join(out_dir, "verification.bin"), [flat[i] for pair in pairs for i in pair], issame
    )
    sheet_rows = [[_decode_jpeg(data) for data in row] for row in sheet_sources]
    sheet_path = contact_sheet(sheet_rows, os.path.join(out_dir, "contact_sheet.png"))
    return {
        "train_dir": train_dir,
        "verification_bin": bin_path,
        "contact_sheet": sheet_path,
        "num_identities": num_identities,
        "images_per_identity": images_per_identity,
        "num_images": manifest["num_images"],
        "heldout_identities": heldout_identities,
        "num_pairs": int(len(issame)),
        "seed": seed,
        "image_size": image_size,
        "difficulty": dataclasses.asdict(knobs),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
