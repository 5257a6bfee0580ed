"""Small models and in-memory data for the training tests (also imported by subprocesses).

The tiny backbone follows the embedding-model contract (one input named ``images``,
float32 0..255, one float32 embedding output) on 16x16 images so a step takes milliseconds.
"""

import numpy as np

IMAGE_SIZE = 16
NUM_CLASSES = 10
NUM_IMAGES = 640


def tiny_backbone(batch_norm=True, dim=16):
    """A contract-following embedding model on 16x16 images."""
    import keras

    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    # Fixed layer names, like the real backbones (init_from matches layers by name).
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=not batch_norm, name="conv")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(dim, dtype="float32", name="fc")(x)
    return keras.Model(images, x, name="tiny")


def prototypes(seed=0):
    """One image per class: a distinct mean colour plus a fixed texture."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, (NUM_CLASSES, 1, 1, 3))
    texture = rng.normal(0, 30, (NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(colours + texture, 0, 255)


def epoch_arrays(epoch, noise=25.0, nan_from_epoch=None):
    """The images and labels of one epoch (a function of the epoch only)."""
    rng = np.random.default_rng(1000 + epoch)
    labels = rng.integers(0, NUM_CLASSES, NUM_IMAGES).astype("int32")
    images = prototypes()[labels] + rng.normal(0, noise, (NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3))
    images = np.clip(images, 0, 255).astype("float32")
    if nan_from_epoch is not None and epoch >= nan_from_epoch:
        images[:] = np.nan
    return images, labels


def make_dataset_fn(nan_from_epoch=None):
    """A ``Trainer`` dataset_fn: re-seeded per epoch, sharded per input pipeline, skippable."""

    def dataset_fn(input_context, epoch, skip_batches, batch_size):
        import tensorflow as tf

        images, labels = epoch_arrays(epoch, nan_from_epoch=nan_from_epoch)
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        if input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        here = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        ds = ds.repeat().skip(skip_batches * batch_size * here)
        return ds.batch(batch_size, drop_remainder=True)

    return dataset_fn


def pair_set(num_pairs=40, seed=5):
    """An in-memory verification set ``(name, images, issame)`` from the same prototypes."""
    rng = np.random.default_rng(seed)
    protos = prototypes()
    images, issame = [], []
    for k in range(num_pairs):
        a = rng.integers(NUM_CLASSES)
        b = a if k % 2 == 0 else (a + 1 + rng.integers(NUM_CLASSES - 1)) % NUM_CLASSES
        for c in (a, b):
            images.append(np.clip(protos[c] + rng.normal(0, 25.0, protos[c].shape), 0, 255))
        issame.append(k % 2 == 0)
    return "toy", np.asarray(images, np.uint8), np.asarray(issame)


def experiment(**sections):
    """A small ``ExperimentConfig`` for the tiny backbone, with section overrides."""
    from keras_arcface.training import config

    values = {
        "data": {"batch_size": 32, "num_classes": NUM_CLASSES, "num_images": NUM_IMAGES},
        "loss": {"scale": 16.0},
        "schedule": {"epochs": 2, "warmup_steps": 3},
        "checkpoint": {"every_steps": 10},
        "logging": {"every_steps": 5, "progress_bar": False, "plot": True},
        "evaluation": {"every_steps": 0, "batch_size": 32},
    }
    for section, changes in sections.items():
        if isinstance(changes, dict):
            values.setdefault(section, {}).update(changes)
        else:
            values[section] = changes
    return config.from_dict(values)


_STRATEGIES = {}


def shared_strategy(name):
    """One strategy object per kind for the whole test process (every test file).

    Collective ops of two ``MirroredStrategy`` objects over the same devices in one process
    collide (a shape mismatch in a collective instance), so every test shares this one.
    """
    from keras_arcface.training.strategy import create_strategy

    if name not in _STRATEGIES:
        _STRATEGIES[name] = create_strategy(name)
    return _STRATEGIES[name]


def make_interleaved_dataset_fn(replicas=2, per_replica=8):
    """A dataset_fn whose replica ``r`` of step ``k`` gets examples
    ``k * replicas * per_replica + replicas * j + r`` (``j < per_replica``), whether the
    replicas are devices of one process (one input pipeline) or workers (one pipeline each):
    the same examples meet in each replica's batch norm in both layouts. One device reading
    ``replicas * per_replica`` per step sees the same global batches."""

    def dataset_fn(input_context, epoch, skip_batches, batch_size):
        import tensorflow as tf

        images, labels = epoch_arrays(epoch)
        order = np.arange(len(labels)).reshape(-1, per_replica, replicas)
        if input_context.num_input_pipelines > 1:
            index = order[:, :, input_context.input_pipeline_id].reshape(-1)
        else:
            index = order.transpose(0, 2, 1).reshape(-1)
        here = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        ds = tf.data.Dataset.from_tensor_slices((images[index], labels[index]))
        return ds.repeat().skip(skip_batches * batch_size * here).batch(batch_size)

    return dataset_fn
