"""Parameter and multiply-accumulate (MAC) counts of functional models."""

import math

import keras


def _layer_params(layer):
    # PyTorch convention, which the published sizes use: BN running statistics are buffers,
    # not parameters.
    if isinstance(layer, keras.layers.BatchNormalization):
        return sum(math.prod(w.shape) for w in (layer.gamma, layer.beta) if w is not None)
    return sum(math.prod(w.shape) for w in layer.weights)


def _layer_macs(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out_h, out_w, out_c = layer.output.shape[1:4]
        kernel_h, kernel_w = layer.kernel_size
        return out_h * out_w * kernel_h * kernel_w * out_c
    if isinstance(layer, keras.layers.Conv2D):
        out_h, out_w, out_c = layer.output.shape[1:4]
        kernel_h, kernel_w = layer.kernel_size
        in_c = layer.input.shape[-1]
        return out_h * out_w * kernel_h * kernel_w * (in_c // layer.groups) * out_c
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(layer.input.shape[1:-1])
        return positions * layer.input.shape[-1] * layer.units
    return 0


def _walk(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer


def count_params_and_macs(model_or_name, **backbone_kwargs):
    """Counts parameters and multiply-accumulates of one forward pass of one image.

    Parameters follow the PyTorch convention of the published model sizes: weights,
    biases, BN scale and shift, PReLU slopes; BN running statistics are not counted.
    MACs count convolutions (grouped and depthwise included) and dense layers, at the
    model's input size (112x112 for the presets unless ``input_shape`` says otherwise);
    batch normalization, activations and additions are not counted, as is customary.

    Args:
        model_or_name: a functional ``keras.Model`` (nested functional models are walked)
            or a preset name accepted by ``get_backbone``.
        **backbone_kwargs: forwarded to ``get_backbone`` when a name is given (for example
            ``embedding_dim=128`` or ``input_shape=(96, 96, 3)``).

    Returns:
        ``(params, macs)`` as ints.

    Example:
        >>> params, macs = count_params_and_macs("r50")
        >>> print(f"{params / 1e6:.2f}M parameters, {macs / 1e9:.2f} GMACs")
    """
    if isinstance(model_or_name, str):
        from keras_arcface.models.factory import get_backbone

        model = get_backbone(model_or_name, **backbone_kwargs)
    elif isinstance(model_or_name, keras.Model):
        if backbone_kwargs:
            raise TypeError(
                "Backbone arguments only apply to a preset name, not to a built model. "
                f"Received: backbone_kwargs={backbone_kwargs}"
            )
        model = model_or_name
    else:
        raise TypeError(
            "`model_or_name` must be a keras.Model or a preset name. "
            f"Received: model_or_name={model_or_name!r}"
        )
    params = macs = 0
    for layer in _walk(model):
        params += _layer_params(layer)
        macs += _layer_macs(layer)
    return int(params), int(macs)
