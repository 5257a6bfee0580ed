"""``Embedder``: one inference API over every keras-arcface model format."""

import warnings

import numpy as np

from keras_arcface._deprecation import renamed_function
from keras_arcface._math import l2_normalize as _l2_normalize
from keras_arcface.inference.contract import DEFAULT_THRESHOLD
from keras_arcface.inference.face_input import aligned_batch, check_align, faces_of
from keras_arcface.inference.images import to_batch
from keras_arcface.inference.runtimes import KerasRuntime, open_runtime


def l2_normalize(embeddings, epsilon=1e-12):
    """Scales each row to unit L2 norm, as float32 (rows of zeros stay zero).

    Args:
        embeddings: Array ``[B, D]``.
        epsilon: Floor of the squared norm, 1e-12 (as the exported serving graph).

    Example:
    >>> l2_normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]], dtype=float32)
    """
    return _l2_normalize(embeddings, axis=-1, epsilon=epsilon).astype(np.float32)


l2_normalise = renamed_function(l2_normalize, "l2_normalise")


UNCALIBRATED = (
    f"the uncalibrated default {DEFAULT_THRESHOLD}: a guess, not measured for this model "
    "(run `keras-arcface calibrate MODEL --bin PAIRS.bin [--far 1e-3]`)"
)


class Embedder:
    """Computes L2-normalized face embeddings with a model in any supported format.

    ``Embedder.load`` reads a ``.keras`` embedding model, a run folder (its
    ``embedding_best.keras``, else ``embedding_latest.keras``), a SavedModel directory, a
    ``.tflite`` file (run by the standalone LiteRT interpreter) or an ``.onnx`` file (run by
    onnxruntime). All of them take RGB 112x112 images with pixel values 0..255 (ArcFace, Deng et
    al., arXiv 1801.07698, compares such embeddings by cosine similarity).

    Args:
        runtime: A runtime from ``keras_arcface.inference.runtimes`` (use ``load`` or
            ``from_model`` instead of building one by hand).
        threshold: Cosine-similarity threshold used by ``verify``; default: the one recorded in
            the model's metadata (``keras-arcface calibrate``, or ``export --bin``), else 0.3,
            an uncalibrated guess. ``threshold_source`` says which one is in use.
        batch_size: Images per forward pass, 32.
        detector: The face detector for raw photos (a ``keras_arcface.faces.Detector`` or a
            name); default ``"yunet_onet"``, built the first time a photo needs aligning.

    Example:
    >>> embedder = Embedder.load("runs/demo")  # doctest: +SKIP
    >>> embedder.embed(["a.jpg", "b.jpg"]).shape  # doctest: +SKIP
    (2, 512)
    >>> similarity, same = embedder.verify("a.jpg", "b.jpg")  # doctest: +SKIP
    """

    def __init__(self, runtime, *, threshold=None, batch_size=32, detector=None):
        if int(batch_size) < 1:
            raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
        self.runtime = runtime
        self._detector = detector
        self._aligner = None
        self.batch_size = int(batch_size)
        if threshold is not None:
            self.threshold_source = "given by the caller"
        elif "threshold" in runtime.metadata:
            threshold = runtime.metadata["threshold"]
            self.threshold_source = runtime.metadata.get("threshold_source", "model metadata")
        else:
            threshold = DEFAULT_THRESHOLD
            self.threshold_source = UNCALIBRATED
        self.threshold = _check_threshold(threshold)

    @classmethod
    def load(
        cls,
        path,
        *,
        threshold=None,
        batch_size=32,
        num_threads=None,
        detector=None,
        fold_batch_norm=True,
    ):
        """Loads a model from ``path`` in any supported format.

        Args:
            path: ``.keras`` file, run folder, SavedModel directory, ``.tflite`` or ``.onnx``.
            threshold: See the class docstring.
            batch_size: Images per forward pass, 32.
            num_threads: Threads for LiteRT and onnxruntime (``None``: their default).
            detector: See the class docstring.
            fold_batch_norm: For a ``.keras`` model (or run folder): fold each batch norm
                that follows a convolution or the FC into it
                (``keras_arcface.models.fold_batch_norm``; the same embeddings up to float
                rounding, fewer ops). Default ``True``; ``False`` runs the model as saved.
                Exported formats are folded already (SavedModel) or by their converter.

        Example:
        >>> Embedder.load("export/model_int8.tflite").format  # doctest: +SKIP
        'tflite'
        """
        runtime = open_runtime(path, num_threads=num_threads, fold_batch_norm=fold_batch_norm)
        return cls(runtime, threshold=threshold, batch_size=batch_size, detector=detector)

    @classmethod
    def from_model(cls, model, *, threshold=None, batch_size=32, detector=None):
        """Wraps an in-memory Keras embedding model.

        Args:
            model: ``keras.Model`` following the embedding-model contract.
            threshold: See the class docstring.
            batch_size: Images per forward pass, 32.

        Example:
        >>> backbone = keras_arcface.models.get_backbone("mbf")  # doctest: +SKIP
        >>> embedder = Embedder.from_model(backbone)  # doctest: +SKIP
        """
        return cls(
            KerasRuntime(model), threshold=threshold, batch_size=batch_size, detector=detector
        )

    @property
    def format(self):
        """The model format: ``keras``, ``saved_model``, ``tflite`` or ``onnx``."""
        return self.runtime.format

    @property
    def embedding_dim(self):
        """Size ``D`` of the embeddings."""
        return self.runtime.embedding_dim

    @property
    def image_size(self):
        """Side of the square input image (112)."""
        return self.runtime.image_size

    @property
    def metadata(self):
        """The artifact's metadata (empty for ``.keras`` models)."""
        return dict(self.runtime.metadata)

    @property
    def aligner(self):
        """The ``FaceAligner`` used for raw photos (built on first use; needs ``[faces]``)."""
        if self._aligner is None:
            from keras_arcface.faces.aligner import FaceAligner

            self._aligner = FaceAligner(detector=self._detector, image_size=self.image_size)
        return self._aligner

    def embed(self, images, align="auto", face="only"):
        """Returns the float32 L2-normalized embeddings ``[B, D]`` of ``images``, one per image.

        Args:
            images: One ``[H, W, 3]`` array, an ``[N, H, W, 3]`` batch (uint8 or float32, RGB,
                values 0..255), an image file path, encoded bytes, or a list of those.
            align: ``"auto"`` (default): detect and align every image that is not already a
                112x112 crop; ``True``: always; ``False``: never (other sizes are resized to
                112x112 with a warning). See ``docs/faces.md``.
            face: With alignment, which face of a photo: ``"only"`` (default; no face or
                several faces is an error) or ``"largest"``. For every face of a group photo
                use :meth:`embed_faces`.

        Example:
        >>> embedder.embed(np.zeros((4, 112, 112, 3), np.uint8)).shape  # doctest: +SKIP
        (4, 512)
        >>> embedder.embed("holiday.jpg", face="largest").shape  # doctest: +SKIP
        (1, 512)
        """
        align = check_align(align)
        if align is not False:
            images = aligned_batch(images, align, self.aligner, face)
        return self._embed_batch(to_batch(images, self.image_size))

    def embed_faces(self, photo, align="auto"):
        """One embedding per face of ``photo``, with where the face is.

        Args:
            photo: A path, encoded bytes or an RGB array.
            align: ``"auto"``: an aligned 112x112 crop is embedded as it is; ``True``: detect
                even then.

        Returns:
            A list (best detection score first) of dicts: ``embedding`` (float32 ``[D]``),
            ``box``, ``score``, ``landmark_score``, ``landmarks`` (named ``[x, y]`` points in
            the photo; all ``None`` for a crop passed through). Empty when there is no face.

        Example:
        >>> [face["box"] for face in embedder.embed_faces("group.jpg")]  # doctest: +SKIP
        """
        if check_align(align) is False:
            raise ValueError(
                "embed_faces finds faces; use embed() for align=False. Received: align=False"
            )
        pairs = faces_of(photo, 0, align, self.aligner, "all")
        if not pairs:
            return []
        embeddings = self._embed_batch(to_batch(np.stack([crop for crop, _ in pairs])))
        results = []
        for embedding, (_, face) in zip(embeddings, pairs):
            where = face.to_dict() if face is not None else dict.fromkeys(_FACE_KEYS)
            results.append({"embedding": embedding, **where})
        return results

    def _embed_batch(self, batch):
        parts = [
            self.runtime(batch[start : start + self.batch_size])
            for start in range(0, batch.shape[0], self.batch_size)
        ]
        return l2_normalize(np.concatenate(parts, axis=0))

    def verify(self, image_a, image_b, threshold=None, align="auto", face="only"):
        """Decides whether two faces belong to one person.

        The similarity is the cosine of the two embeddings; the pair matches when it is at least
        ``threshold``. The threshold in use and where it comes from are ``self.threshold`` and
        ``self.threshold_source``; with neither a calibrated threshold in the model's metadata
        nor an explicit one, the default 0.3 is a guess and a ``UserWarning`` says so.
        Calibrate with ``keras-arcface calibrate MODEL --bin PAIRS.bin [--far 1e-3]``.
        Raw photos are detected and aligned (see :meth:`embed`); a photo with no face, or
        several faces under the default ``face="only"``, is an error that says so.

        Args:
            image_a: One image (array, path or bytes), or a batch of N.
            image_b: One image, or a batch of the same length N.
            threshold: Cosine threshold; default ``self.threshold``.
            align: ``"auto"``, ``True`` or ``False``, as in :meth:`embed`.
            face: ``"only"`` or ``"largest"``, as in :meth:`embed`.

        Returns:
            ``(similarity, is_same)``: a float and a bool for one pair, arrays ``[N]`` for N.

        Example:
        >>> similarity, is_same = embedder.verify("a.jpg", "b.jpg", threshold=0.3)  # doctest: +SKIP
        """
        if threshold is None and self.threshold_source == UNCALIBRATED:
            warnings.warn(f"Embedder.verify used {UNCALIBRATED}.", UserWarning, stacklevel=2)
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        first = self.embed(image_a, align=align, face=face)
        second = self.embed(image_b, align=align, face=face)
        if first.shape[0] != second.shape[0]:
            raise ValueError(
                "Expected as many images in image_a as in image_b. "
                f"Received: len(image_a)={first.shape[0]}, len(image_b)={second.shape[0]}"
            )
        similarity = np.sum(first.astype(np.float64) * second, axis=-1)
        is_same = similarity >= threshold
        if similarity.shape[0] == 1:
            return float(similarity[0]), bool(is_same[0])
        return similarity.astype(np.float32), is_same

    def __repr__(self):
        return (
            f"Embedder(format={self.format!r}, embedding_dim={self.embedding_dim}, "
            f"threshold={self.threshold})"
        )


_FACE_KEYS = ("box", "score", "landmark_score", "landmarks")


def _check_threshold(threshold):
    try:
        value = float(threshold)
    except (TypeError, ValueError) as error:
        raise TypeError(f"Expected a number. Received: threshold={threshold!r}") from error
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"Expected a cosine threshold in [-1, 1]. Received: threshold={value}")
    return value
