"""Raw photos to model input for ``Embedder``: detection and ArcFace alignment on the way in.

``align="auto"`` (the default everywhere) aligns every image that is not already an aligned
``S x S`` crop (``S`` the model's input side, 112): a phone photo is detected and aligned, a crop
from an aligned dataset passes through untouched. ``align=True`` always detects and aligns;
``align=False`` never does (other sizes are then resized, with a warning, as before).
"""

import os

import numpy as np

ALIGN_CHOICES = ("auto", True, False)


def check_align(align):
    """Validates ``align`` (``"auto"``, ``True`` or ``False``) and returns it.

    Example:
    >>> check_align("auto")
    'auto'
    """
    if isinstance(align, str) and align.lower() in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[align.lower()]
    if align is True or align is False:
        return align
    raise ValueError(f"Expected align in ('auto', True, False). Received: align={align!r}")


def split_images(images):
    """The separate images of an ``embed`` argument: a path, bytes, an array, a batch, a list."""
    if isinstance(images, (str, bytes, bytearray, os.PathLike)):
        return [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("Expected at least one image. Received: images=[]")
        return list(images)
    array = np.asarray(images)
    if array.ndim == 4:
        if array.shape[0] == 0:
            raise ValueError(f"Expected at least one image. Received: shape={array.shape}")
        return list(array)
    return [array]


def _label(item, index):
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"image {index}"


def _pixels(item):
    """The image as an array: decoded (uint8 RGB) if it is a path or bytes, else as given."""
    from keras_arcface.inference.images import load_image

    if isinstance(item, (str, bytes, bytearray, os.PathLike)):
        return load_image(item)
    return np.asarray(item)


def _detectable(pixels):
    """uint8 RGB ``[H, W, 3]`` for the detector; the checks ``to_batch`` makes on crops."""
    from keras_arcface.inference.images import _check_channels, _check_pixels

    _check_channels(pixels)
    _check_pixels(pixels, "the images")
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels.astype(np.float64)).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def faces_of(item, index, align, aligner, face):
    """``[(crop, Face or None), ...]`` for one image under the ``align``/``face`` choice."""
    from keras_arcface.faces.aligner import choose_faces

    pixels = _pixels(item)
    if align == "auto" and pixels.shape[:2] == (aligner.image_size,) * 2:
        return [(pixels, None)]  # an aligned crop already: checked by to_batch as before
    pixels = _detectable(pixels)
    from keras_arcface.faces.align import align_face

    faces = aligner.detector.detect(pixels)
    # No face is an error for every choice but "all" (which returns an empty list).
    found = choose_faces(faces, face if faces or face == "all" else "only", _label(item, index))
    return [(align_face(pixels, f.landmarks, aligner.image_size), f) for f in found]


def aligned_batch(images, align, aligner, face="only"):
    """One aligned crop per image (``face``: ``"only"`` or ``"largest"``) as ``[B, S, S, 3]``."""
    if face not in ("only", "largest"):
        raise ValueError(
            "Expected face 'only' or 'largest' (one embedding per image; use embed_faces for "
            f"every face of a photo). Received: face={face!r}"
        )
    results = [
        faces_of(item, index, align, aligner, face)[0]
        for index, item in enumerate(split_images(images))
    ]
    if all(found is None for _, found in results):
        return images  # all crops already: to_batch checks them exactly as without alignment
    return [crop for crop, _ in results]  # a list: to_batch checks each and names a bad one
