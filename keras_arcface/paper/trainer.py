"""The one minimal trainer every row of the paper's comparison shares.

The comparison is about losses, so everything else is held fixed and kept small: the
same backbone, the same identity-balanced (P x K) batches, the same SGD optimiser and
learning-rate schedule, the same step budget. A row only changes its `Objective`: the
classifier head (if any) and the loss terms applied to the embeddings or the head's
output.

Training runs through the package's one engine: the optimiser comes from
``keras_arcface.training.optimizers.build_optimizer``, the schedule is
``keras_arcface.training.schedules.WarmupDecay`` (linear warm-up, cosine decay) and every
step is ``keras_arcface.training.engine.make_train_step``, the step
``keras_arcface.training.Trainer`` is built on. What is specific here is only the
in-memory P x K batching and the `Objective` (a head and loss terms instead of the
trainer's class-center head).
"""

import dataclasses
import math
import time
import warnings

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every run of the comparison.

    Args:
        identities_per_batch: P, identities drawn per batch (default 32).
        images_per_identity: K, images per drawn identity (default 4); batch = P * K.
        learning_rate: peak SGD learning rate (default 0.1, the paper's).
        momentum: SGD momentum (default 0.9, the paper's).
        weight_decay: decoupled weight decay (default 5e-4, the paper's value), on every
            trainable weight of the backbone and the head.
        warmup_fraction: share of the steps with a linear warm-up from 0 (default 0.05);
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
    registered (``head.losses``, e.g. an inter-class regulariser on the centers).
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


def _schedule(config, total_steps):
    from keras_arcface.training.schedules import WarmupDecay

    warmup = min(int(round(config.warmup_fraction * total_steps)), total_steps - 1)
    return WarmupDecay(
        config.learning_rate, total_steps=total_steps, warmup_steps=warmup, decay="cosine"
    )


def learning_rate_at(step, total_steps, config):
    """Deprecated: the learning rate of ``train`` at ``step`` (its ``WarmupDecay``).

    ``train`` now uses the package's ``keras_arcface.training.schedules.WarmupDecay``
    (linear warm-up from 0, then cosine decay to zero); this returns its value.
    """
    warnings.warn(
        "keras_arcface.paper.trainer.learning_rate_at is deprecated: the paper trains with "
        "keras_arcface.training.schedules.WarmupDecay(decay='cosine').",
        DeprecationWarning,
        stacklevel=2,
    )
    return float(_schedule(config, total_steps)(step))


@dataclasses.dataclass
class TrainResult:
    """What a training run did: steps taken, wall seconds, and the loss trace.

    ``skipped`` counts steps the engine skipped because a gradient was non-finite.
    """

    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    finite: bool
    skipped: int = 0


def _experiment(config):
    """The training engine's optimiser settings for a `TrainConfig`."""
    from keras_arcface.training import config as config_lib

    return config_lib.ExperimentConfig(
        optimizer=config_lib.OptimizerConfig(
            name="sgd",
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            weight_decay_mode="decoupled",
        )
    )


def _batches(images, labels, steps, config, seed):
    """A ``tf.data`` pipeline of P x K batches (float32 images, flipped at random)."""
    import tensorflow as tf

    height, width, channels = np.asarray(images[:1]).shape[1:]

    def generate():
        rng = np.random.default_rng(seed + 7919)
        batches = pk_batches(
            labels, config.identities_per_batch, config.images_per_identity, steps, seed
        )
        for batch in batches:
            batch_images = np.asarray(images[batch], dtype=np.float32)
            if config.flip:
                flip = rng.random(batch.size) < 0.5
                batch_images[flip] = batch_images[flip, :, ::-1]
            yield batch_images, np.asarray(labels[batch], dtype=np.int32)

    signature = (
        tf.TensorSpec([config.batch_size, height, width, channels], tf.float32),
        tf.TensorSpec([config.batch_size], tf.int32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


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

    from keras_arcface.training import engine, optimizers

    config = config or TrainConfig()
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer. Received: steps={steps!r}")
    labels = np.asarray(labels)
    strategy = tf.distribute.get_strategy()
    variables = _built_variables(backbone, objective, images, labels, config.batch_size)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="paper_step")
    schedule = _schedule(config, steps)
    optimizer = optimizers.build_optimizer(_experiment(config), lambda: schedule(counter))
    optimizer.build(variables)
    replicas = float(strategy.num_replicas_in_sync)

    def loss_fn(batch_images, batch_labels):
        embeddings = backbone(batch_images, training=True)
        loss = objective(batch_labels, embeddings, training=True)
        regularisers = [keras.ops.cast(x, "float32") for x in backbone.losses]
        return (loss + sum(regularisers, 0.0)) / replicas

    step_fn = engine.make_train_step(
        strategy,
        loss_fn,
        optimizer,
        variables,
        statistics=backbone.non_trainable_variables,
        counter=counter,
    )
    iterator = iter(_batches(images, labels, steps, config, seed))
    return _run_steps(step_fn, iterator, steps, progress)


def _built_variables(backbone, objective, images, labels, batch_size):
    """Builds the objective's head on one batch; returns backbone + head trainable variables."""
    sample = np.asarray(images[:batch_size], dtype=np.float32)
    objective(np.asarray(labels[:batch_size], dtype=np.int32), backbone(sample))
    variables = list(backbone.trainable_variables)
    if objective.head is not None:
        variables += list(objective.head.trainable_variables)
    return variables


def _run_steps(step_fn, iterator, steps, progress):
    """Runs ``steps`` steps, reporting each loss to ``progress``; returns a `TrainResult`."""
    started = time.perf_counter()
    first = last = float("nan")
    finite, skipped = True, 0
    for index in range(steps):
        loss, applied = step_fn(iterator)
        value = float(loss)
        skipped += 0 if bool(applied) else 1
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
        skipped=skipped,
    )
