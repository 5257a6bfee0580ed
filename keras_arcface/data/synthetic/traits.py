"""The fixed traits of one identity, drawn from ``(seed, identity index)``."""

import math

import numpy as np

SKIN_LIGHT = np.array([236.0, 200.0, 172.0])
SKIN_DARK = np.array([92.0, 60.0, 44.0])
HAIR_COLOURS = np.array(
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
IRIS_COLOURS = np.array(
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
HAIR_STYLES = ("bald", "short", "fringe", "side_part", "long", "bun")


def identity_traits(seed, index):
    """The fixed traits of identity ``index`` under ``seed`` (a dict of floats/arrays).

    Example:
        >>> identity_traits(0, 3)["hair_style"] in HAIR_STYLES
        True
    """
    rng = np.random.default_rng([int(seed), int(index), 0])
    tone = rng.uniform(0.0, 1.0)
    skin = SKIN_LIGHT * (1 - tone) + SKIN_DARK * tone + rng.normal(0, 8, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 10, 3)
    traits = {
        "face_a": rng.uniform(0.36, 0.50),
        "face_b": rng.uniform(0.50, 0.64),
        "jaw": rng.uniform(0.45, 0.95),
        "power": rng.uniform(1.8, 2.8),
        "skin": np.clip(skin, 30, 250),
        "hair": np.clip(hair, 5, 250),
        "hair_style": HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        "hairline": rng.uniform(0.55, 0.8),
        "hair_part": rng.uniform(-0.25, 0.25),
        "hair_volume": rng.uniform(1.04, 1.2),
        "eye_y": rng.uniform(-0.14, -0.02),
        "eye_gap": rng.uniform(0.14, 0.22),
        "eye_w": rng.uniform(0.055, 0.085),
        "eye_h": rng.uniform(0.022, 0.042),
        "eye_tilt": rng.uniform(-0.15, 0.15),
        "iris": np.clip(
            IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] + rng.normal(0, 8, 3), 0, 255
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
