"""Multi-worker state movement for checkpoints: sharded rows to the chief, checkpoints to all.

Two jobs, both with the strategy's own collective ops (no shared file system needed):

- :func:`gather_remote_rows`: before a save under ``MultiWorkerMirroredStrategy`` with a
  sharded head, the chief collects the center rows (and optimiser slots) owned by the other
  workers, chunk by chunk, so that its checkpoint holds the whole logical ``[N, D]``.
- :func:`restore_latest`: on resume, the chief's newest checkpoint decides the step. Workers
  that see the same checkpoint (shared storage) restore it from there; when any worker does not
  see it, the chief sends the checkpoint's files to every worker over the collective channel
  and each restores from a private temporary copy. Either way every worker resumes from the
  chief's state.

Example:
    >>> path = restore_latest(strategy, checkpointer, centers_shape=(N, D))  # doctest: +SKIP
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from keras_arcface._deprecation import renamed_keywords

_CHUNK_BYTES = 64 << 20


def _replica_id():
    ctx = tf.distribute.get_replica_context()
    return int(tf.get_static_value(ctx.replica_id_in_sync_group))


def chief_value(strategy, value):
    """The int64 ``value`` of the chief (replica 0), on every worker."""

    @tf.function
    def gather(x):
        def fn():
            ctx = tf.distribute.get_replica_context()
            return ctx.all_gather(tf.reshape(x, [1]), axis=0)

        return strategy.run(fn)

    out = strategy.experimental_local_results(gather(tf.constant(int(value), tf.int64)))[0]
    return int(out.numpy()[0])


def all_workers_true(strategy, flag):
    """True when ``flag`` is true on every worker."""

    @tf.function
    def gather(x):
        def fn():
            return tf.distribute.get_replica_context().all_gather(tf.reshape(x, [1]), axis=0)

        return strategy.run(fn)

    out = strategy.experimental_local_results(gather(tf.constant(int(bool(flag)), tf.int64)))[0]
    return bool(np.all(out.numpy() == 1))


def broadcast_bytes(strategy, payload, is_chief):
    """The chief's ``payload`` (bytes) on every worker, in 64 MiB all-gather chunks.

    The bytes travel as int64 words; every replica takes part, only the chief's first replica
    contributes (the others send zeros of the same shape).
    """
    length = chief_value(strategy, len(payload) if is_chief else 0)
    words = -(-length // 8)
    data = np.zeros(words, np.int64)
    if is_chief:
        data = np.frombuffer(payload + bytes(words * 8 - length), np.int64).copy()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def send(chunk):
        def fn():
            # identity: a new op placed on this replica's device (the input has no device).
            mine = tf.identity(chunk) if _replica_id() == 0 else tf.zeros_like(chunk)
            return tf.distribute.get_replica_context().all_gather(mine, axis=0)

        return strategy.run(fn)

    step = _CHUNK_BYTES // 8
    out = np.empty(words, np.int64)
    for begin in range(0, words, step):
        piece = data[begin : begin + step]
        got = strategy.experimental_local_results(send(tf.constant(piece)))[0].numpy()
        out[begin : begin + len(piece)] = got[: len(piece)]
    return out.tobytes()[:length]


def gather_remote_rows(strategy, head, rows_list, keep):
    """Fills ``rows.remote`` with the other workers' shards (kept on the chief only).

    Every worker takes part (collective all-gather of fixed-size row chunks); only a worker
    with ``keep`` holds the rows, in host memory, until the save is done.
    """
    max_rows = max(stop - start for start, stop in head.bounds)
    chunk = max(1, min(max_rows, _CHUNK_BYTES // (4 * head.embedding_dim)))
    remote = [q for q in range(head.num_replicas) if q not in head.local_replicas]
    for rows in rows_list:
        by_replica = dict(zip(rows.replicas, (var for _, _, var in rows.parts)))

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
        def gather(begin, by_replica=by_replica):
            def fn():
                block = by_replica[_replica_id()][begin : begin + chunk]
                block = tf.pad(block, [[0, chunk - tf.shape(block)[0]], [0, 0]])
                return tf.distribute.get_replica_context().all_gather(block[None], axis=0)

            return strategy.run(fn)

        pieces = {q: [] for q in remote}
        for begin in range(0, max_rows, chunk):
            out = strategy.experimental_local_results(gather(tf.constant(begin)))[0]
            if keep:
                out = out.numpy()
                for q in remote:
                    pieces[q].append(out[q])
        if keep:
            rows.remote = [
                (
                    *head.bounds[q],
                    np.concatenate(pieces[q])[: head.bounds[q][1] - head.bounds[q][0]],
                )
                for q in remote
            ]


def _checkpoint_files(prefix):
    folder, name = os.path.split(prefix)
    return (
        sorted(f for f in os.listdir(folder) if f.startswith(name + "."))
        if os.path.isdir(folder)
        else []
    )


def _complete(prefix):
    files = _checkpoint_files(prefix)
    return any(f.endswith(".index") for f in files) and any(".data-" in f for f in files)


def _pack(prefix):
    import json

    folder = os.path.dirname(prefix)
    names = _checkpoint_files(prefix)
    blobs = [open(os.path.join(folder, n), "rb").read() for n in names]
    header = json.dumps([[n, len(b)] for n, b in zip(names, blobs)]).encode()
    return len(header).to_bytes(8, "little") + header + b"".join(blobs)


def _unpack(payload, folder):
    import json

    size = int.from_bytes(payload[:8], "little")
    offset = 8 + size
    for name, length in json.loads(payload[8:offset].decode()):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(payload[offset : offset + length])
        offset += length


@renamed_keywords(centres_shape="centers_shape")
def restore_latest(strategy, checkpointer, is_chief, centers_shape=None):
    """Restores the chief's newest checkpoint on every worker (collective; all call it).

    Returns:
        The chief's checkpoint path, or None when the chief has none.
    """
    latest = checkpointer.latest
    step = int(latest.rsplit("-", 1)[1]) if latest else -1
    step = chief_value(strategy, step if is_chief else -1)
    if step < 0:
        return None
    prefix = os.path.join(checkpointer.directory, f"ckpt-{step}")
    if all_workers_true(strategy, _complete(prefix)):
        checkpointer.restore(prefix, centers_shape)
        return prefix
    # Some worker cannot see the chief's checkpoint: the chief sends its files to everyone.
    payload = broadcast_bytes(strategy, _pack(prefix) if is_chief else b"", is_chief)
    if is_chief:
        checkpointer.restore(prefix, centers_shape)
        return prefix
    scratch = tempfile.mkdtemp(prefix="keras-arcface-restore-")
    try:
        _unpack(payload, scratch)
        checkpointer.restore(os.path.join(scratch, f"ckpt-{step}"), centers_shape)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return prefix
