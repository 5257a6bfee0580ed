"""Pair lists for verification sets: LFW ``pairs.txt``, pairs drawn from a folder, ``.bin``.

LFW's ``pairs.txt`` optionally starts with ``folds<TAB>pairs_per_fold``; then each line is
``name<TAB>i<TAB>j`` (a matched pair: ``name/name_000i.jpg`` and ``name/name_000j.jpg``)
or ``name1<TAB>i<TAB>name2<TAB>j`` (a mismatched pair).
"""

import dataclasses
import os

import numpy as np

from keras_arcface.data.errors import SkipReport, check_on_error, handle_data_error


@dataclasses.dataclass
class PairList:
    """Image paths of verification pairs.

    Args:
        paths: ``2N`` image paths; pair ``k`` is ``paths[2k], paths[2k+1]``.
        issame: bool ``[N]``.

    Example:
        >>> pairs = PairList(["a/1.jpg", "a/2.jpg"], np.array([True]))
        >>> pairs.num_pairs
        1
    """

    paths: list
    issame: np.ndarray

    @property
    def num_pairs(self):
        return int(len(self.issame))


def read_pairs_txt(path, image_root, *, extension="jpg", check_exists=True):
    """Reads an LFW-style ``pairs.txt``.

    Args:
        path: the pairs file.
        image_root: folder with one sub-folder per name (``image_root/name/name_0001.jpg``).
        extension: image file extension.
        check_exists: raise if an image file is missing.

    Returns:
        A :class:`PairList`.

    Example:
        >>> pairs = read_pairs_txt("lfw/pairs.txt", "lfw/images")  # doctest: +SKIP
    """

    def image_path(name, index):
        return os.path.join(os.fspath(image_root), name, f"{name}_{int(index):04d}.{extension}")

    paths, issame = [], []
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if line.strip()]
    for number, fields in enumerate(lines, 1):
        try:
            if len(fields) == 2 and number == 1:
                int(fields[0]), int(fields[1])  # the "folds pairs_per_fold" header
                continue
            if len(fields) == 3:
                paths += [image_path(fields[0], fields[1]), image_path(fields[0], fields[2])]
                issame.append(True)
            elif len(fields) == 4:
                paths += [image_path(fields[0], fields[1]), image_path(fields[2], fields[3])]
                issame.append(False)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected 'name i j' or 'name1 i name2 j'. "
                f"Received: line={' '.join(fields)!r}"
            ) from None
    if check_exists:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) of {path} are missing under the image root, e.g. "
                f"{missing[0]}. Received: image_root={os.fspath(image_root)!r}"
            )
    return PairList(paths, np.asarray(issame, dtype=bool))


def make_pairs(labels, num_pairs, seed=0):
    """Balanced same/different pairs of indices into ``labels``.

    Half the pairs join two different images of one identity, half join images of two
    identities; no pair repeats; the order is shuffled so that the protocol's contiguous
    folds each hold both kinds.

    Args:
        labels: int ``[M]`` identity of each image.
        num_pairs: pairs wanted.
        seed: integer seed.

    Returns:
        ``(pairs int64 [P, 2], issame bool [P])``; ``P`` is smaller than ``num_pairs`` only
        when the labels do not allow that many distinct pairs.

    Example:
        >>> pairs, issame = make_pairs(np.repeat(np.arange(4), 3), 10, seed=0)
        >>> pairs.shape, int(issame.sum())
        ((10, 2), 5)
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 2])
    by_label = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    multi = [label for label, idx in by_label.items() if len(idx) >= 2]
    classes = list(by_label)
    if not multi or len(classes) < 2:
        raise ValueError(
            "Pairs need >= 2 identities and one with >= 2 images. "
            f"Received: num_identities={len(classes)}"
        )
    num_same = num_pairs // 2
    pairs, issame, seen = [], [], set()
    attempts = 0
    while len(pairs) < num_pairs and attempts < num_pairs * 50:
        attempts += 1
        same = len(pairs) < num_same
        if same:
            i, j = rng.choice(by_label[multi[rng.integers(len(multi))]], 2, replace=False)
        else:
            first, second = rng.choice(len(classes), 2, replace=False)
            i, j = rng.choice(by_label[classes[first]]), rng.choice(by_label[classes[second]])
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        pairs.append((i, j))
        issame.append(same)
    order = rng.permutation(len(pairs))
    return np.asarray(pairs, dtype=np.int64)[order], np.asarray(issame, dtype=bool)[order]


def pairs_from_folder(image_root, num_pairs, seed=0):
    """Draws balanced pairs from an image folder (one sub-folder per identity).

    Example:
        >>> pairs = pairs_from_folder("faces", 3000)  # doctest: +SKIP
    """
    from keras_arcface.data.image_folder import scan_image_folder

    _, items, _ = scan_image_folder(image_root)
    if not items:
        raise ValueError(f"No images found. Received: image_root={os.fspath(image_root)!r}")
    index_pairs, issame = make_pairs([label for _, label in items], num_pairs, seed)
    paths = [items[i][0] for pair in index_pairs for i in pair]
    return PairList(paths, issame)


def _cached_loader(image_size, resize, image_format, transform=None):
    """``load(path)``: the checked, encoded image of ``path``, read once however many pairs
    use it; an unreadable or bad image raises ``DataError``."""
    from keras_arcface.data.errors import bad_item
    from keras_arcface.data.image_codec import prepare_image

    cache = {}

    def load(path):
        if path not in cache:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError as error:
                raise bad_item("unreadable file", path, str(error)) from None
            cache[path] = prepare_image(
                data,
                path,
                image_size=image_size,
                resize=resize,
                image_format=image_format,
                transform=transform,
            )[0]
        return cache[path]

    return load


def write_pairs_bin(
    pairs,
    out_path,
    *,
    image_size=(112, 112),
    resize=False,
    image_format="keep",
    on_error="raise",
    entry_type="bytes",
    transform=None,
):
    """Writes a ``.bin`` verification set from a :class:`PairList`.

    Images are checked (corrupt, wrong size) and stored as JPEG (JPEG files byte for byte)
    or PNG. With ``on_error="skip"`` a pair with a bad image is dropped and counted.

    Args:
        pairs: the :class:`PairList`.
        out_path: the ``.bin`` to write (atomically).
        image_size: ``(height, width)`` the images must have.
        resize: resize images of another size.
        image_format: ``"keep"``, ``"jpeg"`` or ``"png"``.
        on_error: ``"raise"`` or ``"skip"``.
        entry_type: ``"bytes"`` or ``"ndarray"`` entries.
        transform: optional ``transform(pixels, name) -> pixels`` on each decoded image,
            e.g. ``keras_arcface.faces.AlignTransform()`` to detect and align faces.

    Returns:
        ``(path, SkipReport)``.

    Example:
        >>> write_pairs_bin(read_pairs_txt("pairs.txt", "lfw"), "lfw.bin")  # doctest: +SKIP
    """
    from keras_arcface.data.errors import DataError
    from keras_arcface.data.verification_bin import write_bin

    check_on_error(on_error)
    report = SkipReport()
    encoded, issame = [], []
    load = _cached_loader(image_size, resize, image_format, transform)
    for k in range(pairs.num_pairs):
        try:
            first, second = load(pairs.paths[2 * k]), load(pairs.paths[2 * k + 1])
        except DataError as error:
            handle_data_error(on_error, report, error)
            continue
        encoded += [first, second]
        issame.append(bool(pairs.issame[k]))
    if not issame:
        raise ValueError(f"No valid pairs to write. {report.summary()}")
    return write_bin(out_path, encoded, issame, entry_type=entry_type), report
