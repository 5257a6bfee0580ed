"""Rendering many identities: JPEG encoding and the process pool, in identity order."""

import concurrent.futures
import io
import multiprocessing
import os

import numpy as np

from keras_arcface.data.synthetic.difficulty import SyntheticDifficulty, _check_counts
from keras_arcface.data.synthetic.image import render_sample
from keras_arcface.data.synthetic.traits import identity_traits

HELDOUT_INDEX_OFFSET = 1_000_000


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
    indices = range(offset, offset + num_identities)
    rendered = _render_many(
        seed, indices, images_per_identity, image_size, knobs, jpeg, workers, progress, "rendering"
    )
    images = np.empty((num_identities * images_per_identity, image_size, image_size, 3), np.uint8)
    items = (item for identity in rendered for item in identity)
    for position, item in enumerate(items):
        images[position] = _decode_jpeg(item) if jpeg else item[0]
    labels = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    return images, labels


def _decode_jpeg(data):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
