"""The difficulty knobs and the per-image nuisance they control."""

import dataclasses
import math

import numpy as np


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


def _check_counts(**values):
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
