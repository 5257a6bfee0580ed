"""One finished image: the drawn face posed by an affine warp, over a background, under a
light, through the camera (exposure, white balance, gamma, blur, noise)."""

import functools
import math

import numpy as np

from keras_arcface.data.synthetic.difficulty import _sample_nuisance
from keras_arcface.data.synthetic.drawing import _Canvas, _draw_face

# The canonical drawing leaves room for hair and shoulders; this zoom frames the face
# roughly as in aligned 112x112 face crops.
_FACE_ZOOM = 1.3


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
