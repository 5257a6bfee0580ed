"""The training loop: one custom loop for every ``tf.distribute`` strategy.

``Trainer(config, run_dir).fit()`` trains the embedding model (a backbone from
``keras_arcface.models.get_backbone``) with a margin loss on a (Partial FC) class-center
matrix and writes the run folder of ``docs/architecture.md``::

    RUN/config.yaml  checkpoints/  embedding_latest.keras  embedding_best.keras
    metrics.csv  tensorboard/  training_curve.png

One step (:func:`keras_arcface.training.engine.make_train_step`, the step the paper's
comparison trains through too): on every replica, the embeddings of its share of the
global batch, the per-example margin loss against the (sampled) centers, and gradients of
``sum(loss) / global_batch`` (plus the coupled L2 term divided by the replica count); a
non-finite gradient on any replica skips the step everywhere, in every precision mode; the
Keras optimiser sums backbone gradients over replicas,
:class:`~keras_arcface.training.optimizers.CenterOptimizer` sums the center gradient and
updates only the sampled rows; batch-norm moving statistics are averaged over replicas.
Keras 3 ``model.fit`` is not used because it fails under ``MultiWorkerMirroredStrategy``;
this loop runs unchanged on one device, under ``MirroredStrategy`` and under
``MultiWorkerMirroredStrategy``.

Resuming: the checkpoint holds the backbone, the centers, both optimisers' slots and the
global step; the learning rate is a function of the step, and the data position is
recovered by re-seeding: training epoch ``e`` reads the dataset built with
``start_epoch=e`` (its shuffles and augmentation are seeded by ``seed`` and ``e``), and a run
resumed ``k`` steps into an epoch skips the ``k`` batches already consumed
(``skip_examples``) before decoding. A resumed run therefore sees the same batches as an
uninterrupted one.

Example:
    >>> from keras_arcface.training import Trainer, config
    >>> cfg = config.load_config("synthetic_demo", ["data.train_dir=runs/synth/train"])
    >>> result = Trainer(cfg, "runs/demo").fit()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time

import keras
import tensorflow as tf

from keras_arcface._deprecation import renamed_function
from keras_arcface.layers.partial_fc import CenterInitializer, PartialFC, intra_angle_of
from keras_arcface.layers.sharded_partial_fc import ShardedPartialFC, why_cannot_shard
from keras_arcface.training import (
    callbacks,
    checkpointing,
    engine,
    finetune,
    schedules,
    shard_sync,
)
from keras_arcface.training import config as config_lib
from keras_arcface.training.optimizers import (
    CenterOptimizer,
    ShardedCenterOptimizer,
    build_optimizer,
    coupled_l2_penalty,
    coupled_weight_decay,
)
from keras_arcface.training.strategy import create_strategy, worker_info


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Args:
        run_dir: the run folder.
        step: the global step reached.
        loss: the last logged training loss.
        scores: the last verification scores (``{}`` without verification).
        best_accuracy: best mean verification accuracy (None without verification).
        seconds: wall time of ``fit``.
        images_per_second: training throughput over the whole fit.
        stopped_early: early stopping ended the run before ``total_steps``.
        data_check: under ``data.dataset_kwargs.on_error=skip``, what the run's data lacked
            (``ok``, ``summary``, ``path`` of ``RUN/data_check.json``); None otherwise.
    """

    run_dir: str
    step: int
    loss: float
    scores: dict
    best_accuracy: float | None
    seconds: float
    images_per_second: float
    stopped_early: bool = False
    data_check: dict | None = None


def build_loss(loss_config):
    """The margin loss of an experiment via ``keras_arcface.losses.get``.

    ``margin`` is passed only when set (``None`` keeps the loss's own default) and only to
    losses that take one.
    """
    from keras_arcface import losses

    kwargs = {"scale": loss_config.scale, **loss_config.loss_kwargs}
    if loss_config.margin is not None:
        probe = losses.get(loss_config.name)
        if "margin" not in inspect.signature(type(probe).__init__).parameters:
            raise ValueError(
                f"The loss '{loss_config.name}' has no single margin; set its margins in "
                f"loss.loss_kwargs. Received: loss.margin={loss_config.margin!r}"
            )
        kwargs["margin"] = loss_config.margin
    loss = losses.get(loss_config.name, **kwargs)
    if not callable(getattr(loss, "logits", None)):
        raise ValueError(
            f"The loss '{loss_config.name}' has no logits(labels, cosine) and cannot train the "
            "class-center head; choose a margin loss (arcface, cosface, sphereface, combined, "
            f"norm_softmax, softmax). Received: loss.name={loss_config.name!r}"
        )
    return loss


def default_backbone_fn(model_config):
    """Returns a zero-argument builder of the configured backbone."""

    def build():
        from keras_arcface.models import get_backbone

        return get_backbone(
            model_config.backbone,
            embedding_dim=model_config.embedding_dim,
            **model_config.backbone_kwargs,
        )

    return build


class Trainer:
    """Trains an embedding model from an :class:`~keras_arcface.training.config.ExperimentConfig`.

    Args:
        config: the experiment.
        run_dir: the run folder (created).
        resume: continue from ``RUN/checkpoints`` when it holds a checkpoint. Without it, a
            run folder that already has checkpoints is an error. Default False.
        strategy: a ``tf.distribute.Strategy``; default from ``config.distribution``.
        backbone_fn: zero-argument callable returning the embedding model (the
            architecture contract); default ``get_backbone(config.model...)``.
        dataset_fn: ``fn(input_context, epoch, skip_batches, batch_size)`` returning a
            dataset of per-replica batches ``(images, labels)``; default the TFRecord
            pipeline ``keras_arcface.data.make_dataset`` on ``config.data.train_dir``.
        verification_sets: ``.bin`` paths or ``(name, images, issame)`` triples; default
            ``config.evaluation.bins``.
        num_classes: identities, when there is no manifest to read them from.
        num_images: images per epoch, likewise.
        allow_config_change: resume although ``config`` differs from the run's
            ``config.yaml`` (the old file is kept as ``config.step-N.yaml``). Without it such a
            resume is a ``ConfigError`` listing the changed keys. Default False.

    Example:
        >>> trainer = Trainer(cfg, "runs/casia", resume=True)  # doctest: +SKIP
        >>> trainer.fit().step  # doctest: +SKIP
    """

    def __init__(
        self,
        config,
        run_dir,
        *,
        resume=False,
        strategy=None,
        backbone_fn=None,
        dataset_fn=None,
        verification_sets=None,
        num_classes=None,
        num_images=None,
        allow_config_change=False,
    ):
        config_lib.validate(config)
        self.config = config
        self.run_dir = os.path.abspath(run_dir)
        self.strategy = strategy or create_strategy(
            config.distribution.strategy, config.distribution.devices
        )
        self.task_id, self.is_chief, self.num_workers = worker_info(self.strategy)
        self.derived = self._resolve_derived(num_classes, num_images)
        self._dataset_fn = dataset_fn or self._tfrecord_dataset
        self._checkpoint_dir = os.path.join(self.run_dir, "checkpoints")
        self._check_fresh_run(resume)
        config_moved_aside = None
        if resume and self.is_chief:
            config_moved_aside = self._prepare_resume(allow_config_change)
        self.loss = build_loss(config.loss)
        self.sharded = self._decide_sharding()
        self._build_state(backbone_fn or default_backbone_fn(config.model))
        self.checkpointer = checkpointing.Checkpointer(
            self.checkpoint,
            self._checkpoint_dir,
            is_chief=self.is_chief,
            max_to_keep=config.checkpoint.max_to_keep,
        )
        self.restored_from = self._restore() if resume else None
        if config_moved_aside:
            # Only once the checkpoint is accepted: a refused resume leaves the folder as it was.
            os.replace(*config_moved_aside)
        self._embed = None
        if self.restored_from is None and config.model.init_from:
            self._init_from(config.model)
        bins = config.evaluation.bins if verification_sets is None else verification_sets
        self.verifier = self._make_verifier(bins)
        self._check_early_stopping(bool(bins))
        # Written once the weights are in place: a failed init_from leaves no run folder.
        os.makedirs(self.run_dir, exist_ok=True)
        if self.is_chief:
            config_lib.save_resolved(
                config, self.derived, os.path.join(self.run_dir, "config.yaml")
            )
        self._stale_verifications = 0
        self._train_step = self._make_train_step()
        # Head warm-up: the backbone frozen, batch-norm statistics included.
        self._head_step = (
            self._make_train_step(frozen=True) if config.schedule.head_warmup_steps else None
        )

    # ----------------------------------------------------------------------------- set-up
    def _resolve_derived(self, num_classes, num_images):
        """The derived values, class and image counts from the arguments or the manifest."""
        manifest_classes, manifest_images = self._manifest_counts()
        return config_lib.resolve(
            self.config,
            num_replicas=self.strategy.num_replicas_in_sync,
            num_classes=num_classes or manifest_classes,
            num_images=num_images or manifest_images,
        )

    def _check_fresh_run(self, resume):
        """Refuses to start a new run in a folder that already holds checkpoints."""
        if not resume and tf.train.latest_checkpoint(self._checkpoint_dir):
            raise ValueError(
                "The run folder already holds checkpoints: pass resume=True (--resume) to "
                f"continue it, or choose another folder. Received: run_dir={self.run_dir!r}"
            )

    def _make_verifier(self, bins):
        """The chief's :class:`VerificationMonitor` over ``bins``, or None."""
        if not (bins and self.is_chief):
            return None
        evaluation = self.config.evaluation
        return callbacks.VerificationMonitor(bins, evaluation.batch_size, evaluation.flip)

    def _prepare_resume(self, allow_config_change):
        """Cleans a killed run's temporary files; refuses a silently changed config.

        Returns:
            ``(config.yaml, config.step-N.yaml)`` to rename once the resume is accepted, or None.
        """
        for path in checkpointing.clean_interrupted_saves(self.run_dir):
            print(f"removed {path} (left by an interrupted save)")
        path = os.path.join(self.run_dir, "config.yaml")
        latest = tf.train.latest_checkpoint(self._checkpoint_dir)
        if latest is None or not os.path.isfile(path):
            return
        changes = config_lib.changed_keys(config_lib.read_experiment(path), self.config)
        if not changes:
            return
        step = latest.rsplit("-", 1)[-1]
        if not allow_config_change:
            raise config_lib.ConfigError(
                f"Resuming {self.run_dir} (step {step}) with a config that differs from its "
                f"config.yaml: {'; '.join(changes)}. Drop those overrides to continue the run "
                "as it was, or pass --allow-config-change (allow_config_change=True) to resume "
                f"with the new values (config.yaml is then kept as config.step-{step}.yaml)."
            )
        print(f"resuming with changed config: {'; '.join(changes)}")
        return path, os.path.join(self.run_dir, f"config.step-{step}.yaml")

    def _manifest_counts(self):
        if not self.config.data.train_dir:
            return None, None
        from keras_arcface.data import read_manifest

        manifest = read_manifest(self.config.data.train_dir)
        return int(manifest["num_classes"]), int(manifest["num_images"])

    def _build_state(self, backbone_fn):
        cfg, derived = self.config, self.derived
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(cfg.mixed_precision)
        try:
            with self.strategy.scope():
                keras.utils.set_random_seed(cfg.seed)
                self.backbone = backbone_fn()
                self._check_backbone(self.backbone)
                dim = self._dim = int(self.backbone.outputs[0].shape[-1])
                if not self.sharded:
                    self.head = PartialFC(
                        derived.num_classes,
                        dim,
                        sample_rate=cfg.partial_fc.sample_rate,
                        seed=cfg.seed,
                        logits_fn=self._logits_fn(),
                        name="partial_fc",
                    )
                    self.head.build((None, dim))
                    self.center_optimizer = CenterOptimizer.from_config(self.head.centers, cfg)
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
                self.schedule = schedules.from_config(cfg, derived)
                self.optimizer = build_optimizer(cfg, self._backbone_learning_rate)
                self.optimizer.build(self.backbone.trainable_variables)
        finally:
            keras.mixed_precision.set_global_policy(previous)
            # The seed was for initialisation; a global TF seed would also change how every
            # later tf.data op draws its seeds (and breaks tensor-valued op seeds).
            tf.random.set_seed(None)
        head_state, center_state = self._build_head_state(dim)
        self.checkpoint = tf.train.Checkpoint(
            step=self.step,
            backbone=self.backbone,
            head=head_state,
            optimizer=self.optimizer,
            center_optimizer=center_state,
        )

    def _build_head_state(self, dim):
        """The sharded head (outside the strategy scope) and the head's checkpoint nodes."""
        self._sharded_rows = []
        if not self.sharded:
            return self.head, self.center_optimizer
        cfg = self.config
        # Built outside the strategy scope: the shards are per-device variables.
        self.head = ShardedPartialFC(
            self.derived.num_classes,
            dim,
            self.strategy,
            sample_rate=cfg.partial_fc.sample_rate,
            seed=cfg.seed,
            logits_fn=self._logits_fn(),
        )
        self.center_optimizer = ShardedCenterOptimizer(self.head, cfg)
        head_state, center_state, self._sharded_rows = checkpointing.sharded_head_state(
            self.head, self.center_optimizer
        )
        return head_state, center_state

    def _decide_sharding(self):
        setting = self.config.partial_fc.shard_centers
        if setting is False or self.strategy.num_replicas_in_sync == 1:
            return False
        reason = why_cannot_shard(self.strategy, self.derived.num_classes)
        if reason is None:
            return True
        if setting:
            raise ValueError(
                f"partial_fc.shard_centers=true cannot be used: {reason}. Set it to false (or "
                "leave it unset) to keep a full copy of the centers on every replica. "
                "Received: partial_fc.shard_centers=True"
            )
        return False

    def _restore(self):
        shape = (self.derived.num_classes, self._dim)
        if self.num_workers > 1:
            # Every worker resumes from the chief's checkpoint, seen or sent (shard_sync).
            return shard_sync.restore_latest(
                self.strategy, self.checkpointer, self.is_chief, centers_shape=shape
            )
        return self.checkpointer.restore_latest(centers_shape=shape)

    def center_variables(self):
        """The class-center variables of this process (one, or one per local shard)."""
        if self.sharded:
            return [self.head.shard(r) for r in self.head.local_replicas]
        return [self.head.centers]

    centre_variables = renamed_function(center_variables, "centre_variables")

    @staticmethod
    def _check_backbone(model):
        if not isinstance(model, keras.Model) or len(model.outputs) != 1:
            raise TypeError(
                "The backbone must be a keras.Model with one embedding output [None, D]. "
                f"Received: backbone={model!r}"
            )

    def current_learning_rate(self):
        """The learning rate at the current global step."""
        return self.schedule(self.step)

    def _backbone_learning_rate(self):
        multiplier = self.config.optimizer.backbone_lr_multiplier
        rate = self.current_learning_rate()
        return rate if multiplier == 1.0 else rate * multiplier

    def _logits_fn(self):
        warmup = self.derived.margin_warmup_steps
        if not warmup:
            return self.loss.logits
        return finetune.margin_warmup(self.loss.logits, self.loss.scale, lambda: self.step, warmup)

    def _init_from(self, model_config):
        """Loads ``model.init_from`` into the backbone (and maybe the centers); logs it."""
        source, kind, file = finetune.load_init_model(model_config.init_from, model_config.backbone)
        copied = finetune.copy_backbone_weights(source, self.backbone, model_config.init_from)
        report = {"init_from": model_config.init_from, "kind": kind, "file": file}
        report.update(tensors_copied=copied, init_centers=model_config.init_centers)
        if model_config.init_centers == "class_mean":
            centers, counts = finetune.class_mean_centers(
                self.embed, self._class_mean_batches(), self._initial_centers()
            )
            self._assign_centers(centers)
            report.update(classes_seen=int((counts > 0).sum()), images_embedded=int(counts.sum()))
        if self.is_chief:
            finetune.write_report(self.run_dir, report)
        self.init_report = report

    def _initial_centers(self):
        if not self.sharded:
            return self.head.centers.numpy()
        init = CenterInitializer(seed=self.config.seed)  # what every shard started from
        return init.rows(0, self.derived.num_classes, self._dim).numpy()

    def _assign_centers(self, centers):
        if not self.sharded:
            self.head.centers.assign(centers)
            return
        for replica in self.head.local_replicas:
            start, stop = self.head.bounds[replica]
            self.head.shard(replica).assign(centers[start:stop])

    def _class_mean_batches(self):
        """One pass over the training data, without augmentation where the data allows."""
        batch = self.derived.global_batch_size
        if self._dataset_fn == self._tfrecord_dataset:
            from keras_arcface.data import make_dataset

            return make_dataset(self.config.data.train_dir, batch, training=False)
        dataset = self._dataset_fn(tf.distribute.InputContext(), 0, 0, batch)
        return dataset.take(self.derived.steps_per_epoch)

    def _tfrecord_dataset(self, input_context, epoch, skip_batches, batch_size):
        from keras_arcface.data import make_dataset

        replicas_here = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        return make_dataset(
            self.config.data.train_dir,
            batch_size,
            training=True,
            seed=self.config.seed,
            input_context=input_context,
            start_epoch=epoch,
            skip_examples=skip_batches * batch_size * replicas_here,
            # Bytes: the backbone's first layer casts them (on the accelerator, if any).
            **{"image_dtype": "uint8", **self.config.data.dataset_kwargs},
        )

    def _distributed_dataset(self, epoch, skip_batches):
        global_batch = self.derived.global_batch_size

        def fn(input_context):
            batch = input_context.get_per_replica_batch_size(global_batch)
            return self._dataset_fn(input_context, epoch, skip_batches, batch)

        return self.strategy.distribute_datasets_from_function(fn)

    # ------------------------------------------------------------------------------ step
    def _head_loss(self, embeddings, labels, global_labels):
        if self.sharded:
            return self.head.per_example_loss(
                embeddings, labels, step=self.step, with_target_cosine=True
            )
        return self.head.per_example_loss(
            embeddings,
            labels,
            global_labels=global_labels,
            step=self.step,
            with_target_cosine=True,
        )

    def _make_train_step(self, frozen=False):
        """The training step; ``frozen`` trains the class centers only (head warm-up)."""
        cfg, derived = self.config, self.derived
        num_replicas = float(self.strategy.num_replicas_in_sync)
        global_batch = float(derived.global_batch_size)
        coupled_wd = coupled_weight_decay(cfg.optimizer)
        # Frozen: no backbone variable is updated and batch norm runs in inference mode, so
        # its moving statistics stay as loaded.
        backbone_vars = [] if frozen else self.backbone.trainable_variables
        intra_weight = float(getattr(self.loss, "intra_weight", 0.0) or 0.0)

        def loss_fn(images, labels):
            ctx = tf.distribute.get_replica_context()
            labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
            gather = num_replicas > 1 and not self.sharded  # the sharded head gathers itself
            global_labels = ctx.all_gather(labels, axis=0) if gather else labels
            embeddings = self.backbone(images, training=not frozen)
            if frozen:
                embeddings = tf.stop_gradient(embeddings)
            per_example, target_cosine = self._head_loss(embeddings, labels, global_labels)
            if intra_weight:
                per_example = per_example + intra_weight * intra_angle_of(target_cosine)
            data_loss = tf.reduce_sum(per_example) / global_batch
            total = data_loss + coupled_l2_penalty(backbone_vars, coupled_wd) / num_replicas
            return total, data_loss  # the metrics show the data loss, without the L2 term

        def apply_centers(gradient, finite):
            self.center_optimizer.apply(gradient, self.current_learning_rate(), finite=finite)

        return engine.make_train_step(
            self.strategy,
            loss_fn,
            self.optimizer,
            backbone_vars,
            # The sharded head's variable is the calling replica's shard.
            extra=[(self.head.local_shard if self.sharded else self.head.centers, apply_centers)],
            statistics=[] if frozen else self.backbone.non_trainable_variables,
            clipnorm=cfg.optimizer.clipnorm,
            counter=self.step,
        )

    # ------------------------------------------------------------------------------- fit
    def embed(self, images):
        """Embeddings of float32 RGB 0..255 images with the current weights (inference)."""
        if self._embed is None:
            self._embed = tf.function(
                lambda x: self.backbone(x, training=False),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
            )
        return self._embed(tf.convert_to_tensor(images, tf.float32)).numpy()

    def fit(self, progress=None, until=None):
        """Trains to ``derived.total_steps``; returns a :class:`TrainResult`.

        Args:
            progress: show the progress bar; default ``config.logging.progress_bar``.
            until: stop (with a checkpoint) after this global step instead of at the end,
                for time-boxed jobs; a later ``resume`` continues. Default None.

        Raises:
            NonFiniteLossError: the loss became NaN/Inf (no checkpoint is written for it;
                the last good one stays the latest).
        """
        cfg, derived = self.config, self.derived
        show = cfg.logging.progress_bar if progress is None else progress
        step = start_step = int(self.step.numpy())
        report = _FitReport(self, step, show)
        t_fit = report.start_clock()
        end = derived.total_steps if until is None else min(int(until), derived.total_steps)
        try:
            step, loss, scores = self._fit_steps(step, end, report)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as failure:
            _raise_if_bad_labels(failure)
            damaged = self._damaged_data(failure)
            if damaged is None:
                raise
            raise damaged from None
        finally:
            report.close()
        seconds = time.perf_counter() - t_fit
        if self.is_chief and cfg.logging.plot:
            callbacks.plot_training_curve(
                os.path.join(self.run_dir, callbacks.CSV_NAME),
                os.path.join(self.run_dir, "training_curve.png"),
                title=cfg.name,
            )
        done = (step - start_step) * derived.global_batch_size
        return TrainResult(
            run_dir=self.run_dir,
            step=step,
            loss=loss,
            scores=scores,
            best_accuracy=self.verifier.best if self.verifier and self.verifier.best >= 0 else None,
            seconds=seconds,
            images_per_second=done / max(seconds, 1e-9),
            stopped_early=step < derived.total_steps and until is None,
            data_check=self._check_skipped_data(),
        )

    def _fit_steps(self, step, end, report):
        """Steps from ``step`` to ``end``, epoch by epoch: ``(step, last loss, last scores)``.

        Verifies, logs and checkpoints on their schedules; early stopping moves ``end``.
        """
        cfg, derived = self.config, self.derived
        loss, scores = math.nan, {}
        while step < end:
            epoch, offset = divmod(step, derived.steps_per_epoch)
            iterator = iter(self._distributed_dataset(epoch, offset))
            last = min(derived.steps_per_epoch - offset, end - step)
            for _ in range(last):
                head_only = step < cfg.schedule.head_warmup_steps
                train_step = self._head_step if head_only else self._train_step
                loss = float(train_step(iterator)[0])
                step += 1
                self._check_loss(loss, step)
                report.step_done()
                log_now = step % cfg.logging.every_steps == 0 or step == derived.total_steps
                verify_now = self.verifier is not None and (
                    (derived.verify_every_steps and step % derived.verify_every_steps == 0)
                    or step == derived.total_steps
                )
                if verify_now:
                    scores = self._verify()
                if log_now or verify_now:
                    learning_rate = float(self.schedule(step - 1))
                    report.record(step, loss, learning_rate, scores if verify_now else None)
                if verify_now and self._should_stop_early():
                    end = step
                if step % cfg.checkpoint.every_steps == 0 or step == end:
                    self._save(step)
                if step == end:
                    break
        return step, loss, scores

    def _check_loss(self, loss, step):
        """Raises :class:`NonFiniteLossError` when ``loss`` (of ``step``) is NaN or Inf."""
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss became {loss} at step {step}; training stopped. "
                f"The last good checkpoint ({self.checkpointer.latest}) is kept. "
                "Lower optimizer.learning_rate, add a warm-up "
                "(schedule.warmup_epochs) or set optimizer.clipnorm, then resume "
                "with --resume."
            )

    def _uses_tfrecords(self):
        return bool(self.config.data.train_dir) and self._dataset_fn == self._tfrecord_dataset

    def _damaged_data(self, failure):
        """A DataError naming the damaged shards/records behind a pipeline failure, or None."""
        if not self._uses_tfrecords():
            return None
        from keras_arcface.data.check import damaged_data_error

        return damaged_data_error(self.config.data.train_dir, failure)

    def _check_skipped_data(self):
        """Under ``on_error="skip"``: what the data lacked, in ``RUN/data_check.json``."""
        skip = self.config.data.dataset_kwargs.get("on_error") == "skip"
        if not (skip and self.is_chief and self._uses_tfrecords()):
            return None
        from keras_arcface.data.check import write_data_check

        path = os.path.join(self.run_dir, "data_check.json")
        report = write_data_check(self.config.data.train_dir, path)
        return {"ok": report["ok"], "summary": report["summary"], "path": path}

    def _check_early_stopping(self, has_bins):
        patience = self.config.evaluation.early_stopping_patience
        if patience and not has_bins:
            raise ValueError(
                "Early stopping needs a verification set: set evaluation.bins. "
                f"Received: evaluation.early_stopping_patience={patience}"
            )
        if patience and self.num_workers > 1:
            raise ValueError(
                "Early stopping is decided by the chief's verification and is not available "
                f"with several workers. Received: evaluation.early_stopping_patience={patience}"
            )

    def _should_stop_early(self):
        patience = self.config.evaluation.early_stopping_patience
        return bool(patience) and self._stale_verifications >= patience

    @tf.function
    def _weights_finite(self):
        variables = self.backbone.weights + self.center_variables()
        values = [
            v.value if isinstance(v, keras.Variable) else tf.convert_to_tensor(v) for v in variables
        ]
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(x)) for x in values])

    def _verify(self):
        scores = self.verifier(self.embed)
        improved = self.verifier.is_best(scores)
        self._stale_verifications = 0 if improved else self._stale_verifications + 1
        if improved:
            checkpointing.save_model_atomic(
                self.backbone, os.path.join(self.run_dir, "embedding_best.keras")
            )
        return scores

    def _save(self, step):
        # A step whose loss was finite can still leave non-finite weights behind (its
        # update); such a state is never written, the previous checkpoint stays the latest.
        if not bool(self._weights_finite()):
            raise NonFiniteLossError(
                f"The weights became non-finite at step {step}; training stopped without "
                f"saving. The last good checkpoint ({self.checkpointer.latest}) is kept."
            )
        if self.sharded and self.num_workers > 1:
            # The chief's checkpoint holds every worker's rows: gather the other workers'.
            shard_sync.gather_remote_rows(
                self.strategy, self.head, self._sharded_rows, self.is_chief
            )
        try:
            self.checkpointer.save(step)
        finally:
            for rows in self._sharded_rows:
                rows.remote = []
        if self.is_chief:
            checkpointing.save_model_atomic(
                self.backbone, os.path.join(self.run_dir, "embedding_latest.keras")
            )


class _FitReport:
    """What ``fit`` shows while it runs: the chief's metrics log and its progress bar."""

    def __init__(self, trainer, step, show):
        cfg, derived = trainer.config, trainer.derived
        self._steps_per_epoch = derived.steps_per_epoch
        self._global_batch_size = derived.global_batch_size
        self.logger = self.bar = None
        if trainer.is_chief:
            verifier = trainer.verifier
            extra = verifier.columns + ["verify/mean_accuracy"] if verifier else []
            self.logger = callbacks.MetricsLogger(
                trainer.run_dir,
                extra_columns=extra,
                tensorboard=cfg.logging.tensorboard,
                resume_step=step,
            )
        if show and trainer.is_chief:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=derived.total_steps, initial=step, desc=cfg.name, unit="step")
        self._step_log = step

    def start_clock(self):
        """Starts timing (images per second are measured between rows); returns the time."""
        self._t_log = time.perf_counter()
        return self._t_log

    def step_done(self):
        """Advances the bar by one step."""
        if self.bar is not None:
            self.bar.update(1)

    def record(self, step, loss, learning_rate, scores):
        """Logs a row and updates the bar; ``scores`` are this step's verification, or None."""
        now = time.perf_counter()
        rate = (step - self._step_log) * self._global_batch_size / max(now - self._t_log, 1e-9)
        self._t_log, self._step_log = now, step
        row = {
            "epoch": round(step / self._steps_per_epoch, 4),
            "loss": loss,
            "learning_rate": learning_rate,
            "images_per_second": rate,
        }
        if scores is not None:
            row.update(scores)
        if self.logger is not None:
            self.logger.log(step, row)
        if self.bar is not None:
            post = {"loss": f"{loss:.3f}", "lr": f"{learning_rate:.3g}"}
            post["img/s"] = f"{rate:.0f}"
            if scores is not None:
                post["acc"] = f"{scores['verify/mean_accuracy']:.4f}"
            self.bar.set_postfix(post)

    def close(self):
        """Closes the bar and the log."""
        if self.bar is not None:
            self.bar.close()
        if self.logger is not None:
            self.logger.close()


def _raise_if_bad_labels(failure):
    """A ValueError for the label-range assertion of the heads (other failures pass)."""
    message = getattr(failure, "message", str(failure))
    if "Labels must be in" not in message:
        return
    detail = message[message.index("Labels must be in") :].strip()
    raise ValueError(
        "A training batch holds a label outside the classes of the run; no weights were "
        f"updated and no checkpoint was written for this step. {detail}"
    ) from None
