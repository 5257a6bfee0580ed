"""Optimisers: the backbone's Keras optimiser and the class-center optimiser with sparse rows.

Weight decay, said once: with ``weight_decay_mode="coupled"`` (the default, the paper's
MXNet SGD) the decay is classic L2: ``weight_decay * w`` is added to the gradient *before*
momentum, ``m = momentum * m - lr * (g + wd * w); w = w + m``. For the backbone the trainer
adds ``0.5 * wd * sum(w**2)`` (divided by the replica count, because replica gradients are
summed) to the loss, which gives exactly that gradient, and the Keras optimiser is built
without its own decay. With ``"decoupled"`` the Keras optimiser's ``weight_decay`` is used,
which shrinks weights directly, ``w = w - lr * wd * w`` (Loshchilov & Hutter; Keras' SGD and
AdamW behave this way). Both modes apply to every trainable backbone weight, batch-norm and
PReLU parameters included, as the reference recipes do.

The class-center matrix (``[num_classes, D]``, up to millions of rows) gets its own
:class:`CenterOptimizer` so that Partial FC updates only the sampled rows: the gradient
arrives as ``tf.IndexedSlices`` and only those rows of the weights and of the optimiser
slots change (SGD: one fused in-place kernel, ``ResourceSparseApplyKerasMomentum``; AdamW:
gathered, updated and scattered back). Momentum (and Adam moments) of rows that were not
sampled in a step are left as they are -- "lazy" momentum, as in the reference Partial FC
(v1), which keeps momentum only for the sampled centers. With ``sample_rate=1.0`` every row
is updated every step and the update equals the dense SGD/AdamW formula.

Example:
    >>> from keras_arcface.training import config, optimizers
    >>> cfg = config.from_dict({})
    >>> opt = optimizers.build_optimizer(cfg, learning_rate=lambda: 0.1)
"""

import keras
import tensorflow as tf


def build_optimizer(config, learning_rate):
    """The backbone's Keras optimiser for an experiment.

    Args:
        config: an ``ExperimentConfig`` (its ``optimizer`` section and ``mixed_precision``).
        learning_rate: a float, a ``LearningRateSchedule`` or a zero-argument callable (the
            trainer passes ``lambda: schedule(global_step)`` so that the schedule follows the
            global step, also across skipped float16 steps and resumes).

    Returns:
        ``keras.optimizers.SGD``, ``AdamW`` or ``Adam`` (``adam``: its coupled L2 decay is
        the trainer's loss term, see :func:`coupled_weight_decay`); wrapped in
        ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling) under ``mixed_float16``.
    """
    from keras_arcface.training.config import optimizer_choice

    opt = config.optimizer
    name, mode = optimizer_choice(opt)
    decoupled = opt.weight_decay if mode == "decoupled" else None
    if name == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=decoupled or None,
        )
    elif name == "adam":
        optimizer = keras.optimizers.Adam(
            learning_rate=learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon
        )
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=decoupled or 0.0,
            beta_1=opt.beta_1,
            beta_2=opt.beta_2,
            epsilon=opt.epsilon,
        )
    else:
        raise ValueError(
            f"optimizer.name must be sgd, adamw or adam. Received: optimizer.name={name!r}"
        )
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def coupled_weight_decay(optimizer_config):
    """The coupled (L2) decay factor the trainer adds to the loss; 0 for decoupled decay."""
    from keras_arcface.training.config import optimizer_choice

    _, mode = optimizer_choice(optimizer_config)
    return optimizer_config.weight_decay if mode == "coupled" else 0.0


def coupled_l2_penalty(variables, weight_decay):
    """``0.5 * weight_decay * sum(w**2)``: its gradient is the coupled decay ``wd * w``.

    Args:
        variables: the variables to decay.
        weight_decay: the factor.

    Returns:
        A float32 scalar tensor.
    """
    if not weight_decay or not variables:
        return tf.zeros((), tf.float32)
    total = tf.add_n(
        [tf.reduce_sum(tf.square(tf.cast(_tf_value(v), tf.float32))) for v in variables]
    )
    return 0.5 * float(weight_decay) * total


def _tf_value(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


class CenterOptimizer(tf.Module):
    """SGD-momentum, AdamW or Adam + L2 for the class-center matrix, with sparse row updates.

    Call :meth:`apply` in a replica context (inside ``strategy.run``) with the replica's
    gradient; it sums the gradient over replicas, then updates the center matrix on every
    device. A ``tf.IndexedSlices`` gradient (Partial FC) must carry the same sorted, unique
    indices on every replica; only those rows and their slots change.

    Args:
        centers: the center variable ``[num_classes, D]`` (float32).
        name: ``"sgd"``, ``"adamw"`` or ``"adam"`` (Adam moments with coupled L2).
            Default ``"sgd"``.
        momentum: SGD momentum. Default 0.9.
        nesterov: Nesterov momentum. Default False.
        weight_decay: decay factor. Default 5e-4.
        weight_decay_mode: ``"coupled"`` (L2 added to the gradient before momentum),
            ``"decoupled"`` or ``"auto"`` (coupled for ``sgd``/``adam``, decoupled for
            ``adamw``). Default ``"auto"``.
        beta_1, beta_2, epsilon: AdamW moments. Defaults 0.9, 0.999, 1e-8.

    Example:
        >>> opt = CenterOptimizer(head.centers, momentum=0.9)  # doctest: +SKIP
        >>> opt.apply(grad, learning_rate=0.1)  # inside strategy.run  # doctest: +SKIP
    """

    def __init__(
        self,
        centers,
        name="sgd",
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-4,
        weight_decay_mode="auto",
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
    ):
        from keras_arcface.training.config import OptimizerConfig, optimizer_choice

        super().__init__(name="center_optimizer")
        if name not in ("sgd", "adamw", "adam"):
            raise ValueError(f"name must be sgd, adamw or adam. Received: name={name!r}")
        if weight_decay_mode not in ("auto", "coupled", "decoupled"):
            raise ValueError(
                "weight_decay_mode must be auto, coupled or decoupled. "
                f"Received: weight_decay_mode={weight_decay_mode!r}"
            )
        name, weight_decay_mode = optimizer_choice(
            OptimizerConfig(name=name, weight_decay_mode=weight_decay_mode)
        )
        variable = _tf_value(centers)
        # Not tracked: the checkpoint holds the centers once, under head/centers.
        self._centers_fn = lambda: variable
        self.kind = "sgd" if name == "sgd" else "adamw"  # adam and adamw share the moments
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.coupled = weight_decay_mode == "coupled"
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        strategy = tf.distribute.get_strategy()
        shape = self.centers.shape
        with strategy.extended.colocate_vars_with(self.centers):
            self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
            self.slot_1 = tf.Variable(tf.zeros(shape), trainable=False, name="momentum")
            self.slot_2 = (
                tf.Variable(tf.zeros(shape), trainable=False, name="velocity")
                if self.kind == "adamw"
                else None
            )

    @property
    def centers(self):
        """The center variable this optimiser updates."""
        return self._centers_fn()

    @classmethod
    def from_config(cls, centers, config):
        """Builds it from an ``ExperimentConfig``'s ``optimizer`` section."""
        from keras_arcface.training.config import optimizer_choice

        opt = config.optimizer
        name, mode = optimizer_choice(opt)
        return cls(
            centers,
            name=name,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=opt.weight_decay,
            weight_decay_mode=mode,
            beta_1=opt.beta_1,
            beta_2=opt.beta_2,
            epsilon=opt.epsilon,
        )

    def apply(self, gradient, learning_rate, finite=None):
        """Sums ``gradient`` over replicas and updates the centers (replica context).

        Args:
            gradient: dense ``[N, D]`` tensor or ``tf.IndexedSlices`` with unique indices.
            learning_rate: scalar (tensor or float).
            finite: optional boolean scalar, equal on every replica; False skips the update
                (used with float16 loss scaling).
        """
        ctx = tf.distribute.get_replica_context()
        if isinstance(gradient, tf.IndexedSlices):
            values = ctx.all_reduce(tf.distribute.ReduceOp.SUM, gradient.values)
            indices = gradient.indices
        else:
            values = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.convert_to_tensor(gradient))
            indices = None
        learning_rate = tf.cast(learning_rate, tf.float32)
        if finite is None:
            finite = tf.constant(True)

        def merge_fn(strategy, values, indices, learning_rate, finite):
            first = strategy.experimental_local_results(finite)[0]

            def update():
                strategy.extended.update(
                    self.centers,
                    self._update,
                    args=(values, indices, learning_rate),
                    group=False,
                )
                return tf.constant(True)

            return tf.cond(first, update, lambda: tf.constant(False))

        tf.__internal__.distribute.interim.maybe_merge_call(
            merge_fn, tf.distribute.get_strategy(), values, indices, learning_rate, finite
        )

    def apply_local(self, gradient, learning_rate, finite=None):
        """Updates the centers with this replica's gradient alone (no all-reduce).

        For a center shard owned by one replica (``ShardedPartialFC``): the gradient already
        holds every example's contribution to its rows.

        Args:
            gradient: dense tensor or ``tf.IndexedSlices`` with unique indices.
            learning_rate: scalar.
            finite: optional boolean scalar; False skips the update.
        """
        if isinstance(gradient, tf.IndexedSlices):
            values, indices = gradient.values, gradient.indices
        else:
            values, indices = tf.convert_to_tensor(gradient), None
        learning_rate = tf.cast(learning_rate, tf.float32)

        def update():
            with tf.control_dependencies(
                [self._update(self.centers, values, indices, learning_rate)]
            ):
                return tf.constant(True)

        if finite is None:
            return update()
        return tf.cond(finite, update, lambda: tf.constant(False))

    def _update(self, var, values, indices, learning_rate):
        # Runs once per device, in that device's update context: `var` is the local copy and
        # the slot variables resolve to their local copies too.
        self.iterations.assign_add(1)
        if indices is None:
            rows = var
            slot_1 = self.slot_1
            slot_2 = self.slot_2
        elif self.kind == "sgd":
            return self._sparse_sgd(var, tf.cast(values, tf.float32), indices, learning_rate)
        else:
            rows = tf.gather(var, indices)
            slot_1 = tf.gather(self.slot_1, indices)
            slot_2 = tf.gather(self.slot_2, indices) if self.slot_2 is not None else None
        rows = tf.convert_to_tensor(rows)
        grad = tf.cast(values, tf.float32)
        if self.kind == "sgd":
            if self.coupled and self.weight_decay:
                grad = grad + self.weight_decay * rows
            new_slot_1 = self.momentum * tf.convert_to_tensor(slot_1) - learning_rate * grad
            if self.nesterov:
                delta = self.momentum * new_slot_1 - learning_rate * grad
            else:
                delta = new_slot_1
            if not self.coupled and self.weight_decay:
                delta = delta - learning_rate * self.weight_decay * rows
            new_slot_2 = None
        else:
            if self.coupled and self.weight_decay:
                grad = grad + self.weight_decay * rows
            step = tf.cast(self.iterations, tf.float32)
            new_slot_1 = self.beta_1 * tf.convert_to_tensor(slot_1) + (1 - self.beta_1) * grad
            new_slot_2 = self.beta_2 * tf.convert_to_tensor(slot_2) + (1 - self.beta_2) * grad**2
            m_hat = new_slot_1 / (1 - tf.pow(self.beta_1, step))
            v_hat = new_slot_2 / (1 - tf.pow(self.beta_2, step))
            delta = -learning_rate * m_hat / (tf.sqrt(v_hat) + self.epsilon)
            if not self.coupled and self.weight_decay:
                delta = delta - learning_rate * self.weight_decay * rows
        if indices is None:
            self.slot_1.assign(new_slot_1)
            if new_slot_2 is not None:
                self.slot_2.assign(new_slot_2)
            return var.assign_add(delta)
        self.slot_1.scatter_update(tf.IndexedSlices(new_slot_1, indices))
        if new_slot_2 is not None:
            self.slot_2.scatter_update(tf.IndexedSlices(new_slot_2, indices))
        return var.scatter_add(tf.IndexedSlices(delta, indices))

    def _sparse_sgd(self, var, grad, indices, learning_rate):
        # Sampled rows with SGD momentum: one fused kernel updates the momentum rows and the
        # weight rows in place (m = mu*m - lr*g; w += m, or w += mu*m - lr*g with Nesterov),
        # instead of gathering both, building five [S, D] temporaries and scattering back.
        # Only the coupled decay needs the current rows (g + wd*w); the decoupled decay
        # subtracts lr*wd*w (old rows) from the same rows first, which is the same sum.
        if self.weight_decay:
            rows = tf.gather(var, indices)
            if self.coupled:
                grad = grad + self.weight_decay * rows
            else:
                var.scatter_sub(tf.IndexedSlices(learning_rate * self.weight_decay * rows, indices))
        tf.raw_ops.ResourceSparseApplyKerasMomentum(
            var=var.handle,
            accum=self.slot_1.handle,
            lr=learning_rate,
            grad=grad,
            indices=indices,
            momentum=tf.constant(self.momentum, tf.float32),
            use_locking=False,
            use_nesterov=self.nesterov,
        )
        return var


class ShardedCenterOptimizer:
    """One :class:`CenterOptimizer` per local center shard of a ``ShardedPartialFC``.

    Each replica updates its own rows and their slots with its own gradient; nothing is
    all-reduced. Build it outside ``strategy.scope()``, next to the head.

    Args:
        head: the ``ShardedPartialFC``.
        config: an ``ExperimentConfig`` (its ``optimizer`` section).

    Example:
        >>> opt = ShardedCenterOptimizer(head, cfg)  # doctest: +SKIP
        >>> opt.apply(grad, learning_rate)  # inside strategy.run  # doctest: +SKIP
    """

    def __init__(self, head, config):
        self.head = head
        self.optimizers = {}
        for replica in head.local_replicas:
            with tf.device(head.devices[replica]):
                self.optimizers[replica] = CenterOptimizer.from_config(head.shard(replica), config)

    def apply(self, gradient, learning_rate, finite=None):
        """Updates the calling replica's shard (inside ``strategy.run``)."""
        replica = int(
            tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
        )
        return self.optimizers[replica].apply_local(gradient, learning_rate, finite=finite)
