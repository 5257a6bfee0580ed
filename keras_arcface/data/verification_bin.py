"""InsightFace ``.bin`` verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin, ...).

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``2N`` encoded images (pair ``k`` is
``bins[2k], bins[2k+1]``) and ``N`` booleans. Entries are ``bytes`` or numpy uint8 arrays
of shape ``(L, 1)`` (what OpenCV's ``imencode`` returns). The files come from strangers
and a plain ``pickle.load`` runs whatever code the file names, so :func:`load_bin` reads
them through :class:`RestrictedUnpickler`, which resolves only the handful of numpy
globals such files contain and refuses everything else before it can run.
"""

import concurrent.futures
import dataclasses
import io
import os
import pickle

import numpy as np

from keras_arcface._io import atomic_open
from keras_arcface.data.errors import DataError, UnsafePickleError, bad_item


def _numpy_global(module, name):
    """The numpy object a safe ``.bin`` pickle may name, resolved for this numpy."""
    import importlib

    for candidate in (
        module,
        module.replace("numpy.core", "numpy._core"),
        module.replace("numpy._core", "numpy.core"),
    ):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError(f"numpy has no {module}.{name} in this version")


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles of Python 3 bytes call _codecs.encode(text, "latin1").
    if str(encoding).lower().replace("-", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(
            f"_codecs.encode is only allowed with latin1. Received: encoding={encoding!r}"
        )
    return text.encode("latin1")


# (module, name) pairs a verification .bin may reference: numpy array reconstruction and
# dtypes (both numpy 1 "numpy.core" and numpy 2 "numpy._core" spellings).
_ALLOWED_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _check_array_size(shape, dtype, limit, what):
    """Refuses an array the pickle asks numpy to allocate if the file could not hold it."""
    try:
        dims = shape if isinstance(shape, (tuple, list)) else (shape,)
        count = 1
        for size in dims:
            count *= int(size)
        wanted = count * np.dtype(dtype).itemsize
    except (TypeError, ValueError) as error:
        raise UnsafePickleError(f"{what} of shape {shape!r}, dtype {dtype!r}: {error}") from None
    if limit is not None and wanted > limit:
        raise UnsafePickleError(
            f"{what} asks for an array of {wanted} bytes, more than the {limit}-byte file can "
            "hold: the .bin is damaged or crafted to exhaust memory."
        )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only knows numpy arrays, dtypes, bytes and plain containers.

    Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
    :class:`~keras_arcface.data.errors.UnsafePickleError` naming it, before it is called.
    Arrays the pickle asks numpy to allocate (``numpy.ndarray(shape, dtype)``,
    ``_reconstruct``) may not be larger than ``max_bytes`` (the file's own size in
    :func:`restricted_loads`): a 17 KB file cannot ask for gigabytes.

    Args:
        file: the open binary file.
        max_bytes: the largest array it may allocate; ``None`` for no limit.
        **kwargs: passed to ``pickle.Unpickler`` (``encoding``).

    Example:
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps([b"x"]))).load()
        [b'x']
    """

    def __init__(self, file, *, max_bytes=None, **kwargs):
        super().__init__(file, **kwargs)
        limit = max_bytes

        class BoundedArray(np.ndarray):
            # Stands for numpy.ndarray: calling it allocates (checked); as the subtype
            # argument of _reconstruct it means a plain ndarray.
            def __new__(cls, shape, dtype=float, *args, **kwargs):
                _check_array_size(shape, dtype, limit, "numpy.ndarray")
                return np.ndarray.__new__(np.ndarray, shape, dtype, *args, **kwargs)

        self._array_type = BoundedArray
        self._limit = limit

    def _reconstruct(self, reconstruct, what):
        def build(subtype, shape, dtype, *args):
            if subtype not in (self._array_type, np.ndarray):
                raise UnsafePickleError(f"{what} of {subtype!r}: only numpy.ndarray is allowed")
            _check_array_size(shape, dtype, self._limit, what)
            return reconstruct(np.ndarray, shape, dtype, *args)

        return build

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return self._array_type
        if (module, name) in _ALLOWED_NUMPY:
            found = _numpy_global(module, name)
            if name == "_reconstruct":
                return self._reconstruct(found, f"{module}.{name}")
            return found
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafePickleError(
            f"Refused to load the global '{module}.{name}': a verification .bin may only "
            "contain encoded images (bytes or numpy uint8 arrays) and booleans. The file is "
            "not a .bin set or was crafted to run code."
        )


def restricted_loads(data):
    """Unpickles ``data`` with :class:`RestrictedUnpickler` (Python 2 pickles too).

    Example:
        >>> restricted_loads(pickle.dumps(([b"a", b"b"], [True])))
        ([b'a', b'b'], [True])
    """
    return RestrictedUnpickler(io.BytesIO(data), max_bytes=len(data), encoding="bytes").load()


@dataclasses.dataclass
class VerificationSet:
    """A decoded verification set.

    Args:
        images: uint8 ``[2N, H, W, 3]`` RGB; pair ``k`` is ``images[2k], images[2k+1]``.
        issame: bool ``[N]``, ``True`` where the pair shows one identity.
        name: the set's name (the file name without ``.bin``).

    Example:
        >>> vs = VerificationSet(np.zeros((2, 112, 112, 3), np.uint8), np.array([True]), "x")
        >>> vs.num_pairs
        1
    """

    images: np.ndarray
    issame: np.ndarray
    name: str = ""

    @property
    def num_pairs(self):
        return int(self.issame.shape[0])

    def pairs(self):
        """Returns ``(first images [N,...], second images [N,...], issame [N])``."""
        return self.images[0::2], self.images[1::2], self.issame


def _entry_bytes(entry, index):
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry)
    if isinstance(entry, np.ndarray):
        if entry.dtype != np.uint8:
            raise DataError(
                f"Entry {index} of the .bin is a numpy array of dtype {entry.dtype}; "
                "expected encoded bytes as uint8."
            )
        return entry.tobytes()
    raise DataError(
        f"Entry {index} of the .bin is a {type(entry).__name__}; expected bytes or a numpy "
        "uint8 array."
    )


def decode_image(encoded, image_size=None, source=""):
    """Decodes encoded image bytes to uint8 RGB ``[H, W, 3]`` with ``faces.read_photo``.

    Args:
        encoded: encoded image bytes.
        image_size: ``(height, width)`` the image must have, or ``None``.
        source: what the bytes are, for the error message.

    Example:
        >>> decode_image(png_bytes).shape  # doctest: +SKIP
        (112, 112, 3)
    """
    from keras_arcface.faces.photos import read_photo

    array = read_photo(bytes(encoded), source or "<bytes>")
    if image_size is not None and array.shape[:2] != tuple(image_size):
        raise bad_item(
            "unexpected image size",
            source,
            f"{array.shape[0]}x{array.shape[1]}, expected {image_size[0]}x{image_size[1]}",
        )
    return array


def _issame_array(values, where):
    """The pair labels as a bool array; anything but booleans (or 0/1) is refused."""
    try:
        values = list(values)
    except TypeError:
        raise DataError(f"{where}: issame must be a list of booleans.") from None
    for index, value in enumerate(values):
        is_bool = isinstance(value, (bool, np.bool_))
        is_bit = isinstance(value, (int, np.integer)) and value in (0, 1)
        if not (is_bool or is_bit):
            raise DataError(
                f"{where}: issame[{index}] is {value!r} ({type(value).__name__}); pair labels "
                "must be booleans (bool('False') would be True, so strings are refused)."
            )
    return np.asarray([bool(value) for value in values], dtype=bool)


def load_bin(path, image_size=(112, 112), num_workers=None):
    """Reads an InsightFace ``.bin`` verification set safely.

    Args:
        path: the ``.bin`` file.
        image_size: ``(height, width)`` every image must have (``None`` accepts any size
            as long as all agree).
        num_workers: decoding threads (default: CPU count).

    Returns:
        A :class:`VerificationSet` with uint8 RGB images ``[2N, H, W, 3]``.

    Raises:
        UnsafePickleError: the pickle names anything but numpy arrays/dtypes.
        DataError: malformed content (counts, entry types, corrupt or wrongly sized images).

    Example:
        >>> lfw = load_bin("lfw.bin")  # doctest: +SKIP
        >>> lfw.images.shape, lfw.issame.shape  # doctest: +SKIP
        ((12000, 112, 112, 3), (6000,))
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        content = restricted_loads(data)
    except UnsafePickleError:
        raise
    except Exception as error:
        raise DataError(
            f"{path} is not a readable .bin pickle ({type(error).__name__}: {error})"
        ) from None
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise DataError(f"{path}: expected a pickled (bins, issame_list) pair.")
    bins, issame = content
    issame = _issame_array(issame, path)
    if not len(issame):
        raise DataError(
            f"{path} holds no pairs (an empty issame list): nothing to verify. Rebuild it "
            "with `keras-arcface convert bin`."
        )
    if len(bins) != 2 * len(issame):
        raise DataError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; expected twice as many images."
        )
    encoded = [_entry_bytes(entry, index) for index, entry in enumerate(bins)]
    workers = num_workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(
            pool.map(
                lambda item: decode_image(item[1], image_size, f"{path}[{item[0]}]"),
                enumerate(encoded),
            )
        )
    if images and len({image.shape for image in images}) > 1:
        raise DataError(f"{path}: images of different sizes; pass image_size to check them.")
    stacked = np.stack(images)  # at least one pair, checked above
    name = os.path.splitext(os.path.basename(path))[0]
    return VerificationSet(images=stacked, issame=issame, name=name)


def encode_image(image, image_format="jpeg", quality=95):
    """Encodes a uint8 RGB ``[H, W, 3]`` array as JPEG or PNG bytes.

    Example:
        >>> data = encode_image(np.zeros((112, 112, 3), np.uint8), "png")
    """
    from PIL import Image

    from keras_arcface.faces.photos import read_photo

    buffer = io.BytesIO()
    # read_photo scales uint16 pixels (a cast to uint8 would wrap them) and refuses other dtypes.
    pil = Image.fromarray(read_photo(np.asarray(image), "image to encode"))
    if image_format == "jpeg":
        pil.save(buffer, format="JPEG", quality=int(quality))
    elif image_format == "png":
        pil.save(buffer, format="PNG")
    else:
        raise ValueError(
            f"`image_format` must be 'jpeg' or 'png'. Received: image_format={image_format!r}"
        )
    return buffer.getvalue()


def write_bin(
    path, images_or_encoded, issame, *, entry_type="bytes", image_format="jpeg", quality=95
):
    """Writes a ``.bin`` verification set readable by InsightFace tools and :func:`load_bin`.

    Args:
        path: output file (written to a temporary name, then renamed).
        images_or_encoded: a uint8 array ``[2N, H, W, 3]`` or a sequence of ``2N`` encoded
            images (bytes) / uint8 arrays.
        issame: ``N`` booleans.
        entry_type: ``"bytes"`` (what most files hold) or ``"ndarray"`` (uint8 ``(L, 1)``
            arrays, as OpenCV-based writers produce).
        image_format: encoding for raw images: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality for raw images.

    Example:
        >>> write_bin("pairs.bin", images, issame)  # doctest: +SKIP
    """
    if entry_type not in ("bytes", "ndarray"):
        raise ValueError(
            f"`entry_type` must be 'bytes' or 'ndarray'. Received: entry_type={entry_type!r}"
        )
    issame = _issame_array(issame, "write_bin").tolist()
    if len(images_or_encoded) != 2 * len(issame):
        raise ValueError(
            f"Expected 2 images per pair ({2 * len(issame)} for {len(issame)} pairs). "
            f"Received: len(images_or_encoded)={len(images_or_encoded)}"
        )
    encoded = []
    for item in images_or_encoded:
        if isinstance(item, (bytes, bytearray)):
            encoded.append(bytes(item))
        elif isinstance(item, np.ndarray) and item.ndim == 3:
            encoded.append(encode_image(item, image_format, quality))
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim <= 2:
            encoded.append(item.tobytes())
        else:
            raise TypeError(
                "Each image must be encoded bytes, an encoded uint8 array, or a uint8 "
                f"[H, W, 3] image. Received: type={type(item).__name__}"
            )
    if entry_type == "ndarray":
        bins = [np.frombuffer(data, dtype=np.uint8).reshape(-1, 1).copy() for data in encoded]
    else:
        bins = encoded
    path = os.fspath(path)
    with atomic_open(path, "wb") as handle:
        pickle.dump((bins, issame), handle, protocol=4)
    return path
