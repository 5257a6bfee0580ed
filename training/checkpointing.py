"""Resume checkpoints and atomic model files of a run folder.

``tf.train.CheckpointManager`` writes each checkpoint's data and index files first and
records it in the small ``checkpoint`` state file last, by writing a temporary file and
renaming it over the old one. A process killed mid-save therefore leaves the state file
pointing at the previous complete checkpoint; partial files of the interrupted save are
never referenced and are cleaned up by the next save (``max_to_keep``).

Under ``MultiWorkerMirroredStrategy`` every worker must take part in a save; only the chief
writes to ``RUN/checkpoints``, the others write to a private temporary folder that is
deleted afterwards (the pattern of the TensorFlow multi-worker guide).

Example:
    >>> ckpt = tf.train.Checkpoint(step=step, model=model)
    >>> manager = Checkpointer(ckpt, "runs/x/checkpoints", is_chief=True)
    >>> manager.restore_latest()  # 0 when there is nothing to resume
"""

import functools
import shutil
import tempfile

import tensorflow as tf
from tensorflow.python.trackable import base
from tensorflow.python.training.saving import saveable_object

from keras_arcface._deprecation import renamed_function, renamed_keywords, warn_renamed
from keras_arcface._io import atomic_path


class Checkpointer:
    """A ``tf.train.CheckpointManager`` that knows chief and non-chief workers.

    Args:
        checkpoint: the ``tf.train.Checkpoint`` (model, centers, optimisers, step).
        directory: ``RUN/checkpoints``.
        is_chief: whether this worker writes the real checkpoints. Default True.
        max_to_keep: checkpoints kept. Default 3.
    """

    def __init__(self, checkpoint, directory, is_chief=True, max_to_keep=3):
        self.checkpoint = checkpoint
        self.directory = directory
        self.is_chief = bool(is_chief)
        self.max_to_keep = int(max_to_keep)
        self.manager = tf.train.CheckpointManager(
            checkpoint, directory, max_to_keep=self.max_to_keep, checkpoint_name="ckpt"
        )

    @property
    def latest(self):
        """Path prefix of the newest complete checkpoint, or None."""
        return self.manager.latest_checkpoint

    def save(self, step):
        """Saves at ``step`` (all workers call this); returns the chief's path or None."""
        if self.is_chief:
            return self.manager.save(checkpoint_number=int(step))
        scratch = tempfile.mkdtemp(prefix="keras-arcface-worker-ckpt-")
        try:
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(
                checkpoint_number=int(step)
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return None

    @renamed_keywords(centres_shape="centers_shape")
    def restore_latest(self, centers_shape=None):
        """Restores the newest checkpoint if there is one.

        Args:
            centers_shape: ``(num_classes, embedding_dim)`` of this run; a checkpoint whose
                class centers differ is refused before anything is restored or written.

        Returns:
            The restored path, or None when the folder holds no checkpoint.
        """
        path = self.latest
        if path is None:
            return None
        return self.restore(path, centers_shape)

    @renamed_keywords(centres_shape="centers_shape")
    def restore(self, path, centers_shape=None):
        """Restores the checkpoint at ``path`` (see :meth:`restore_latest`); returns ``path``."""
        if centers_shape is not None:
            check_centers_shape(path, *centers_shape)
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()
        return path


CENTERS_KEY = "head/centers/.ATTRIBUTES/VARIABLE_VALUE"


def check_centers_shape(path, num_classes, embedding_dim):
    """Raises ValueError when the checkpoint's class centers are not ``[N, D]`` of this run."""
    saved = tf.train.load_checkpoint(path).get_variable_to_shape_map().get(CENTERS_KEY)
    if saved is None:
        return
    saved_classes, saved_dim = (int(v) for v in saved)
    if saved_dim != int(embedding_dim):
        raise ValueError(
            f"The checkpoint {path} was trained with embedding size {saved_dim}, but this run's "
            f"backbone gives embeddings of size {embedding_dim}. Resume with the same "
            "model.embedding_dim and backbone, or start a new run folder. "
            f"Received: embedding_dim={embedding_dim}"
        )
    if saved_classes != int(num_classes):
        raise ValueError(
            f"The checkpoint {path} holds class centers for {saved_classes} classes, but this "
            f"run has {num_classes} (data manifest or data.num_classes). Resume on the same "
            f"training data, or start a new run folder. Received: num_classes={num_classes}"
        )


check_centres_shape = renamed_function(check_centers_shape, "check_centres_shape")


def __getattr__(name):
    if name == "CENTRES_KEY":  # the spelling of the first version of this constant
        warn_renamed("CENTRES_KEY", "CENTERS_KEY")
        return CENTERS_KEY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def save_model_atomic(model, path):
    """Saves a Keras model to ``path`` (``.keras``) through a temporary file and a rename."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def clean_interrupted_saves(run_dir):
    """Removes what a killed save left behind in a run folder; returns the removed paths.

    A process killed inside a checkpoint or model save leaves TensorFlow's
    ``checkpoints/ckpt-N_temp/`` folder and ``checkpoint.tmp*`` state file, or the hidden
    temporary file of an atomic write (``.embedding_latest.keras.XXXX.tmp.keras``, older
    ``.tmp-*.keras``). None of them is ever referenced; they are removed when the run resumes.

    Example:
        >>> clean_interrupted_saves("runs/casia_r50")  # doctest: +SKIP
        []
    """
    import glob
    import os

    checkpoints = os.path.join(run_dir, "checkpoints")
    patterns = [
        os.path.join(checkpoints, "ckpt-*_temp"),
        os.path.join(checkpoints, "checkpoint.tmp*"),
        os.path.join(run_dir, ".tmp-*"),
        os.path.join(run_dir, ".*.tmp*"),
    ]
    removed = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return removed


class ShardedRows(base.Trackable):
    """A logical ``[N, D]`` matrix held as row shards, saved as slices of one tensor.

    The checkpoint holds the logical matrix under the same key a single ``[N, D]`` variable
    would use (``.../.ATTRIBUTES/VARIABLE_VALUE``), each shard written as its slice
    ``[start, stop)``. A restore reads, for each local shard, exactly its rows, whatever the
    shards of the run that saved it (another replica count, or no sharding at all), so a run
    resumes on any number of replicas; no process ever builds the whole matrix.

    Args:
        parts: ``(start, stop, variable)`` of the shards held by this process.
        num_rows: ``N``.

    Example:
        >>> rows = ShardedRows([(0, 5, shard_0), (5, 10, shard_1)], 10)  # doctest: +SKIP
        >>> tf.train.Checkpoint(centers=rows).save(path)  # doctest: +SKIP
    """

    def __init__(self, parts, num_rows, replicas=None):
        self.parts = list(parts)
        self.num_rows = int(num_rows)
        self.replicas = list(replicas) if replicas is not None else list(range(len(self.parts)))
        self.dim = int(self.parts[0][2].shape[1])
        self.remote = []  # (start, stop, numpy rows) of other workers' shards, for a save

    def slice_spec(self, start, stop):
        return f"{self.num_rows} {self.dim} {start},{stop - start}:0,{self.dim}"

    def _gather_saveables_for_checkpoint(self):
        return {"VARIABLE_VALUE": functools.partial(_RowSlices, self)}


class _RowSlices(saveable_object.SaveableObject):
    def __init__(self, rows, name):
        self.rows = rows
        specs = [
            saveable_object.SaveSpec(
                var.read_value,
                rows.slice_spec(start, stop),
                name,
                dtype=var.dtype,
                device=var.device,
            )
            for start, stop, var in rows.parts
        ]
        specs += [
            saveable_object.SaveSpec(
                tf.constant(values), rows.slice_spec(start, stop), name, device="/cpu:0"
            )
            for start, stop, values in rows.remote
        ]
        super().__init__(rows.parts[0][2], specs, name)

    def restore(self, restored_tensors, restored_shapes):
        del restored_shapes
        parts = self.rows.parts
        return tf.group([var.assign(value) for (_, _, var), value in zip(parts, restored_tensors)])


class SameOnAll(base.Trackable):
    """A scalar kept equal in several variables (one per shard), saved once.

    Args:
        variables: the copies; the first is saved, a restore assigns every one.
    """

    def __init__(self, variables):
        self.variables = list(variables)

    def _gather_saveables_for_checkpoint(self):
        return {"VARIABLE_VALUE": functools.partial(_SameValue, self.variables)}


class _SameValue(saveable_object.SaveableObject):
    def __init__(self, variables, name):
        self.variables = variables
        first = variables[0]
        spec = saveable_object.SaveSpec(
            first.read_value, "", name, dtype=first.dtype, device=first.device
        )
        super().__init__(first, [spec], name)

    def restore(self, restored_tensors, restored_shapes):
        del restored_shapes
        return tf.group([var.assign(restored_tensors[0]) for var in self.variables])


class Node(base.Trackable):
    """A checkpoint node with named children (the paths a replicated head would have)."""

    def __init__(self, **children):
        for name, child in children.items():
            if child is not None:
                self._track_trackable(child, name)


def sharded_head_state(head, center_optimizer):
    """Checkpoint nodes for a ``ShardedPartialFC`` and its ``ShardedCenterOptimizer``.

    They have the paths and keys of the replicated head (``head/centers``,
    ``center_optimizer/{slot_1,slot_2,iterations}``), so checkpoints move freely between
    sharded and replicated runs and between replica counts.

    Returns:
        ``(head_node, center_optimizer_node, rows)``: the two nodes for
        ``tf.train.Checkpoint`` and the list of :class:`ShardedRows` in them.
    """
    replicas = head.local_replicas
    optimizers = [center_optimizer.optimizers[r] for r in replicas]

    def rows(variables):
        parts = [(*head.bounds[r], v) for r, v in zip(replicas, variables)]
        return ShardedRows(parts, head.num_classes, replicas=replicas)

    centers = rows([head.shard(r) for r in replicas])
    slot_1 = rows([o.slot_1 for o in optimizers])
    slot_2 = rows([o.slot_2 for o in optimizers]) if optimizers[0].slot_2 is not None else None
    optimizer_node = Node(
        iterations=SameOnAll([o.iterations for o in optimizers]), slot_1=slot_1, slot_2=slot_2
    )
    all_rows = [r for r in (centers, slot_1, slot_2) if r is not None]
    return Node(centers=centers), optimizer_node, all_rows
