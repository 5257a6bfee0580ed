"""SavedModel export for TF Serving: ``serving_default`` (images) and ``serving_bytes``."""

import os

from keras_arcface._io import atomic_directory
from keras_arcface.export.signatures import (
    bytes_embedding_function,
    check_embedding_model,
    embedding_function,
)
from keras_arcface.inference.contract import (
    BYTES_SIGNATURE,
    contract_metadata,
    sidecar_path,
    write_json_atomic,
)


def export_saved_model(model, path, *, metadata=None, fold_batch_norm=True):
    """Writes ``model`` as a SavedModel with two serving signatures.

    ``serving_default``: ``images`` float32 ``[None, S, S, 3]`` (RGB, 0..255) -> ``embeddings``
    float32 ``[None, D]``, L2-normalized. ``serving_bytes``: ``image_bytes`` string ``[None]``
    (encoded JPEG/PNG) -> ``embeddings``. Only the embedding model's variables are saved. The
    contract metadata goes to ``keras_arcface.json`` inside the directory. The directory is
    written under a temporary name and renamed into place.

    By default the graph is traced from ``keras_arcface.models.fold_batch_norm(model)``: every
    batch norm right after a convolution or the FC is folded into its kernel and bias, so
    TensorFlow runs one op instead of a convolution plus the BN's elementwise ops (the same
    embeddings; the parity gate compares them with the unfolded Keras model).

    Args:
        model: A Keras embedding model (docs/architecture.md).
        path: Destination directory (replaced if it exists).
        metadata: Extra entries for the metadata sidecar.
        fold_batch_norm: Fold batch norms into the layers before them (default ``True``);
            ``False`` traces ``model`` as it is.

    Returns:
        ``path``.

    Example:
    >>> export_saved_model(backbone, "out/saved_model")  # doctest: +SKIP
    """
    import keras

    from keras_arcface.models import fold_batch_norm as fold

    image_size, embedding_dim = check_embedding_model(model)
    path = os.fspath(path)
    serve = embedding_function(fold(model) if fold_batch_norm else model)
    # No archive.track(model): the endpoints track the variables they use, and tracking the
    # model as well stores each variable twice for some models (mbf, r50: 2x the disk).
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint(BYTES_SIGNATURE, bytes_embedding_function(model, serve))
    with atomic_directory(path) as folder:
        archive.write_out(folder, verbose=False)
        write_json_atomic(
            sidecar_path(folder),
            contract_metadata(
                embedding_dim,
                image_size=image_size,
                format="saved_model",
                signatures={"serving_default": "images", BYTES_SIGNATURE: "image_bytes"},
                **(metadata or {}),
            ),
        )
    return path
