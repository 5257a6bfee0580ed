"""Install keras-arcface.

The repository keeps the training pipeline in ``training/`` and the export stage in
``export/`` at the top level, but both install inside the one ``keras_arcface``
namespace (``keras_arcface.training``, ``keras_arcface.export``) through
``package_dir``; nothing installs a top-level ``training`` or ``export`` module.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# Sub-trees that live outside keras_arcface/ but install inside its namespace.
MAPPED_TREES = {
    "keras_arcface.training": "training",
    "keras_arcface.export": "export",
}


def _version():
    with open(os.path.join(HERE, "keras_arcface", "version.py"), encoding="utf-8") as handle:
        return re.search(r'__version__ = "([^"]+)"', handle.read()).group(1)


def _packages_and_dirs():
    packages = ["keras_arcface"] + [
        f"keras_arcface.{name}" for name in find_packages("keras_arcface")
    ]
    package_dir = {"keras_arcface": "keras_arcface"}
    for namespace, folder in MAPPED_TREES.items():
        packages.append(namespace)
        package_dir[namespace] = folder
        for sub in find_packages(folder):
            packages.append(f"{namespace}.{sub}")
            package_dir[f"{namespace}.{sub}"] = os.path.join(folder, *sub.split("."))
    return packages, package_dir


def _readme():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as handle:
        return handle.read()


PACKAGES, PACKAGE_DIR = _packages_and_dirs()

EXTRAS = {
    # TensorFlow is an extra so that CPU and GPU users pick their own wheel; the
    # layers and losses themselves are plain Keras 3 and also run on JAX.
    "cpu": ["tensorflow-cpu~=2.21.0"],
    "gpu": ["tensorflow[and-cuda]~=2.21.0"],
    "export": ["tf2onnx>=1.17", "onnx>=1.16", "onnxruntime>=1.18", "ai-edge-litert>=2.0"],
    "plot": ["matplotlib>=3.7"],
    "torch": ["torch>=2.1"],
    "jax": ["jax>=0.4.30"],
    # Face detection for raw photos (keras_arcface.faces): YuNet's weights are compiled into
    # yuface, ONet's ship in the mtcnn wheel; nothing is downloaded at run time.
    "faces": ["yuface>=2023.5.1", "mtcnn>=1.0.0,<2", "joblib>=1.3", "lz4>=4"],
}
EXTRAS["dev"] = sorted(
    set(
        EXTRAS["export"]
        + EXTRAS["plot"]
        + EXTRAS["jax"]
        + EXTRAS["faces"]
        # The independent oracle of the alignment tests (InsightFace's own estimate).
        + ["scikit-image>=0.22"]
        # The CPU build of torch, used only to check InsightFace weight import.
        + ["torch==2.13.0", "scipy>=1.10", "pytest>=8", "ruff>=0.6"]
    )
)

setup(
    name="keras-arcface",
    version=_version(),
    description="ArcFace (additive angular margin) face recognition for TensorFlow / Keras 3",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"keras_arcface.training": ["experiments/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "keras>=3.13",
        "numpy>=1.26",
        "pillow>=10",
        # Decodes 16-bit colour PNG/TIFF, which PIL cannot hold (keras_arcface.faces.photos).
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "tqdm>=4.66",
        "tensorboard>=2.16",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-arcface=keras_arcface.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
