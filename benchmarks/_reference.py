"""The PyTorch reference side of every speed comparison, timed in the same process.

No reference number is typed anywhere: each benchmark builds the InsightFace PyTorch
network (``keras_arcface.models.torch_reference``), runs it on the same inputs with the
same thread count, and alternates rounds with this package (A, B, A, B ...) so that other
load on the machine hits both sides alike. Ratios are this package's img/s over the
reference's (> 1 means this package is faster).
"""

import os
import statistics
import sys
import time

TORCH_MISSING = (
    "torch is not installed: printing this package's numbers alone, without the PyTorch "
    'reference (pip install "keras-arcface[torch]" to compare).'
)


def import_torch(threads):
    """Returns torch set to ``threads`` intra-op threads, or ``None`` when it is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(threads))
    return torch


def set_tensorflow_threads(tf, threads):
    """Sets TensorFlow's intra-op threads; a no-op once TensorFlow has started (in tests)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    except RuntimeError:
        pass


def prepare_sides(tf, keras, threads, **versions):
    """Sets both sides to ``threads`` and returns ``(torch or None, machine info)``.

    The machine info (``_results.machine_info``) records TensorFlow, Keras, torch and the
    threading environment, plus any other ``versions`` given (e.g. ``onnxruntime=...``).
    """
    from _results import machine_info

    set_tensorflow_threads(tf, threads)
    torch = import_torch(threads)
    if torch is None:
        print(TORCH_MISSING, file=sys.stderr)
    machine = machine_info(
        tensorflow=tf.__version__,
        keras=keras.__version__,
        **versions,
        torch=getattr(torch, "__version__", None),
        environment=thread_environment(),
    )
    return torch, machine


def thread_environment():
    """Environment variables that change either side's threading (recorded with results)."""
    names = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS")
    return {name: os.environ.get(name) for name in names}


def load_average():
    """The 1-minute load average (other work on the cores skews absolute numbers)."""
    return round(os.getloadavg()[0], 2)


def time_round(step, batch_size, round_seconds):
    """img/s of whole calls of ``step`` for at least ``round_seconds`` (at least one call)."""
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < round_seconds:
        step()
        count += 1
    return count * batch_size / (time.perf_counter() - start)


def interleaved(sides, batch_size, *, rounds, round_seconds, warmup=1):
    """Times each side in turn, round after round; returns ``{name: [img/s per round]}``.

    Args:
        sides: ``{name: step}``; each ``step()`` processes one batch of ``batch_size``.
        batch_size: images per step.
        rounds: rounds per side (medians need >= 3).
        round_seconds: minimum length of one side's round.
        warmup: untimed calls of each side before the first round.
    """
    for step in sides.values():
        for _ in range(warmup):
            step()
    rates = {name: [] for name in sides}
    for _ in range(rounds):
        for name, step in sides.items():
            rates[name].append(time_round(step, batch_size, round_seconds))
    return rates


def compare(ours, reference):
    """Medians of both sides, their ratio and the median of the per-round ratios.

    Args:
        ours: img/s per round of this package.
        reference: img/s per round of the reference (``None`` or empty: no reference).
    """
    row = {"img_per_s": round(statistics.median(ours), 2), "rounds": [round(r, 2) for r in ours]}
    if reference:
        median = statistics.median(reference)
        row.update(
            reference_img_per_s=round(median, 2),
            reference_rounds=[round(r, 2) for r in reference],
            ratio=round(row["img_per_s"] / median, 3),
            paired_ratio_median=round(statistics.median(a / b for a, b in zip(ours, reference)), 3),
        )
    return row


def format_ratio(row):
    """``'1.23x'`` or ``'-'`` for a row without a reference."""
    return f"{row['ratio']:.2f}x" if "ratio" in row else "-"


def torch_training_step(torch, arch, images, labels, num_classes):
    """The reference training step: backbone -> linear classifier -> cross-entropy -> SGD.

    Args:
        torch: the torch module.
        arch: "mbf" or an iResNet name.
        images: float32 ``[B, S, S, 3]`` pixels 0..255 (NumPy); normalized and made NCHW once.
        labels: int ``[B]`` class ids.
        num_classes: classifier width.
    """
    from keras_arcface.models.torch_reference import torch_reference

    net = torch_reference(arch).train()
    head = torch.nn.Linear(512, num_classes, bias=False)
    parameters = list(net.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9)
    x = torch.from_numpy(((images - 127.5) / 127.5).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels.astype("int64"))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(head(net(x)), y)
        loss.backward()
        optimizer.step()

    return step


def torch_inference_model(torch, arch):
    """The reference network for inference: NHWC 0..255 in, L2-normalized embeddings out.

    The same contract as this package's exported models (the normalization, the layout
    change and the L2 normalization happen inside), so both sides do the same work and the
    ONNX export of it runs under the same onnxruntime settings as ours.
    """
    from keras_arcface.models.torch_reference import torch_reference

    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_reference(arch).eval()

        def forward(self, images):
            x = ((images - 127.5) / 127.5).permute(0, 3, 1, 2).contiguous()
            return torch.nn.functional.normalize(self.net(x), dim=1)

    return Embedder().eval()


def torch_eager_runner(torch, model):
    """``run(batch)`` calling the reference model eagerly under ``inference_mode``."""

    def run(batch):
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return run


def export_torch_onnx(torch, model, path, opset, image_size=112):
    """Exports the reference with ``torch.onnx`` (dynamic batch), as InsightFace users do."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.zeros(1, image_size, image_size, 3),
            os.fspath(path),
            opset_version=int(opset),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            dynamo=False,
        )
    return path
