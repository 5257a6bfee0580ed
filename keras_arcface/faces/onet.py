"""MTCNN's output network (ONet) rebuilt in Keras 3, with the weights the ``mtcnn`` wheel ships.

ONet (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", IEEE SPL 2016) looks at a 48x48 face patch and returns a face probability, a box
correction and five landmarks as fractions of the patch: sub-pixel points, where the fast box
detectors give whole pixels. Here it refines the landmarks of another detector's faces (see
``keras_arcface.faces.detect``). It is a plain functional Keras model, so it saves, runs on any
backend and converts to TFLite with builtin ops only.

The weights are read from the installed ``mtcnn`` package (MIT licence, ``assets/weights/
onet.lz4``, a joblib list of arrays) without importing that package's code; nothing is downloaded.
"""

import importlib.util
import os

import numpy as np

PATCH_SIZE = 48
_INSTALL_HINT = (
    "The landmark network's weights come from the `mtcnn` package (no download): "
    'pip install "keras-arcface[faces]" (or: pip install mtcnn lz4 joblib).'
)
# (layer name, weight shapes) in the order of the arrays in onet.lz4.
_LAYERS = (
    ("conv1", 2),
    ("prelu1", 1),
    ("conv2", 2),
    ("prelu2", 1),
    ("conv3", 2),
    ("prelu3", 1),
    ("conv4", 2),
    ("prelu4", 1),
    ("fc5", 2),
    ("prelu5", 1),
    ("fc6_1", 2),
    ("fc6_2", 2),
    ("fc6_3", 2),
)


def build_onet():
    """Builds ONet as a functional Keras model (random weights).

    Input ``patches``: float32 ``[B, 48, 48, 3]``, RGB normalized as ``(x - 127.5) / 128``.
    Outputs, in order: box offsets ``[B, 4]`` (fractions of the patch side), landmarks
    ``[B, 10]`` (x1..x5 then y1..y5, fractions of the patch) and face probabilities ``[B, 2]``.

    Example:
    >>> build_onet().output_shape
    [(None, 4), (None, 10), (None, 2)]
    """
    import keras
    from keras import layers

    inputs = keras.Input((PATCH_SIZE, PATCH_SIZE, 3), name="patches")
    x = inputs
    blocks = ((32, 3, 3, "same"), (64, 3, 3, "valid"), (64, 3, 2, "same"), (128, 2, 0, None))
    for index, (filters, kernel, pool, pool_padding) in enumerate(blocks, start=1):
        x = layers.Conv2D(filters, kernel, name=f"conv{index}")(x)
        x = layers.PReLU(shared_axes=[1, 2], name=f"prelu{index}")(x)
        if pool:
            x = layers.MaxPooling2D(pool, strides=2, padding=pool_padding, name=f"pool{index}")(x)
    # The original Caffe network flattened in (x, y) order: transpose before the dense layers.
    x = layers.Permute((2, 1, 3), name="permute")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.PReLU(name="prelu5")(layers.Dense(256, name="fc5")(x))
    boxes = layers.Dense(4, name="fc6_1")(x)
    landmarks = layers.Dense(10, name="fc6_2")(x)
    scores = layers.Dense(2, activation="softmax", name="fc6_3")(x)
    return keras.Model(inputs, [boxes, landmarks, scores], name="onet")


def onet_weights_path():
    """Path of ``onet.lz4`` inside the installed ``mtcnn`` package (its code is not imported).

    Raises:
        ImportError: with an install hint when ``mtcnn`` is not installed.
    """
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The `mtcnn` package is not installed. {_INSTALL_HINT}")
    path = os.path.join(spec.submodule_search_locations[0], "assets", "weights", "onet.lz4")
    if not os.path.isfile(path):
        raise ImportError(f"The installed `mtcnn` package has no {path}. {_INSTALL_HINT}")
    return path


def load_onet(path=None):
    """Builds ONet and loads MTCNN's trained weights into it.

    Args:
        path: A joblib weight file; default the one shipped in the ``mtcnn`` wheel.

    Example:
    >>> onet = load_onet()  # doctest: +SKIP
    """
    try:
        import joblib
    except ImportError as error:
        raise ImportError(f"`joblib` is needed to read ONet's weights. {_INSTALL_HINT}") from error
    arrays = joblib.load(path or onet_weights_path())
    expected = sum(count for _, count in _LAYERS)
    if len(arrays) != expected:
        raise ValueError(
            f"Expected {expected} weight arrays in the ONet weight file. "
            f"Received: len(arrays)={len(arrays)}"
        )
    model = build_onet()
    start = 0
    for name, count in _LAYERS:
        model.get_layer(name).set_weights([np.asarray(a) for a in arrays[start : start + count]])
        start += count
    return model


def export_onet_tflite(path, model=None):
    """Writes ONet as a TFLite flatbuffer (builtin ops only), for apps that align on device.

    The phone app runs a box detector (YuNet: libfacedetection or OpenCV's ``FaceDetectorYN``),
    then this network on upright 48x48 patches, as ``keras_arcface.faces.ONetRefiner`` does.
    Input ``[1, 48, 48, 3]`` float32 normalized as ``(x - 127.5) / 128``; outputs as
    :func:`build_onet`.

    Args:
        path: The ``.tflite`` file to write (atomically).
        model: An ONet model; default :func:`load_onet`.

    Example:
    >>> export_onet_tflite("export/onet.tflite")  # doctest: +SKIP
    """
    import tempfile

    import keras
    import tensorflow as tf

    from keras_arcface._io import atomic_write_bytes

    model = model if model is not None else load_onet()
    with tempfile.TemporaryDirectory() as folder:
        # Through a SavedModel: the converter then freezes the weights into constants.
        archive = keras.export.ExportArchive()
        archive.track(model)
        spec = tf.TensorSpec([1, PATCH_SIZE, PATCH_SIZE, 3], tf.float32, name="patches")
        archive.add_endpoint("serve", lambda patches: model(patches, training=False), [spec])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    return atomic_write_bytes(path, flatbuffer)
