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

import shutil
import tempfile

import tensorflow as tf

from keras_arcface._io import atomic_path


class Checkpointer:
    """A ``tf.train.CheckpointManager`` that knows chief and non-chief workers.

    Args:
        checkpoint: the ``tf.train.Checkpoint`` (model, centres, optimisers, step).
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

    def restore_latest(self):
        """Restores the newest checkpoint if there is one.

        Returns:
            The restored path, or None when the folder holds no checkpoint.
        """
        path = self.latest
        if path is None:
            return None
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()
        return path


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
