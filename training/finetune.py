"""Fine-tuning: start a run from existing weights, and the margin warm-up of small heads.

``model.init_from`` names where the backbone weights come from: a ``.keras`` embedding
model, a run folder (its ``embedding_best.keras``, else ``embedding_latest.keras``), or an
InsightFace ``.onnx`` / ``.pth`` (converted through ``keras_arcface.models.imports``). The
backbones are functional models with stable layer names, so weights are copied layer by
layer by name; every layer and every shape must agree, and nothing is assigned unless they
all do. The class centers start random or, with ``model.init_centers=class_mean``, at the
normalized mean embedding of each class under the loaded weights.
"""

import json
import os

import keras
import numpy as np

RUN_MODELS = ("embedding_best.keras", "embedding_latest.keras")


def resolve_init_source(path):
    """``(kind, file)`` of an ``init_from`` path: kind is keras, onnx or pth.

    Raises:
        ValueError: the path does not exist or is not one of the accepted kinds.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in RUN_MODELS:
            if os.path.isfile(os.path.join(path, name)):
                return "keras", os.path.join(path, name)
        raise ValueError(
            f"model.init_from is a folder without {' or '.join(RUN_MODELS)}; expected a run "
            f"folder of keras-arcface train. Received: model.init_from={path!r}"
        )
    kinds = {".keras": "keras", ".onnx": "onnx", ".pth": "pth", ".pt": "pth"}
    kind = kinds.get(os.path.splitext(path)[1].lower())
    if kind is None or not os.path.isfile(path):
        what = "no such file" if not os.path.exists(path) else "an unknown kind of file"
        raise ValueError(
            f"model.init_from must be a .keras embedding model, a run folder, or an "
            f"InsightFace .onnx/.pth file ({what}). Received: model.init_from={path!r}"
        )
    return kind, path


def load_init_model(path, arch):
    """The embedding model that ``init_from`` names, plus ``(kind, file)``."""
    kind, file = resolve_init_source(path)
    if kind == "keras":
        from keras_arcface.models.imports.convert import load_keras_embedding_model

        return load_keras_embedding_model(file), kind, file
    if kind == "onnx":
        from keras_arcface.models.imports import load_insightface_onnx

        return load_insightface_onnx(file), kind, file
    from keras_arcface.models.imports import IMPORTABLE_ARCHS, load_insightface_pth

    if arch not in IMPORTABLE_ARCHS:
        raise ValueError(
            f"A .pth init_from is read as model.backbone's architecture, which must be one of "
            f"{list(IMPORTABLE_ARCHS)}. Received: model.backbone={arch!r}"
        )
    return load_insightface_pth(file, arch), kind, file


def _weight_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def copy_backbone_weights(source, target, init_from=""):
    """Copies every weight of ``source`` into the same-named layer of ``target``.

    Args:
        source: the loaded embedding model.
        target: the run's backbone.
        init_from: the configured path, for messages.

    Returns:
        The number of tensors copied.

    Raises:
        ValueError: another embedding size, a layer missing on either side, or a shape
            that differs (named, with both shapes). Nothing is assigned then.
    """
    received = f"Received: model.init_from={init_from!r}"
    source_dim, target_dim = source.outputs[0].shape[-1], target.outputs[0].shape[-1]
    if source_dim != target_dim:
        raise ValueError(
            f"model.init_from holds embeddings of size {source_dim}, the configured backbone "
            f"{target_dim}: set model.embedding_dim={source_dim}. {received}"
        )
    source_layers, target_layers = _weight_layers(source), _weight_layers(target)
    missing = [name for name in target_layers if name not in source_layers]
    extra = [name for name in source_layers if name not in target_layers]
    if missing or extra:
        detail = (
            f"the backbone's layer '{missing[0]}' is not in it"
            if missing
            else f"its layer '{extra[0]}' is not in the backbone"
        )
        raise ValueError(
            "model.init_from holds another architecture than model.backbone "
            f"({detail}; {len(missing)} missing, {len(extra)} extra layers). {received}"
        )
    pairs = []
    for name, layer in target_layers.items():
        for variable, value in zip(layer.weights, source_layers[name].weights):
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(
                    f"model.init_from does not fit the backbone: '{variable.path}' has shape "
                    f"{tuple(value.shape)} there and {tuple(variable.shape)} here. {received}"
                )
            pairs.append((variable, value))
    for variable, value in pairs:
        variable.assign(keras.ops.convert_to_numpy(value))
    _copy_normalization(source, target)
    return len(pairs)


def _copy_normalization(source, target):
    # An ONNX model with its own Sub/Mul preamble carries it in the Rescaling layer.
    for layer in source.layers:
        if isinstance(layer, keras.layers.Rescaling):
            for other in target.layers:
                if other.name == layer.name and isinstance(other, keras.layers.Rescaling):
                    other.scale, other.offset = layer.scale, layer.offset


def class_mean_centers(embed, batches, centers):
    """Each class's normalized mean embedding; classes never seen keep their row.

    Args:
        embed: ``embed(images) -> [B, D]`` NumPy embeddings.
        batches: iterable of ``(images, labels)``.
        centers: the current ``[N, D]`` centers (NumPy).

    Returns:
        ``(new_centers, counts)``: float32 ``[N, D]`` and int ``[N]`` images per class.
    """
    sums = np.zeros(centers.shape, np.float64)
    counts = np.zeros(centers.shape[0], np.int64)
    for images, labels in batches:
        vectors = np.asarray(embed(images), np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        labels = np.asarray(labels).reshape(-1)
        np.add.at(sums, labels, vectors)
        np.add.at(counts, labels, 1)
    seen = counts > 0
    result = np.array(centers, np.float64)
    result[seen] = sums[seen] / np.linalg.norm(sums[seen], axis=1, keepdims=True)
    return result.astype(np.float32), counts


def margin_warmup(logits_fn, scale, step_fn, warmup_steps):
    """``logits_fn`` with its margin blended in linearly over the first ``warmup_steps``.

    The target logit is ``s * (c + r * (f_m(c) - c))`` with ``r = min(1, step / warmup)``:
    plain scaled cosines at step 0 (no margin), the full margin from ``warmup_steps`` on.
    Non-target logits are ``s * c`` throughout. For CosFace this is exactly a margin
    growing from 0; for ArcFace it is the same blend of ``cos(theta + m)`` and ``cos``.

    Args:
        logits_fn: the loss's ``logits(labels, cosine)``.
        scale: the loss's scale ``s``.
        step_fn: zero-argument callable returning the global step (a tensor).
        warmup_steps: length of the ramp (> 0).
    """
    from keras import ops

    def blended(labels, cosine):
        full = ops.cast(logits_fn(labels, cosine), "float32")
        plain = ops.cast(cosine, "float32") * scale
        ramp = ops.minimum(ops.cast(step_fn(), "float32") / float(warmup_steps), 1.0)
        return plain + ramp * (full - plain)

    return blended


def write_report(run_dir, report):
    """Writes ``RUN/init_from.json`` (what the run started from) atomically."""
    from keras_arcface._io import atomic_open

    with atomic_open(os.path.join(run_dir, "init_from.json")) as handle:
        json.dump(report, handle, indent=2)


SMALL_DATASET_CLASSES = 5000


def small_dataset_warning(config, num_classes):
    """A warning when a small dataset meets a large-dataset recipe, else ``None``.

    Large-dataset recipes (scale 64, no augmentation beyond flips, no margin warm-up, no
    pretrained start) train a model on a few thousand identities or fewer that verifies
    little better than raw pixels.
    """
    if num_classes >= SMALL_DATASET_CLASSES or config.model.init_from:
        return None
    augment = config.data.dataset_kwargs.get("augment")
    augmented = isinstance(augment, dict) and any(
        augment.get(key) for key in ("crop_resize", "erasing_probability", "brightness")
    )
    warmup = config.loss.margin_warmup_steps or config.loss.margin_warmup_epochs
    if config.loss.scale < 64 and (augmented or warmup):
        return None
    return (
        f"warning: {num_classes} identities is a small dataset, and this config is a "
        f"large-dataset recipe (scale {config.loss.scale:g}, "
        f"{'augmentation' if augmented else 'no augmentation'}, "
        f"{'a' if warmup else 'no'} margin warm-up). Use the shipped experiment for small "
        "datasets: `keras-arcface train small_dataset data.train_dir=... "
        "evaluation.bins=[held_out.bin]`, or fine-tune a pretrained model with "
        "model.init_from=MODEL (docs/training.md, 'Small datasets and fine-tuning')."
    )
