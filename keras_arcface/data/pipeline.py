"""The ``tf.data`` input pipeline over a TFRecord dataset folder.

``make_dataset`` reads the shards listed in ``manifest.json`` and yields
``(images float32 [B, H, W, 3] RGB 0..255, labels int32 [B])``, the package's pixel
convention (normalization happens inside every backbone).

Layout of the training pipeline (``training=True``)::

    epochs (range from start_epoch, in order) --> one epoch:
        shard files --(shuffle, seeded per epoch)--> interleave TFRecordDataset
        --(shard by element if too few files)--> shuffle buffer (seeded per epoch)
        --> enumerate from epoch * 2**32 (epoch and element index key the augmentation)
    --> skip(skip_examples) --> parallel parse + decode + image shape check (ops inline)
    --> batch (drop_remainder) --> per batch: label check, flip, float augmentation, cast
    --> prefetch

Every random choice is a stateless function of ``(seed, epoch, element index)`` (the
augmentation of a batch: of its first element's), so with
``deterministic=True`` and a fixed ``seed`` the stream is reproducible, and a trainer
resumes exactly where it stopped by rebuilding the dataset with the same ``seed`` and
``start_epoch`` / ``skip_examples`` (see ``docs/data.md``).
"""

import dataclasses
import random

from keras_arcface.data import schema
from keras_arcface.data.errors import check_on_error
from keras_arcface.data.schema import KEY_ENCODED, KEY_LABEL, KEY_SOURCE_ID

AUTOTUNE = -1
DEFAULT_SHUFFLE_BUFFER = 8192
# Slots of the per-element vector of uniforms carried to the batched step.
_FLIP, _BRIGHT, _CONTRAST, _SAT, _ERASE = 0, 1, 2, 3, 4
_CROP = 9  # 4 values: y1, x1, y2, x2 (normalized box)
_NUM_PARAMS = 13
# Element counters start at epoch * 2**32: one int64 keys (epoch, index in epoch).
_EPOCH_STRIDE = 2**32


@dataclasses.dataclass
class AugmentConfig:
    """Training-time augmentation; every field off except the horizontal flip.

    Args:
        horizontal_flip: flip left-right with probability 0.5.
        crop_resize: take a random crop and resize it back to the image size.
        crop_area: (min, max) fraction of the image area the crop keeps.
        crop_aspect: (min, max) aspect ratio (width / height) of the crop.
        brightness: maximum brightness shift as a fraction of 255 (0 disables).
        contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]`` (0 disables).
        saturation: saturation factor drawn from ``[1 - saturation, 1 + saturation]``.
        erasing_probability: probability of random erasing (Zhong et al. 2017).
        erasing_area: (min, max) fraction of the image area erased.
        erasing_aspect: (min, max) aspect ratio of the erased rectangle.

    Example:
        >>> config = AugmentConfig(brightness=0.1, erasing_probability=0.25)
    """

    horizontal_flip: bool = True
    crop_resize: bool = False
    crop_area: tuple = (0.8, 1.0)
    crop_aspect: tuple = (0.9, 1.1)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    erasing_probability: float = 0.0
    erasing_area: tuple = (0.02, 0.2)
    erasing_aspect: tuple = (0.3, 3.3)

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
        if not 0.0 <= float(self.erasing_probability) <= 1.0:
            raise ValueError(
                "`erasing_probability` must be in [0, 1]. "
                f"Received: erasing_probability={self.erasing_probability}"
            )
        for name in ("crop_area", "erasing_area", "crop_aspect", "erasing_aspect"):
            low, high = (float(v) for v in getattr(self, name))
            limit = 1.0 if name.endswith("area") else float("inf")
            if not 0.0 < low <= high <= limit:
                raise ValueError(
                    f"`{name}` must be (min, max) with 0 < min <= max"
                    f"{' <= 1' if limit == 1.0 else ''}. Received: {name}={getattr(self, name)}"
                )

    @property
    def is_identity(self):
        return not (self.horizontal_flip or self.works_in_float)

    @property
    def works_in_float(self):
        """True when a batched float32 step is needed (anything beyond the flip)."""
        return bool(
            self.crop_resize
            or self.brightness
            or self.contrast
            or self.saturation
            or self.erasing_probability
        )


class ErrorCounter:
    """Counts records read and kept by a pipeline built with ``on_error="skip"``.

    ``skipped`` is exact once the dataset has been iterated to its end; while iterating,
    elements in flight in prefetch buffers are counted as read but not yet kept. Records
    lost in an unreadable shard tail (a truncated file) are never read: compare ``kept``
    with the manifest's ``num_images`` or use
    :func:`keras_arcface.data.check_dataset` to count them.

    Example:
        >>> counter = ErrorCounter()
        >>> ds = make_dataset("data", 32, training=False, on_error="skip",
        ...                   error_counter=counter)  # doctest: +SKIP
        >>> for _ in ds: pass  # doctest: +SKIP
        >>> counter.skipped  # doctest: +SKIP
        0
    """

    def __init__(self):
        import tensorflow as tf

        with tf.init_scope():
            self._read = tf.Variable(0, dtype=tf.int64, trainable=False, name="records_read")
            self._kept = tf.Variable(0, dtype=tf.int64, trainable=False, name="records_kept")

    @property
    def read(self):
        return int(self._read.numpy())

    @property
    def kept(self):
        return int(self._kept.numpy())

    @property
    def skipped(self):
        return self.read - self.kept

    def __repr__(self):
        return f"ErrorCounter(read={self.read}, kept={self.kept}, skipped={self.skipped})"


def _resolve_augment(augment, training):
    if augment is None:
        return AugmentConfig() if training else AugmentConfig(horizontal_flip=False)
    if augment is False:
        return AugmentConfig(horizontal_flip=False)
    if augment is True:
        return AugmentConfig()
    if isinstance(augment, dict):
        return AugmentConfig(**augment)
    if not isinstance(augment, AugmentConfig):
        raise TypeError(
            "`augment` must be None, a bool, a dict or an AugmentConfig. "
            f"Received: augment={augment!r}"
        )
    return augment


def _validate_arguments(
    on_error, error_counter, batch_size, shuffle_buffer, image_size, start_epoch, skip_examples
):
    """Checks ``make_dataset``'s plain arguments; returns ``image_size`` as a tuple of ints."""
    check_on_error(on_error)
    image_size = tuple(int(v) for v in image_size)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    if int(shuffle_buffer) < 0:
        raise ValueError(
            f"`shuffle_buffer` must be >= 0. Received: shuffle_buffer={shuffle_buffer!r}"
        )
    if len(tuple(image_size)) != 2:
        raise ValueError(
            f"`image_size` must be (height, width). Received: image_size={image_size!r}"
        )
    if int(start_epoch) < 0 or int(skip_examples) < 0:
        raise ValueError(
            "`start_epoch` and `skip_examples` must be >= 0. "
            f"Received: start_epoch={start_epoch}, skip_examples={skip_examples}"
        )
    if error_counter is not None and on_error != "skip":
        raise ValueError(
            "`error_counter` counts skipped records and needs on_error='skip'. "
            f"Received: on_error={on_error!r}"
        )
    return image_size


def _check_image_dtype(image_dtype):
    """The yielded images' dtype must be ``"float32"`` or ``"uint8"``."""
    if image_dtype not in ("float32", "uint8"):
        raise ValueError(
            f"`image_dtype` must be 'float32' or 'uint8'. Received: image_dtype={image_dtype!r}"
        )


def _resolve_seed(seed):
    """``(seed as int, whether the caller gave it)``; ``None`` draws one at random."""
    if seed is None:
        return random.SystemRandom().randrange(2**31), False
    return int(seed), True


def _plan_sharding(files, input_context):
    """Returns (files for this pipeline, (num, index) for element sharding or None)."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return files, None
    num, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) >= num:
        return files[index::num], None
    return files, (num, index)


def _random_box(tf, uniforms, area_range, aspect_range, image_size):
    """A random normalized box [y1, x1, y2, x2] of given area and aspect inside [0, 1],
    from four uniforms in [0, 1) (scalars or ``[B]`` tensors)."""
    import math

    height, width = image_size
    area = area_range[0] + uniforms[0] * (area_range[1] - area_range[0])
    low, high = math.log(aspect_range[0]), math.log(aspect_range[1])
    aspect = tf.exp(low + uniforms[1] * (high - low)) * (height / width)  # normalized units
    box_h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    box_w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    y1 = uniforms[2] * (1.0 - box_h)
    x1 = uniforms[3] * (1.0 - box_w)
    return [y1, x1, y1 + box_h, x1 + box_w]


def _seeded_shuffle(tf, dataset, buffer_size, seed):
    """``dataset.shuffle`` with an explicit tensor seed, whatever the global TF seed is.

    tf.data pairs an op seed with the graph's global seed and compares the pair with
    ``(0, 0)`` in Python, which fails for a tensor seed once ``tf.random.set_seed`` (or
    ``keras.utils.set_random_seed``) was called. The pipeline's seeds are explicit, so the
    op is built as if no global seed were set: the stream does not depend on it.
    """
    graph = tf.compat.v1.get_default_graph()
    saved, graph.seed = graph.seed, None
    try:
        return dataset.shuffle(buffer_size, seed=seed)
    finally:
        graph.seed = saved


def _make_decoder(tf, num_classes, image_size, on_error, jpeg_only):
    """The per-element map: parse, decode, check the image's shape.

    Elements become ``(image [H, W, 3] uint8, label int64, source id, index)``, plus ``ok``
    with ``on_error="skip"``. Label checks, augmentation and casts run once per batch
    (``_make_batch_step``): every op in this map costs microseconds per image.
    """
    full_spec = schema.feature_spec()
    # Parse only what the pipeline uses.
    spec = {key: full_spec[key] for key in (KEY_ENCODED, KEY_LABEL, KEY_SOURCE_ID)}
    height, width = image_size

    def decode_any(encoded):
        return tf.io.decode_image(encoded, channels=0, expand_animations=False)

    # All-JPEG datasets skip decode_image's format dispatch.
    decode_bytes = tf.io.decode_jpeg if jpeg_only else decode_any

    def decode(index, serialized):
        features = tf.io.parse_single_example(serialized, spec)
        label, source = features[KEY_LABEL], features[KEY_SOURCE_ID]
        image = decode_bytes(features[KEY_ENCODED])
        if on_error == "raise":
            return _shape_checked(tf, image, source, height, width), label, source, index
        image, ok = _checked_or_blank(tf, image, label, num_classes, height, width)
        return image, label, source, index, ok

    return decode


def _shape_checked(tf, image, source, height, width):
    """The image as ``[height, width, 3]``; a failed assertion names the record otherwise."""
    shape = tf.shape(image)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(shape, [height, width, 3])),
        [
            "bad record: the image must be (height, width, 3). image shape=",
            shape,
            "expected",
            tf.constant([height, width, 3]),
            "source_id=",
            source,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.reshape(image, [height, width, 3])


def _checked_or_blank(tf, image, label, num_classes, height, width):
    """``(image [H, W, 3], ok)``: a record with a bad label or shape is flagged, and a
    wrongly shaped image replaced by zeros so that it can be batched and filtered out."""
    shape_ok = tf.reduce_all(tf.equal(tf.shape(image), [height, width, 3]))
    ok = tf.logical_and(tf.logical_and(label >= 0, label < num_classes), shape_ok)
    image = tf.cond(
        shape_ok,
        lambda: tf.reshape(image, [height, width, 3]),
        lambda: tf.zeros([height, width, 3], tf.uint8),
    )
    return image, ok


def _labels_checked(tf, images, labels, sources, num_classes):
    """``images`` once every label of the batch lies in ``[0, num_classes)``; the failed
    assertion lists the bad labels and their records' source ids otherwise."""
    bad = tf.logical_or(labels < 0, labels >= num_classes)
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            "bad record: label must lie in [0, num_classes). label=",
            tf.boolean_mask(labels, bad),
            "num_classes=",
            num_classes,
            "source_id=",
            tf.boolean_mask(sources, bad),
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _batch_uniforms(tf, base_seed, indices):
    """The batch's augmentation uniforms ``[B, _NUM_PARAMS]``.

    One stateless Philox draw keyed by ``(seed, epoch * 2**32 + index of the batch's first
    element)``: with ``deterministic=True`` the same seed gives the same batches and
    therefore the same draws, and a resumed stream (``start_epoch``/``skip_examples``)
    rebuilds the same batches.
    """
    key = tf.stack([tf.constant(base_seed, tf.int64), indices[0]])
    return tf.random.stateless_uniform([tf.shape(indices)[0], _NUM_PARAMS], key)


def _flipped(tf, images, flip):
    """``images`` with ``images[b]`` mirrored left-right where ``flip[b]``.

    The chosen images are gathered into one block, reversed as a 3-D ``[rows, width,
    channels]`` tensor (TensorFlow's row-reverse kernel; a 4-D reverse runs several times
    slower) and stitched back: a few ops per batch instead of a ``tf.cond`` per image.
    """
    choice = tf.cast(flip, tf.int32)
    kept, chosen = tf.dynamic_partition(images, choice, 2)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), choice, 2)
    shape = tf.shape(chosen)
    rows = tf.reshape(chosen, [-1, shape[2], shape[3]])
    mirrored = tf.reshape(tf.reverse(rows, axis=[1]), shape)
    result = tf.dynamic_stitch(positions, [kept, mirrored])
    result.set_shape(images.shape)
    return result


def _make_batch_step(tf, augment, image_size, image_dtype, num_classes, base_seed, on_error):
    """The per-batch map: label checks, augmentation, the cast to ``image_dtype``."""
    float_step = _make_float_augmenter(tf, augment, image_size) if augment.works_in_float else None

    def step(images, labels, sources, indices, *ok):
        del ok  # with on_error="skip" bad elements were already filtered out
        if on_error == "raise":
            images = _labels_checked(tf, images, labels, sources, num_classes)
        if not augment.is_identity:
            uniforms = _batch_uniforms(tf, base_seed, indices)
            if augment.horizontal_flip:
                images = _flipped(tf, images, uniforms[:, _FLIP] < 0.5)
            if float_step is not None:
                images = float_step(tf.cast(images, tf.float32), uniforms)
                if image_dtype == "uint8":
                    images = tf.saturate_cast(tf.round(images), tf.uint8)  # clips to 0..255
        if images.dtype != image_dtype:
            images = tf.cast(images, image_dtype)
        return images, tf.cast(labels, tf.int32)

    return step


def _make_float_augmenter(tf, augment, image_size):
    """The float32 augmentations of a batch (everything but the flip), from its uniforms."""
    height, width = image_size

    def apply(images, uniforms):
        def column(index):
            return uniforms[:, index]

        def per_image(values):
            return values[:, None, None, None]

        if augment.crop_resize:
            box = _random_box(
                tf,
                [column(_CROP + k) for k in range(4)],
                augment.crop_area,
                augment.crop_aspect,
                image_size,
            )
            indices = tf.range(tf.shape(images)[0])
            images = tf.image.crop_and_resize(
                images, tf.stack(box, axis=1), indices, [height, width]
            )
        if augment.brightness:
            images = images + per_image((2.0 * column(_BRIGHT) - 1.0) * augment.brightness * 255.0)
        if augment.contrast:
            mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
            factor = 1.0 + (2.0 * column(_CONTRAST) - 1.0) * augment.contrast
            images = (images - mean) * per_image(factor) + mean
        if augment.saturation:
            gray = tf.reduce_sum(
                images * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True
            )
            factor = 1.0 + (2.0 * column(_SAT) - 1.0) * augment.saturation
            images = gray + (images - gray) * per_image(factor)
        if augment.erasing_probability:
            box = _random_box(
                tf,
                [column(_ERASE + 1 + k) for k in range(4)],
                augment.erasing_area,
                augment.erasing_aspect,
                image_size,
            )
            chosen = column(_ERASE) < augment.erasing_probability
            images = _erase(tf, images, tf.stack(box, axis=1), chosen, height, width)
        if augment.brightness or augment.contrast or augment.saturation:
            images = tf.clip_by_value(images, 0.0, 255.0)
        return images

    return apply


def _erase(tf, images, box, chosen, height, width):
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / height
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / width
    inside_y = (ys[None, :] >= box[:, 0:1]) & (ys[None, :] < box[:, 2:3])
    inside_x = (xs[None, :] >= box[:, 1:2]) & (xs[None, :] < box[:, 3:4])
    mask = inside_y[:, :, None] & inside_x[:, None, :] & chosen[:, None, None]
    # The erased patch takes a mid grey, the usual choice for 0..255 face crops. Arithmetic
    # blending broadcasts much faster than tf.where.
    mask = tf.cast(mask, images.dtype)[..., None]
    return images * (1.0 - mask) + 127.5 * mask


def make_dataset(
    data_dir,
    batch_size,
    *,
    training=True,
    augment=None,
    shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
    seed=None,
    deterministic=False,
    on_error="raise",
    input_context=None,
    repeat=None,
    drop_remainder=None,
    image_size=(112, 112),
    start_epoch=0,
    skip_examples=0,
    num_parallel_calls=AUTOTUNE,
    cycle_length=None,
    error_counter=None,
    image_dtype="float32",
):
    """Builds the ``tf.data`` pipeline over a TFRecord dataset folder.

    Args:
        data_dir: folder with ``manifest.json``, ``labels.tsv`` and the shards.
        batch_size: images per yielded batch. Under a ``tf.distribute`` strategy pass the
            per-replica size (``input_context.get_per_replica_batch_size(global_batch)``).
        training: shuffle files and elements, augment, repeat and drop the remainder.
            ``False`` reads every image once in file order (unless ``repeat``/``augment``
            say otherwise).
        augment: ``None`` (flip when training, nothing otherwise), ``False``, ``True``, a
            dict of :class:`AugmentConfig` fields or an :class:`AugmentConfig`.
        shuffle_buffer: element shuffle buffer when training (0 disables).
        seed: integer seed for file order, element order and augmentation. ``None`` draws
            one at random. Same seed + ``deterministic=True`` -> the same stream.
        deterministic: keep element order under parallelism (slower). Throughput
            training leaves it ``False``.
        on_error: ``"raise"`` stops at the first bad record (corrupt or truncated data,
            label outside ``[0, num_classes)``, wrong height/width/channels); ``"skip"``
            drops such records and counts them in ``error_counter``.
        input_context: a ``tf.distribute.InputContext``. With at least
            ``num_input_pipelines`` shard files each pipeline reads its own files;
            otherwise each reads every file and keeps every n-th element.
        repeat: repeat forever; default ``training``.
        drop_remainder: drop the last partial batch; default ``training``.
        image_size: ``(height, width)`` every stored image must have.
        start_epoch: first epoch number (seeds the epoch's shuffles and augmentation), for
            resuming.
        skip_examples: examples of this pipeline's stream to skip before decoding, for
            resuming inside an epoch (``steps_done_in_epoch * batch_size``).
        num_parallel_calls: parallelism of the decode map (default AUTOTUNE).
        cycle_length: shards read at once (default ``min(number of shards, 16)``).
        error_counter: an :class:`ErrorCounter` that counts read and kept records
            (``on_error="skip"`` only).
        image_dtype: ``"float32"`` or ``"uint8"``. With ``"uint8"`` the images stay bytes
            (rounded back after any float augmentation) and the model casts them: a quarter
            of the memory traffic, and on an accelerator the cast runs there. The backbones
            accept either (``Trainer`` reads ``"uint8"``).

    Returns:
        A ``tf.data.Dataset`` of ``(images [B, H, W, 3] RGB 0..255, labels int32 [B])``,
        images of ``image_dtype``.

    Example:
        >>> ds = make_dataset("runs/synthetic/train", 128, seed=0)  # doctest: +SKIP
        >>> images, labels = next(iter(ds))  # doctest: +SKIP
    """
    import tensorflow as tf

    image_size = _validate_arguments(
        on_error, error_counter, batch_size, shuffle_buffer, image_size, start_epoch, skip_examples
    )
    _check_image_dtype(image_dtype)
    manifest = _read_matching_manifest(data_dir, image_size)
    augment = _resolve_augment(augment, training)
    repeat = training if repeat is None else bool(repeat)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)
    seed, seed_given = _resolve_seed(seed)
    files, element_shard = _plan_sharding(schema.shard_paths(data_dir, manifest), input_context)
    dataset = _record_stream(
        tf,
        files,
        element_shard,
        training=training,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        seed_given=seed_given,
        on_error=on_error,
        cycle_length=cycle_length,
        start_epoch=start_epoch,
        repeat=repeat,
        skip_examples=skip_examples,
    )
    num_classes = int(manifest["num_classes"])
    jpeg_only = manifest.get("image_formats") == ["jpeg"]
    decode = _make_decoder(tf, num_classes, image_size, on_error, jpeg_only)
    dataset = _decoded(tf, dataset, decode, on_error, num_parallel_calls, error_counter)
    step = _make_batch_step(tf, augment, image_size, image_dtype, num_classes, seed, on_error)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(_plain(tf, step), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    return dataset.with_options(_dataset_options(tf, deterministic, input_context))


def _plain(tf, function):
    """``function`` marked for tf.data as is: the dataset functions hold no tensor-dependent
    Python control flow, so AutoGraph is skipped."""
    return tf.autograph.experimental.do_not_convert(function)


def _read_matching_manifest(data_dir, image_size):
    """Reads the folder's manifest and checks it holds images of ``image_size``."""
    manifest = schema.read_manifest(data_dir)
    manifest_size = tuple(int(v) for v in manifest["image_size"])
    if manifest_size != image_size:
        raise ValueError(
            f"The dataset holds {manifest_size[0]}x{manifest_size[1]} images but "
            f"image_size={image_size} was asked for. Received: image_size={image_size}"
        )
    return manifest


def _record_stream(
    tf,
    files,
    element_shard,
    *,
    training,
    shuffle_buffer,
    seed,
    seed_given,
    on_error,
    cycle_length,
    start_epoch,
    repeat,
    skip_examples,
):
    """The raw records from ``start_epoch`` on, the first ``skip_examples`` skipped.

    Elements are ``(epoch * 2**32 + index in the epoch, serialized record)``.
    """
    num_files = len(files)
    cycle = max(1, min(num_files, cycle_length or 16))

    def read_file(path):
        records = tf.data.TFRecordDataset(path, buffer_size=1 << 20)
        return records.ignore_errors(log_warning=True) if on_error == "skip" else records

    def one_epoch(epoch):
        epoch_seed = tf.cast(epoch, tf.int64) * 1_000_003 + seed
        paths = tf.constant(files)
        # Element sharding needs the same file order in every pipeline: shuffle files only
        # when the caller gave a seed (shared by all workers).
        if training and num_files > 1 and (element_shard is None or seed_given):
            paths = tf.random.experimental.stateless_shuffle(
                paths, seed=tf.stack([epoch_seed, tf.constant(17, tf.int64)])
            )
        records = tf.data.Dataset.from_tensor_slices(paths).interleave(
            _plain(tf, read_file),
            cycle_length=cycle,
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=True if element_shard else None,
        )
        if element_shard is not None:
            records = records.shard(*element_shard)
        if training and shuffle_buffer > 1:
            records = _seeded_shuffle(tf, records, shuffle_buffer, epoch_seed)
        # One counter carries both the epoch and the position in it (no extra map stage).
        return records.enumerate(start=tf.cast(epoch, tf.int64) * _EPOCH_STRIDE)

    epochs = tf.data.Dataset.range(int(start_epoch), 2**31 if repeat else int(start_epoch) + 1)
    # Epochs run strictly in order. A parallel interleave (cycle 1) could open the next
    # epoch ahead, but its per-element hand-off cost about 0.02 ms of CPU per image; the
    # stall at an epoch boundary (refilling the shuffle buffer with raw records) is a few
    # tens of milliseconds per epoch.
    records = epochs.flat_map(_plain(tf, one_epoch))
    return records.skip(int(skip_examples)) if skip_examples else records


def _decoded(tf, dataset, decode, on_error, num_parallel_calls, error_counter):
    """Maps ``decode`` over the records; with ``on_error="skip"`` drops and counts bad ones."""
    if error_counter is not None:
        dataset = _counted(tf, dataset, error_counter._read)
    if on_error == "skip":
        # The skip path's tf.cond needs TensorFlow's default executor.
        dataset = dataset.map(_plain(tf, decode), num_parallel_calls=num_parallel_calls)
        dataset = dataset.ignore_errors(log_warning=True)
        dataset = dataset.filter(_plain(tf, lambda *element: element[-1]))
    else:
        dataset = _inline_map(tf, dataset, _plain(tf, decode), num_parallel_calls)
    if error_counter is not None:
        dataset = _counted(tf, dataset, error_counter._kept)
    return dataset


def _counted(tf, dataset, variable):
    """Adds one to the counter ``variable`` for every element that passes this point."""

    def count(first, *rest):
        with tf.control_dependencies([variable.assign_add(1)]):
            return (tf.identity(first), *rest)

    return dataset.map(_plain(tf, count))


def _inline_map(tf, dataset, function, num_parallel_calls):
    """``dataset.map(function, num_parallel_calls)`` with the function's ops run inline.

    By default tf.data hands every op of a map function to the inter-op thread pool; the
    decode map is a handful of small ops per image, and running them in the calling thread
    (``use_inter_op_parallelism=False``, TensorFlow's single-threaded executor) costs less
    CPU per image (``benchmarks/input_pipeline.py``). The switch is only reachable through
    tf.data's own dataset class; where that changes, this is the plain public ``map``.
    """
    try:
        from tensorflow.python.data.ops import map_op
    except ImportError:
        return dataset.map(function, num_parallel_calls=num_parallel_calls)
    sequential = num_parallel_calls is None
    dataset_class = getattr(map_op, "_MapDataset" if sequential else "_ParallelMapDataset", None)
    if dataset_class is None:
        return dataset.map(function, num_parallel_calls=num_parallel_calls)
    if sequential:
        return dataset_class(dataset, function, use_inter_op_parallelism=False)
    return dataset_class(
        dataset,
        function,
        num_parallel_calls=num_parallel_calls,
        deterministic=None,  # the dataset options decide
        use_inter_op_parallelism=False,
    )


def _dataset_options(tf, deterministic, input_context):
    """Order kept or not; no auto-sharding under a strategy (the pipeline shards itself)."""
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options
