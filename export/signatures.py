"""The TensorFlow functions every export is built from: images -> L2-normalized embeddings.

Both functions wrap the Keras embedding model, whose first layer already normalizes pixels
(``(x - 127.5) / 127.5``), and add the L2 normalization, so exported graphs follow the
contract of ``docs/export.md``: ``images`` float32 ``[None, S, S, 3]`` 0..255 in, ``embeddings``
float32 ``[None, D]`` of unit norm out.
"""

from keras_arcface.inference.contract import BYTES_INPUT_NAME, INPUT_NAME, OUTPUT_NAME
from keras_arcface.inference.runtimes import KerasRuntime


def check_embedding_model(model):
    """Validates that ``model`` follows the embedding-model contract; returns ``(S, D)``.

    Args:
        model: A ``keras.Model`` with one input ``[None, S, S, 3]`` and one ``[None, D]`` output.

    Example:
    >>> check_embedding_model(keras_arcface.models.get_backbone("mbf"))  # doctest: +SKIP
    (112, 512)
    """
    runtime = KerasRuntime(model)
    return runtime.image_size, runtime.embedding_dim


def image_signature(image_size, dtype="float32"):
    """The ``images`` input spec: ``[None, S, S, 3]`` (dynamic batch).

    Example:
    >>> image_signature(112)  # doctest: +SKIP
    TensorSpec(shape=(None, 112, 112, 3), dtype=tf.float32, name='images')
    """
    import tensorflow as tf

    return tf.TensorSpec([None, image_size, image_size, 3], dtype, name=INPUT_NAME)


def embedding_function(model):
    """Returns a ``tf.function`` ``images -> {"embeddings": unit-norm float32 [B, D]}``.

    Args:
        model: A Keras embedding model (see :func:`check_embedding_model`).

    Example:
    >>> serve = embedding_function(backbone)  # doctest: +SKIP
    >>> serve(images)["embeddings"].shape  # doctest: +SKIP
    TensorShape([8, 512])
    """
    import tensorflow as tf

    image_size, _ = check_embedding_model(model)

    @tf.function(input_signature=[image_signature(image_size)])
    def serve(images):
        embeddings = tf.cast(model(images, training=False), tf.float32)
        return {OUTPUT_NAME: tf.math.l2_normalize(embeddings, axis=-1, epsilon=1e-12)}

    return serve


def bytes_embedding_function(model, serve=None):
    """Returns a ``tf.function`` ``image_bytes [None] string -> {"embeddings": ...}``.

    Each string is an encoded JPEG/PNG/BMP/GIF image (what TF Serving's REST API receives as
    ``{"b64": ...}``); it is decoded to RGB (grayscale files are expanded to three channels),
    resized bilinearly to ``S x S`` when its size differs, then embedded like ``images``.

    Args:
        model: A Keras embedding model.
        serve: The function from :func:`embedding_function`, to share its trace.

    Example:
    >>> serve_bytes = bytes_embedding_function(backbone)  # doctest: +SKIP
    >>> serve_bytes(tf.constant([open("face.jpg", "rb").read()]))  # doctest: +SKIP
    """
    import tensorflow as tf

    image_size, _ = check_embedding_model(model)
    serve = serve or embedding_function(model)

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        image = tf.cond(
            tf.reduce_all(tf.shape(image)[:2] == image_size),
            lambda: image,
            lambda: tf.image.resize(image, (image_size, image_size), method="bilinear"),
        )
        return tf.ensure_shape(image, [image_size, image_size, 3])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT_NAME)])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        )
        return serve(images)

    return serve_bytes
