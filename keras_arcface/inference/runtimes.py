"""One small runtime per model format, each turning a float32 batch into embeddings.

A runtime takes a float32 ``[B, S, S, 3]`` batch with pixel values 0..255 and returns a float32
``[B, D]`` array. Keras embedding models return the raw embedding; exported artifacts return it
already L2-normalized (``Embedder`` normalizes either way). Heavy runtimes (TensorFlow, LiteRT,
onnxruntime) are imported only by the runtime that needs them.
"""

import contextlib
import os
import zipfile

import numpy as np

from keras_arcface._deprecation import warn_renamed
from keras_arcface.errors import InputError
from keras_arcface.inference.contract import (
    IMAGE_SIZE,
    METADATA_KEY,
    read_sidecar,
    upgrade_metadata,
)

SUPPORTED_FORMATS = (
    ".keras file (an embedding model)",
    "run folder (embedding_best.keras, else embedding_latest.keras)",
    "SavedModel directory (saved_model.pb)",
    ".tflite file (LiteRT)",
    ".onnx file (onnxruntime)",
)
_EXPORT_HINT = 'pip install "keras-arcface[export]"'


def _missing(package, error):
    return ImportError(f"Running this model needs {package}: {_EXPORT_HINT}. ({error})")


def _image_size_from_shape(shape, what):
    shape = [None if d is None or (isinstance(d, int) and d < 0) else d for d in shape]
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] is None:
        raise ValueError(
            f"Expected {what} to take RGB NHWC square images [batch, S, S, 3]. "
            f"Received: input_shape={tuple(shape)}"
        )
    return int(shape[1])


class _Runtime:
    """What every runtime shares: ``format``, and ``normalized`` (outputs already L2-normalized)."""

    @property
    def normalised(self):
        """Deprecated spelling of ``normalized``."""
        warn_renamed("normalised", "normalized")
        return self.normalized


class KerasRuntime(_Runtime):
    """Runs an in-memory or ``.keras`` embedding model (raw embedding output).

    Args:
        model: A ``keras.Model`` with one input ``[None, S, S, 3]`` and one output ``[None, D]``.
        path: Where it was loaded from, if anywhere.

    Example:
    >>> runtime = KerasRuntime.from_path("run/embedding_best.keras")  # doctest: +SKIP
    """

    format = "keras"
    normalized = False

    def __init__(self, model, path=None):
        inputs, outputs = model.inputs or [], model.outputs or []
        if len(inputs) != 1 or len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ValueError(
                "Expected an embedding model with one input [None, 112, 112, 3] and one output "
                "[None, D] (a training/task model exposes its embedding model for this). "
                f"Received: model={model.name!r} with inputs={[tuple(t.shape) for t in inputs]} "
                f"and outputs={[tuple(t.shape) for t in outputs]}"
            )
        self.model = model
        self.path = path
        self.image_size = _image_size_from_shape(tuple(inputs[0].shape), "the model")
        self.embedding_dim = int(outputs[0].shape[-1])
        self.input_dtype = "float32"
        self.metadata = {}

    @classmethod
    def from_path(cls, path, fold_batch_norm=False):
        """Loads a ``.keras`` embedding model, resolving keras-arcface's custom objects.

        Args:
            path: The ``.keras`` file.
            fold_batch_norm: Run ``keras_arcface.models.fold_batch_norm`` of the model (same
                embeddings, fewer ops; functional models only, others run as saved). Default
                ``False``: the model exactly as saved (what export and fine-tuning start from).
        """
        import keras

        _import_custom_objects()
        if os.path.isfile(path) and not zipfile.is_zipfile(path):
            raise ModelFileError(
                f"{os.fspath(path)} exists but is not a .keras model: a .keras file is a zip "
                "archive and this one is not (damaged, or another format renamed). Export or "
                f"save the model again. Received: path={os.fspath(path)!r}"
            )
        with _opening(path, "a Keras (.keras)"):
            model = keras.saving.load_model(path, compile=False)
        if fold_batch_norm:
            model = _folded(model)
        runtime = cls(model, path=os.fspath(path))
        runtime.metadata = read_sidecar(runtime.path)  # e.g. a calibrated threshold
        return runtime

    def __call__(self, batch):
        output = self.model.predict_on_batch(batch)
        return np.asarray(output, dtype=np.float32)


def _folded(model):
    """``model`` with its batch norms folded; a non-functional model is returned as it is."""
    from keras_arcface.models.folding import fold_batch_norm

    try:
        return fold_batch_norm(model)
    except TypeError:  # subclassed or Sequential: nothing to fold through
        return model


def _import_custom_objects():
    # Registering keras-arcface's layers lets load_model resolve them; either package may be
    # absent in a partial installation, in which case only built-in layers resolve.
    import importlib

    for name in ("keras_arcface.layers", "keras_arcface.models"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class SavedModelRuntime(_Runtime):
    """Runs a SavedModel's ``serving_default`` signature with TensorFlow.

    Args:
        path: SavedModel directory.
        signature: Signature to run (``"serving_default"``).

    Example:
    >>> runtime = SavedModelRuntime("export/saved_model")  # doctest: +SKIP
    """

    format = "saved_model"
    normalized = True

    def __init__(self, path, signature="serving_default"):
        import tensorflow as tf

        self.path = os.fspath(path)
        with _opening(self.path, "a SavedModel"):
            self._loaded = tf.saved_model.load(self.path)
        if signature not in self._loaded.signatures:
            raise ValueError(
                f"The SavedModel has no signature {signature!r}; it has "
                f"{sorted(self._loaded.signatures)}. Received: path={self.path!r}"
            )
        self._fn = self._loaded.signatures[signature]
        input_specs = self._fn.structured_input_signature[1]
        output_specs = self._fn.structured_outputs
        if len(input_specs) != 1 or len(output_specs) != 1:
            raise ValueError(
                "Expected a signature with one image input and one embedding output. "
                f"Received: inputs={sorted(input_specs)}, outputs={sorted(output_specs)}"
            )
        (self._input_name, spec), (self._output_name, out_spec) = (
            next(iter(input_specs.items())),
            next(iter(output_specs.items())),
        )
        self.image_size = _image_size_from_shape(spec.shape.as_list(), "the SavedModel")
        self.embedding_dim = int(out_spec.shape[-1])
        self.input_dtype = spec.dtype.name
        self._tf = tf
        self.metadata = read_sidecar(self.path)

    def __call__(self, batch):
        tensor = self._tf.constant(batch.astype(self.input_dtype, copy=False))
        output = self._fn(**{self._input_name: tensor})[self._output_name]
        return np.asarray(output, dtype=np.float32)


def read_tflite_metadata(path):
    """Reads the ``keras_arcface`` JSON entry of a ``.tflite`` file's metadata table.

    Args:
        path: ``.tflite`` file.

    Returns:
        The decoded dict, or ``{}`` when the model carries no such entry.

    Example:
    >>> read_tflite_metadata("export/model_float32.tflite")["embedding_dim"]  # doctest: +SKIP
    512
    """
    import json

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return {}
    with open(path, "rb") as handle:
        data = handle.read()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_KEY:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return upgrade_metadata(json.loads(bytes(raw).decode("utf-8")))
    return {}


class TFLiteRuntime(_Runtime):
    """Runs a ``.tflite`` model with the standalone LiteRT interpreter (``ai-edge-litert``).

    Integer inputs (full-integer models take uint8 pixels) are quantised with the tensor's own
    scale and zero point; a dynamic batch dimension is resized to each batch.

    Args:
        path: ``.tflite`` file.
        num_threads: Interpreter threads (``None``: LiteRT's default).

    Example:
    >>> runtime = TFLiteRuntime("export/model_float32.tflite", num_threads=2)  # doctest: +SKIP
    """

    format = "tflite"
    normalized = True

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise _missing("ai-edge-litert", error) from error
        self.path = os.fspath(path)
        with _opening(self.path, "a TFLite (.tflite)"):
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                "Expected a TFLite model with one image input and one embedding output. "
                f"Received: inputs={len(inputs)}, outputs={len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        signature = list(self._input.get("shape_signature", self._input["shape"]))
        self.image_size = _image_size_from_shape(signature, "the TFLite model")
        self._dynamic_batch = signature[0] in (-1, None)
        self.embedding_dim = int(self._output["shape"][-1])
        self.input_dtype = np.dtype(self._input["dtype"]).name
        self._batch = int(self._input["shape"][0])
        self.metadata = {**read_tflite_metadata(self.path), **read_sidecar(self.path)}

    def _quantise(self, batch):
        dtype = np.dtype(self._input["dtype"])
        if not np.issubdtype(dtype, np.integer):
            return batch.astype(dtype, copy=False)
        scale, zero_point = self._input["quantization"]
        if scale:
            batch = batch / scale + zero_point
        info = np.iinfo(dtype)
        return np.clip(np.round(batch), info.min, info.max).astype(dtype)

    def _dequantise(self, output):
        if np.issubdtype(output.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            return (output.astype(np.float32) - zero_point) * scale
        return output.astype(np.float32, copy=False)

    def _run(self, batch):
        if batch.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch = batch.shape[0]
        self._interpreter.set_tensor(self._input["index"], self._quantise(batch))
        self._interpreter.invoke()
        return self._dequantise(self._interpreter.get_tensor(self._output["index"]))

    def __call__(self, batch):
        if self._dynamic_batch:
            return self._run(batch)
        return np.concatenate([self._run(batch[i : i + 1]) for i in range(batch.shape[0])])


class OnnxRuntime(_Runtime):
    """Runs an ``.onnx`` model with onnxruntime on the CPU.

    Args:
        path: ``.onnx`` file.
        num_threads: Intra-op threads (``None``: onnxruntime's default).

    Example:
    >>> runtime = OnnxRuntime("export/model.onnx")  # doctest: +SKIP
    """

    format = "onnx"
    normalized = True

    def __init__(self, path, num_threads=None):
        try:
            import onnxruntime
        except ImportError as error:
            raise _missing("onnxruntime", error) from error
        self.path = os.fspath(path)
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        with _opening(self.path, "an ONNX (.onnx)"):
            self._session = onnxruntime.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"]
            )
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                "Expected an ONNX model with one image input and one embedding output. "
                f"Received: inputs={[i.name for i in inputs]}, outputs={[o.name for o in outputs]}"
            )
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        self.image_size = _image_size_from_shape(list(inputs[0].shape), "the ONNX model")
        self.embedding_dim = int(outputs[0].shape[-1])
        self.input_dtype = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}.get(
            inputs[0].type, "float32"
        )
        custom = dict(self._session.get_modelmeta().custom_metadata_map)
        # The sidecar (written by ``keras-arcface calibrate``) wins over the embedded entries.
        self.metadata = {**_decode_onnx_metadata(custom), **read_sidecar(self.path)}

    def __call__(self, batch):
        feed = {self._input_name: batch.astype(self.input_dtype, copy=False)}
        return np.asarray(self._session.run([self._output_name], feed)[0], dtype=np.float32)


def _decode_onnx_metadata(custom):
    import json

    if METADATA_KEY in custom:
        try:
            return upgrade_metadata(json.loads(custom[METADATA_KEY]))
        except ValueError:
            return {}
    return {}


def resolve_model_path(path):
    """Finds which format ``path`` holds; returns ``(format, concrete_path)``.

    Args:
        path: A ``.keras`` file, run folder, SavedModel directory, ``.tflite`` or ``.onnx`` file.

    Example:
    >>> resolve_model_path("runs/demo")  # doctest: +SKIP
    ('keras', 'runs/demo/embedding_best.keras')
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at this path. Received: path={path!r}")
    if os.path.isdir(path):
        looked_for = ("saved_model.pb", "embedding_best.keras", "embedding_latest.keras")
        looked_for += (os.path.join("saved_model", "saved_model.pb"),)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "saved_model", path
        for name in ("embedding_best.keras", "embedding_latest.keras"):
            if os.path.isfile(os.path.join(path, name)):
                return "keras", os.path.join(path, name)
        if os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb")):
            return "saved_model", os.path.join(path, "saved_model")
        raise ModelFileError(
            f"No model in the folder {path}: looked for {', '.join(looked_for)}. A run folder "
            "has them once training saved a model; otherwise pass the .keras, .tflite or .onnx "
            f"file itself. Supported: {'; '.join(SUPPORTED_FORMATS)}. Received: path={path!r}"
        )
    else:
        suffix = os.path.splitext(path)[1].lower()
        formats = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}
        if suffix in formats:
            return formats[suffix], path
    raise ValueError(
        "Unknown model format. Supported: " + "; ".join(SUPPORTED_FORMATS) + f". Received: "
        f"path={path!r}"
    )


def open_runtime(path, num_threads=None, fold_batch_norm=False):
    """Opens the runtime for the model at ``path`` (see :func:`resolve_model_path`).

    Args:
        path: Model path in any supported format.
        num_threads: Threads for LiteRT/onnxruntime (TensorFlow uses its global setting).
        fold_batch_norm: For a ``.keras`` model, fold its batch norms into the layers before
            them (see :meth:`KerasRuntime.from_path`). Default ``False``.

    Example:
    >>> runtime = open_runtime("export/model.onnx")  # doctest: +SKIP
    """
    kind, concrete = resolve_model_path(path)
    if kind == "keras":
        return KerasRuntime.from_path(concrete, fold_batch_norm=fold_batch_norm)
    if kind == "saved_model":
        return SavedModelRuntime(concrete)
    if kind == "tflite":
        return TFLiteRuntime(concrete, num_threads=num_threads)
    return OnnxRuntime(concrete, num_threads=num_threads)


class ModelFileError(InputError):
    """A model file or folder that cannot be opened as the format it claims."""


@contextlib.contextmanager
def _opening(path, format_name):
    """Turns a runtime's failure to open a damaged file into one clear error naming it."""
    try:
        yield
    except (ImportError, InputError):
        raise  # a missing runtime (install hint) or our own checks
    except Exception as error:  # every runtime has its own error types for a bad file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ModelFileError(
            f"{os.fspath(path)} exists but could not be opened as {format_name} model "
            f"({type(error).__name__}: {first}). The file is damaged or is not such a model; "
            f"export it again. Received: path={os.fspath(path)!r}"
        ) from error


__all__ = [
    "IMAGE_SIZE",
    "KerasRuntime",
    "OnnxRuntime",
    "SavedModelRuntime",
    "SUPPORTED_FORMATS",
    "TFLiteRuntime",
    "open_runtime",
    "read_tflite_metadata",
    "resolve_model_path",
]
