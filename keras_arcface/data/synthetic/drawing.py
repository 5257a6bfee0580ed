"""PIL drawing of one face in a canonical frame: canvas, outline, hair, eyes, nose, mouth, marks,
glasses and occluders. Coordinates are face units: ``[-1, 1]``, y pointing down."""

import math

import numpy as np


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
    center = y - n["smile"] * 0.035 * ts**2
    root = np.sqrt(1 - ts**2)
    upper = center - (t["lip_top"] + n["mouth_open"] / 2) * root
    lower = center + (t["lip_bottom"] + n["mouth_open"] / 2) * root
    xs = cx + ts * w
    canvas.polygon(list(zip(xs, upper)) + list(zip(xs[::-1], lower[::-1])), np.clip(lip, 0, 255))
    if n["mouth_open"] > 0.008:
        half = n["mouth_open"] / 2 * root
        canvas.polygon(
            list(zip(xs, center - half)) + list(zip(xs[::-1], (center + half)[::-1])), (50, 20, 20)
        )
    else:
        canvas.line(list(zip(xs, center)), _shade(lip, 0.6), 0.006)


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
