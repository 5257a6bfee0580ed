"""The one minimal trainer every row of the paper's comparison shares.

The comparison is about losses, so everything else is held fixed and kept small: the
same backbone, the same identity-balanced (P x K) batches, the same SGD optimiser and
learning-rate schedule, the same step budget. A row only changes its `Objective`: the
classifier head (if any) and the loss terms applied to the embeddings or the head's
output. This is deliberately not the package's full training pipeline
(``keras_arcface.training``): a plain ``tf.function`` step keeps the experiment
readable and identical across rows.
"""

import dataclasses
import math
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every run of the comparison.

    Args:
        identities_per_batch: P, identities drawn per batch (default 32).
        images_per_identity: K, images per drawn identity (default 4); batch = P * K.
        learning_rate: peak SGD learning rate (default 0.1, the paper's).
        momentum: SGD momentum (default 0.9, the paper's).
        weight_decay: decoupled weight decay (default 5e-4, the paper's value).
        warmup_fraction: share of the steps with a linear warm-up (default 0.05);
            cosine decay to zero follows.
        flip: random horizontal flips of training images (default True).
    """

    identities_per_batch: int = 32
    images_per_identity: int = 4
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    flip: bool = True

    def __post_init__(self):
        for name in ("identities_per_batch", "images_per_identity"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate must be positive. Received: learning_rate={self.learning_rate!r}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(
                "warmup_fraction must be in [0, 1). "
                f"Received: warmup_fraction={self.warmup_fraction!r}"
            )

    @property
    def batch_size(self):
        return self.identities_per_batch * self.images_per_identity


class Objective:
    """What one row of the comparison trains: an optional head plus loss terms.

    Args:
        head: a Keras layer mapping embeddings to logits or cosines (``Dense``,
            ``NormDense``), or None for losses on the embeddings alone (Triplet).
        head_losses: losses called as ``loss(labels, head_output)``.
        embedding_losses: losses called as ``loss(labels, embeddings)``.

    The total is the sum of the terms (each with weight 1, as in the paper's
    combinations) plus any regularisation losses the head's layers
    registered (``head.losses``, e.g. an inter-class regulariser on the centres).
    """

    def __init__(self, head=None, head_losses=(), embedding_losses=()):
        if head is None and head_losses:
            raise ValueError("head_losses need a head to produce their inputs. Received: head=None")
        if not head_losses and not embedding_losses:
            raise ValueError(
                "An objective needs at least one loss term. "
                f"Received: head_losses={head_losses!r}, embedding_losses={embedding_losses!r}"
            )
        self.head = head
        self.head_losses = tuple(head_losses)
        self.embedding_losses = tuple(embedding_losses)

    def __call__(self, labels, embeddings, training=True):
        total = 0.0
        if self.head is not None:
            output = self.head(embeddings, training=training)
            for loss in self.head_losses:
                total = total + loss(labels, output)
            for regulariser in self.head.losses:
                total = total + regulariser
        for loss in self.embedding_losses:
            total = total + loss(labels, embeddings)
        return total


def pk_batches(labels, identities_per_batch, images_per_identity, steps, seed):
    """Yields index arrays of identity-balanced batches: P identities x K images each.

    Identities with fewer than K images are sampled with replacement.

    Args:
        labels: int array of training labels.
        identities_per_batch: P.
        images_per_identity: K.
        steps: number of batches to yield (None: forever).
        seed: NumPy seed; the same seed gives the same batches.

    Yields:
        int64 index arrays of length P * K.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if identities_per_batch > classes.size:
        raise ValueError(
            f"identities_per_batch exceeds the {classes.size} training identities. "
            f"Received: identities_per_batch={identities_per_batch}"
        )
    members = {c: np.flatnonzero(labels == c) for c in classes}
    step = 0
    while steps is None or step < steps:
        chosen = rng.choice(classes, size=identities_per_batch, replace=False)
        batch = []
        for c in chosen:
            pool = members[c]
            replace = pool.size < images_per_identity
            batch.append(rng.choice(pool, images_per_identity, replace=replace))
        yield np.concatenate(batch)
        step += 1


def learning_rate_at(step, total_steps, config):
    """Linear warm-up then cosine decay to zero; identical for every row."""
    warmup = max(1, int(round(config.warmup_fraction * total_steps)))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * config.learning_rate * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclasses.dataclass
class TrainResult:
    """What a training run did: steps taken, wall seconds, and the loss trace."""

    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    finite: bool


def train(backbone, objective, images, labels, steps, config=None, seed=0, progress=None):
    """Trains ``backbone`` (and the objective's head) for ``steps`` SGD steps.

    Args:
        backbone: the embedding model (``images`` float32 0..255 -> embeddings).
        objective: an `Objective`.
        images: uint8 or float32 array ``[N, H, W, 3]`` of training images (0..255).
        labels: int array ``[N]`` of training labels in ``[0, num_classes)``.
        steps: number of optimiser steps (the budget, the same for every row).
        config: a `TrainConfig`; default ``TrainConfig()``.
        seed: seeds batch sampling and flips.
        progress: optional callable ``progress(step, loss)`` called every step.

    Returns:
        a `TrainResult`.

    Example:
        >>> result = train(backbone, objective, images, labels, steps=100)
    """
    import keras
    import tensorflow as tf

    config = config or TrainConfig()
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer. Received: steps={steps!r}")
    optimizer = keras.optimizers.SGD(
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    # Build the head before collecting variables.
    sample = np.asarray(images[: config.batch_size], dtype=np.float32)
    objective(np.asarray(labels[: config.batch_size], dtype=np.int32), backbone(sample))
    variables = list(backbone.trainable_variables)
    if objective.head is not None:
        variables += list(objective.head.trainable_variables)
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def step_fn(batch_images, batch_labels, learning_rate):
        optimizer.learning_rate.assign(learning_rate)
        with tf.GradientTape() as tape:
            embeddings = backbone(batch_images, training=True)
            loss = objective(batch_labels, embeddings, training=True)
            loss = loss + tf.add_n([0.0] + [tf.cast(x, tf.float32) for x in backbone.losses])
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    rng = np.random.default_rng(seed + 7919)
    started = time.perf_counter()
    first = last = float("nan")
    finite = True
    batches = pk_batches(
        labels, config.identities_per_batch, config.images_per_identity, steps, seed
    )
    for index, batch in enumerate(batches):
        batch_images = np.asarray(images[batch], dtype=np.float32)
        if config.flip:
            flip = rng.random(batch.size) < 0.5
            batch_images[flip] = batch_images[flip, :, ::-1]
        value = float(
            step_fn(
                tf.constant(batch_images),
                tf.constant(np.asarray(labels[batch], dtype=np.int32)),
                tf.constant(learning_rate_at(index, steps, config), tf.float32),
            )
        )
        first = value if index == 0 else first
        last = value
        finite = finite and math.isfinite(value)
        if progress is not None:
            progress(index, value)
    return TrainResult(
        steps=steps,
        seconds=time.perf_counter() - started,
        first_loss=first,
        last_loss=last,
        finite=finite,
    )
