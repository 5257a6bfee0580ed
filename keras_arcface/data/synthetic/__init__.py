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

from keras_arcface.data.synthetic.difficulty import SyntheticDifficulty
from keras_arcface.data.synthetic.generate import contact_sheet, generate_synthetic
from keras_arcface.data.synthetic.image import render_sample
from keras_arcface.data.synthetic.rendering import (
    HELDOUT_INDEX_OFFSET,
    render_identities,
)
from keras_arcface.data.synthetic.traits import identity_traits

__all__ = [
    "HELDOUT_INDEX_OFFSET",
    "SyntheticDifficulty",
    "contact_sheet",
    "generate_synthetic",
    "identity_traits",
    "render_identities",
    "render_sample",
]
