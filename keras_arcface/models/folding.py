"""Batch-norm folding: an inference copy of a model with each BN merged into the layer before it.

At inference a batch normalization is a fixed per-channel affine map,
``y = (z - mean) / sqrt(var + eps) * gamma + beta``. When ``z`` is the output of a linear
layer (convolution, depthwise convolution, fully connected) and nothing else reads ``z``, the
map is exact to merge into that layer: with ``s = gamma / sqrt(var + eps)`` the kernel's output
channel ``c`` is multiplied by ``s[c]`` and the bias becomes ``(bias - mean) * s + beta``.
PyTorch's inference kernels and TFLite's converter do the same; Keras runs the BN as separate
elementwise operations after every convolution.
"""

import collections

import keras
import numpy as np

# Linear layers whose output channels are the kernel's last axis (depthwise: last two axes).
FOLDABLE_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def fold_batch_norm(model):
    """Returns a new functional model, equal at inference, with batch norms folded into layers.

    Every ``BatchNormalization`` whose input is the output of a ``Conv2D`` (also
    ``GroupedConv2D``), ``DepthwiseConv2D`` or ``Dense`` layer is removed and folded into that
    layer's kernel and bias (the layer gets a bias if it had none), provided the fold is exact:
    the layer has no activation, is channels-last, is called once, and the BN (called once,
    normalizing the last axis) is the only reader of its output, which is not a model output.
    Every other batch norm stays, e.g. iResNet's ``bn1`` before a zero-padded convolution
    (padding the normalized map with zeros is not padding the raw one) or a BN after an
    ``Add``. The given model is not changed; unfolded layers keep their names, configs (dtype
    policies included) and weights, and folded layers keep their names.

    The folded values are computed in float64 from the stored weights and cast to each
    layer's variable dtype, so a mixed-precision model (``mixed_float16``: float32 variables,
    float16 compute) folds too; its folded layers then compute in the same precision as
    before. The result is for inference only: training it would no longer normalize batches.

    Args:
        model: A functional ``keras.Model`` (an embedding model from ``get_backbone``, or any
            other functional model; a nested model counts as one layer and is left as it is).

    Returns:
        A new functional ``keras.Model`` with the same inputs, outputs and name.

    Raises:
        TypeError: When ``model`` is not a functional Keras model.

    Example:
        >>> backbone = keras_arcface.models.get_backbone("mbf")
        >>> folded = fold_batch_norm(backbone)  # 50 batch norms in mbf, none left
        >>> embeddings = folded.predict(images)
    """
    _check_functional(model)
    pairs = foldable_batch_norms(model)
    producers = set(pairs.values())

    def clone(layer):
        if layer.name in pairs:
            return layer  # never called: see call() below
        config = layer.get_config()
        if layer.name in producers:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        if layer.name in pairs:
            return args[0]  # the folded BN's input: its producer now applies the BN
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(
        model, input_tensors=_named_inputs(model), clone_function=clone, call_function=call
    )
    _set_weights(model, folded, pairs)
    return folded


def _named_inputs(model):
    """New inputs shaped and named as ``model``'s input layers, in its input structure.

    ``clone_model`` would name them after the tensors; the folded model keeps the layer names.
    """
    inputs = [
        keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x._keras_history.operation.name)
        for x in model.inputs
    ]
    return keras.tree.pack_sequence_as(model._inputs_struct, inputs)


def foldable_batch_norms(model):
    """``{batch norm name: name of the layer it folds into}`` for a functional model.

    See :func:`fold_batch_norm` for when a batch norm can be folded.

    Example:
        >>> foldable_batch_norms(get_backbone("small"))["stem_bn"]
        'stem_conv'
    """
    _check_functional(model)
    nodes = [node for nodes in model._nodes_by_depth.values() for node in nodes]
    calls = collections.Counter(id(node.operation) for node in nodes if not node.is_input)
    readers = collections.Counter(id(tensor) for node in nodes for tensor in node.input_tensors)
    readers.update(id(tensor) for tensor in model.outputs)
    pairs = {}
    for node in nodes:
        norm = node.operation
        if not isinstance(norm, keras.layers.BatchNormalization) or len(node.input_tensors) != 1:
            continue
        tensor = node.input_tensors[0]
        producer = tensor._keras_history.operation
        if (
            calls[id(norm)] == 1
            and calls[id(producer)] == 1
            and readers[id(tensor)] == 1
            and _can_fold(producer, norm, len(tensor.shape))
        ):
            pairs[norm.name] = producer.name
    return pairs


def _check_functional(model):
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            "fold_batch_norm needs a functional keras.Model (built from keras.Input), such as "
            "an embedding model from get_backbone(); for a FaceRecognitionModel pass its "
            f".embedding_model. Received: model={type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        raise TypeError(
            "fold_batch_norm needs a functional keras.Model, not a Sequential one: rebuild it "
            "with keras.Input and the functional API. Received: model=Sequential"
        )


def _can_fold(layer, norm, rank):
    """Whether ``norm`` (reading ``layer``'s rank-``rank`` output) folds exactly into ``layer``."""
    return (
        isinstance(layer, FOLDABLE_LAYERS)
        and layer.activation is keras.activations.linear
        and getattr(layer, "data_format", "channels_last") == "channels_last"
        and getattr(layer, "quantization_mode", None) is None
        and not getattr(layer, "lora_enabled", False)
        and norm.axis in (-1, rank - 1)
    )


def folded_kernel_and_bias(layer, norm):
    """``(kernel, bias)`` of ``layer`` followed by ``norm`` (inference), as float64 arrays.

    Example:
        >>> kernel, bias = folded_kernel_and_bias(model.get_layer("stem_conv"),
        ...                                       model.get_layer("stem_bn"))
    """
    kernel = _numpy(layer.kernel)
    channels = kernel.shape[-2:] if isinstance(layer, keras.layers.DepthwiseConv2D) else None
    mean, variance = _numpy(norm.moving_mean), _numpy(norm.moving_variance)
    gamma = _numpy(norm.gamma) if norm.scale else np.ones_like(mean)
    beta = _numpy(norm.beta) if norm.center else np.zeros_like(mean)
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + norm.epsilon)
    # Depthwise output channel c * multiplier + m is kernel[..., c, m].
    kernel = kernel * (scale.reshape(channels) if channels is not None else scale)
    return kernel, (bias - mean) * scale + beta


def _set_weights(model, folded, pairs):
    into = {producer: norm for norm, producer in pairs.items()}
    for layer in folded.layers:
        if layer.name in into:
            source = model.get_layer(layer.name)
            kernel, bias = folded_kernel_and_bias(source, model.get_layer(into[layer.name]))
            layer.kernel.assign(kernel.astype(layer.kernel.dtype))
            layer.bias.assign(bias.astype(layer.bias.dtype))
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)
