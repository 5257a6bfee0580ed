"""The one mapping from InsightFace reference parameters to the Keras backbones' layers.

The reference implementation (``arcface_torch``: ``iresnet18/34/50/100/200`` and ``mbf``)
names its parameters like a PyTorch ``state_dict`` (``layer2.0.conv1.weight``). Both readers
produce tensors under these names and in the PyTorch layout: ``pth.py`` reads them from a
checkpoint, ``onnx_reader.py`` recovers them from an exported graph. This module maps them
onto the Keras layers, tensor by tensor:

* convolution kernels ``[out, in / groups, kh, kw]`` -> ``[kh, kw, in / groups, out]``;
* depthwise kernels ``[channels, 1, kh, kw]`` -> ``[kh, kw, channels, 1]``;
* batch norm ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance`` (both sides use epsilon 1e-5);
* PReLU slopes ``[channels]`` -> ``[1, 1, channels]``;
* the FC after the flatten: PyTorch flattens NCHW (index ``c * H * W + h * W + w``), Keras
  NHWC (index ``(h * W + w) * C + c``), so the rows of the FC weight are permuted.

The "E" head's last batch norm has a learnable scale in PyTorch that the reference freezes
at 1.0; the Keras head has no scale. A checkpoint whose scale is not 1.0 still converts
exactly (for inference): the scale is folded into the FC and the running mean.

Every tensor is checked before anything is assigned; the first missing or mismatching
tensor raises a ``ValueError`` that names it with both shapes.
"""

import keras
import numpy as np

from keras_arcface.models.presets import PRESETS

# The architectures whose reference parameters this mapping knows.
IMPORTABLE_ARCHS = ("r18", "r34", "r50", "r100", "r200", "mbf", "mobilefacenet")


def _iresnet_modules(preset):
    """(torch module, Keras layer) pairs of an iResNet, in the checkpoint's order."""
    pairs = [("conv1", "stem_conv"), ("bn1", "stem_bn"), ("prelu", "stem_prelu")]
    widths, stem = preset["widths"], preset.get("stem_channels", 64)
    in_channels = stem
    strides = preset.get("strides") or [2] * len(preset["depths"])
    for stage, (depth, width, stride) in enumerate(zip(preset["depths"], widths, strides), 1):
        for block in range(depth):
            torch_block = f"layer{stage}.{block}"
            keras_block = f"stage{stage}_block{block + 1}"
            for part in ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3"):
                pairs.append((f"{torch_block}.{part}", f"{keras_block}_{part}"))
            if block == 0 and (stride != 1 or in_channels != width):
                pairs.append((f"{torch_block}.downsample.0", f"{keras_block}_downsample_conv"))
                pairs.append((f"{torch_block}.downsample.1", f"{keras_block}_downsample_bn"))
            in_channels = width
    pairs += [("bn2", "head_bn"), ("fc", "head_fc"), ("features", "head_features")]
    return pairs


def _conv_block(torch_prefix, keras_prefix, activation=True):
    parts = [("layers.0", "conv"), ("layers.1", "bn")] + ([("layers.2", "prelu")] * activation)
    return [(f"{torch_prefix}.{t}", f"{keras_prefix}_{k}") for t, k in parts]


def _bottleneck(torch_prefix, keras_prefix):
    return (
        _conv_block(f"{torch_prefix}.layers.0", f"{keras_prefix}_expand")
        + _conv_block(f"{torch_prefix}.layers.1", f"{keras_prefix}_dw")
        + _conv_block(f"{torch_prefix}.layers.2", f"{keras_prefix}_project", activation=False)
    )


def _mobilefacenet_modules(preset):
    """(torch module, Keras layer) pairs of the reference MobileFaceNet ("mbf")."""
    pairs = _conv_block("layers.0", "stem") + _conv_block("layers.1", "stem_dw")
    for stage, (_, _, num_residual, _) in enumerate(preset["stages"], 1):
        index = 2 * stage
        pairs += _bottleneck(f"layers.{index}", f"stage{stage}_block1")
        for block in range(num_residual):
            torch_block = f"layers.{index + 1}.layers.{block}"
            pairs += _bottleneck(torch_block, f"stage{stage}_block{block + 2}")
    pairs += _conv_block("conv_sep", "sep")
    pairs += [
        ("features.layers.0.layers.0", "head_gdc"),
        ("features.layers.0.layers.1", "head_gdc_bn"),
        ("features.layers.2", "head_fc"),
        ("features.layers.3", "head_features"),
    ]
    return pairs


def insightface_module_map(arch):
    """Lists ``(torch module name, Keras layer name)`` pairs of an architecture.

    Args:
        arch: an iResNet or MobileFaceNet preset name ("r18", "r34", "r50", "r100",
            "r200", "mbf", "mobilefacenet").

    Returns:
        A list of pairs in the reference ``state_dict``'s order.

    Example:
        >>> insightface_module_map("r18")[0]
        ('conv1', 'stem_conv')
    """
    if arch not in PRESETS or PRESETS[arch]["family"] not in ("iresnet", "mobilefacenet"):
        raise ValueError(
            f"Unknown architecture; expected one of {list(IMPORTABLE_ARCHS)}. "
            f"Received: arch={arch!r}"
        )
    preset = PRESETS[arch]
    if preset["family"] == "iresnet":
        return _iresnet_modules(preset)
    return _mobilefacenet_modules(preset)


def _torch_layout_shape(layer, variable_shape):
    """What shape the PyTorch tensor of a Keras variable has."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, channels, multiplier = variable_shape
        return (channels * multiplier, 1, kh, kw)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, in_channels, out_channels = variable_shape
        return (out_channels, in_channels, kh, kw)
    if isinstance(layer, keras.layers.Dense) and len(variable_shape) == 2:
        return tuple(reversed(variable_shape))
    return (int(np.prod(variable_shape)),)


def _convert(layer, tensor, variable_shape, flatten_hwc):
    """Converts one PyTorch tensor to the layout of one Keras variable."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return tensor.transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return tensor.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense) and tensor.ndim == 2:
        out_features = tensor.shape[0]
        if flatten_hwc is not None:
            height, width, channels = flatten_hwc
            tensor = tensor.reshape(out_features, channels, height, width).transpose(0, 2, 3, 1)
        return tensor.reshape(out_features, -1).T
    return tensor.reshape(variable_shape)


_BN_TENSORS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _variables(layer):
    """(variable, torch tensor suffix) pairs of one Keras layer."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            (getattr(layer, attr), suffix)
            for attr, suffix in _BN_TENSORS.items()
            if getattr(layer, attr, None) is not None
        ]
    if isinstance(layer, keras.layers.PReLU):
        return [(layer.alpha, "weight")]
    variables = [(layer.kernel, "weight")]
    if getattr(layer, "bias", None) is not None:
        variables.append((layer.bias, "bias"))
    return variables


def _flatten_hwc(model, prefix):
    try:
        shape = model.get_layer(f"{prefix}head_flatten").input.shape
    except ValueError:
        return None
    return tuple(shape[1:]) if len(shape) == 4 else None


def _model_prefix(model):
    for layer in model.layers:
        if layer.name.endswith("normalize"):
            return layer.name[: -len("normalize")]
    return ""


def _mismatch(name, expected, received, arch):
    return ValueError(
        f"The checkpoint does not match arch={arch!r}: tensor '{name}' should have shape "
        f"{tuple(expected)} (PyTorch layout). Received: shape={received}"
    )


def _plan(model, tensors, arch):
    """Checks every tensor; returns the (variable, value) assignments and the names used."""
    prefix = _model_prefix(model)
    flatten_hwc = _flatten_hwc(model, prefix)
    plan, used, previous = {}, set(), None
    for torch_module, keras_name in insightface_module_map(arch):
        try:
            layer = model.get_layer(f"{prefix}{keras_name}")
        except ValueError as error:
            raise ValueError(
                f"The Keras model has no layer '{prefix}{keras_name}' that arch={arch!r} "
                f"needs for '{torch_module}'; build it with get_backbone({arch!r}). "
                f"Received: model={model.name!r}"
            ) from error
        plan[keras_name] = []
        for variable, suffix in _variables(layer):
            name = f"{torch_module}.{suffix}"
            variable_shape = tuple(variable.shape)
            expected = _torch_layout_shape(layer, variable_shape)
            if name not in tensors:
                raise _mismatch(name, expected, "missing from the checkpoint", arch)
            if tensors[name].shape != expected:
                raise _mismatch(name, expected, tuple(tensors[name].shape), arch)
            is_fc = isinstance(layer, keras.layers.Dense)
            value = _convert(layer, tensors[name], variable_shape, flatten_hwc if is_fc else None)
            plan[keras_name].append((variable, value))
            used.add(name)
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.scale:
            scale_name = f"{torch_module}.weight"
            if scale_name in tensors:
                gamma = tensors[scale_name]
                if gamma.shape != (layer.moving_mean.shape[0],):
                    raise _mismatch(scale_name, layer.moving_mean.shape, gamma.shape, arch)
                _fold_scale(plan[previous], plan[keras_name], layer, gamma)
                used.add(scale_name)
        previous = keras_name
    return [item for items in plan.values() for item in items], used


def _fold_scale(fc_items, bn_items, layer, gamma):
    """Folds a PyTorch BN scale into the FC before a scale-free Keras BN (exact at inference).

    gamma * (z - mean) / sqrt(var + eps) + beta
        == (gamma * z - gamma * mean) / sqrt(var + eps) + beta,
    so the FC's kernel and bias and the BN's running mean are multiplied by gamma.
    """
    for i, (variable, value) in enumerate(fc_items):
        fc_items[i] = (variable, value * gamma)  # kernel [in, D] and bias [D] scale on D
    for i, (variable, value) in enumerate(bn_items):
        if variable is layer.moving_mean:
            bn_items[i] = (variable, value * gamma)


def load_reference_tensors(keras_model, tensors, arch):
    """Assigns reference-named float32 tensors (PyTorch layout) to a Keras backbone.

    Every tensor is checked before anything is assigned, so a failure leaves the model as
    it was.

    Args:
        keras_model: the embedding model built by ``get_backbone(arch, ...)``.
        tensors: dict of reference parameter name -> float32 NumPy array.
        arch: one of ``IMPORTABLE_ARCHS``.

    Returns:
        ``keras_model``, with the weights loaded.

    Raises:
        ValueError: naming the first missing or mismatching tensor (with both shapes), or
            the first tensor the architecture does not use.

    Example:
        >>> load_reference_tensors(get_backbone("r18"), tensors, "r18")
    """
    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"`keras_model` must be a keras.Model. Received: keras_model={keras_model!r}"
        )
    assignments, used = _plan(keras_model, tensors, arch)
    unused = [name for name in tensors if name not in used]
    if unused:
        raise ValueError(
            f"The checkpoint holds tensors that arch={arch!r} does not have (a deeper or "
            f"different network?); first: '{unused[0]}' with shape "
            f"{tuple(tensors[unused[0]].shape)}. Received: {len(unused)} unused tensors"
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return keras_model


def embedding_dim_of_checkpoint(tensors, arch):
    """Returns the embedding size stored in a checkpoint (the FC's output features)."""
    fc = dict(insightface_module_map(arch))
    torch_fc = next(t for t, k in fc.items() if k == "head_fc")
    name = f"{torch_fc}.weight"
    if name not in tensors or tensors[name].ndim != 2:
        raise ValueError(
            f"The checkpoint has no 2-D FC weight '{name}' for arch={arch!r}. "
            f"Received: {len(tensors)} tensors, first '{next(iter(tensors), None)}'"
        )
    return int(tensors[name].shape[0])
