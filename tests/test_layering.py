"""The import order of docs/architecture.md holds: no package imports one ranked above it.

The ranks are read from the ``layering`` block of ``docs/architecture.md``, so the document
and this check cannot drift apart. Every import counts, including the ones inside functions
(a lazy import is still a dependency) and ``importlib.import_module("keras_arcface...")``
with a literal name. Pure ``ast``: nothing is imported, the check takes well under a second.
"""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHITECTURE = os.path.join(REPO, "docs", "architecture.md")
# Source folders and the package each installs as (setup.py's package_dir).
SOURCE_TREES = {
    "keras_arcface": "keras_arcface",
    "training": "keras_arcface.training",
    "export": "keras_arcface.export",
}


def read_ranks(text):
    """``{unit: rank}`` from the fenced block after ``<!-- layering -->`` (rank, then names)."""
    match = re.search(r"<!-- layering -->\s*```text\n(.*?)```", text, re.S)
    if match is None:
        raise AssertionError("docs/architecture.md has no `<!-- layering -->` ```text block")
    ranks = {}
    for line in match.group(1).splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            for name in fields[1:]:
                ranks[name] = int(fields[0])
    return ranks


def unit_of(module):
    """The layering unit of a dotted module: the first name below ``keras_arcface``."""
    parts = module.split(".")
    if parts[0] != "keras_arcface":
        return None
    return parts[1] if len(parts) > 1 else "keras_arcface"


def imported_modules(source, module, is_package):
    """Every ``keras_arcface`` module that ``source`` (the text of ``module``) imports."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from keras_arcface import evaluation` imports keras_arcface.evaluation.
            found += [prefix] if prefix != "keras_arcface" else []
            if prefix == "keras_arcface":
                found += [f"{prefix}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.args[0].value)
    return [name for name in found if name.startswith("keras_arcface")]


def iter_modules():
    """``(path, dotted module name, is_package)`` for every source file of the package."""
    for folder, namespace in SOURCE_TREES.items():
        root = os.path.join(REPO, folder)
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if d != "__pycache__"]
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
                is_package = parts[-1] == "__init__"
                if is_package:
                    parts = parts[:-1]
                yield path, ".".join([namespace, *parts]), is_package


def violations(ranks, modules):
    """``(problems, unranked)`` for ``modules`` = ``[(path, module, is_package, source)]``."""
    problems, unranked = [], set()
    for path, module, is_package, source in modules:
        unit = unit_of(module)
        if unit == "keras_arcface":
            continue  # the root package only names its sub-packages, imported lazily
        if unit not in ranks:
            unranked.add(unit)
            continue
        for target in imported_modules(source, module, is_package):
            target_unit = unit_of(target)
            if target_unit == unit or target_unit == "keras_arcface":
                continue
            if target_unit not in ranks:
                unranked.add(target_unit)
            elif ranks[target_unit] >= ranks[unit]:
                problems.append(
                    f"{os.path.relpath(path, REPO)}: {unit} (rank {ranks[unit]}) imports "
                    f"{target} ({target_unit}, rank {ranks[target_unit]})"
                )
    return problems, sorted(unranked)


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_no_package_imports_one_at_or_above_its_rank():
    ranks = read_ranks(_read(ARCHITECTURE))
    modules = [(p, m, pkg, _read(p)) for p, m, pkg in iter_modules()]
    assert len(modules) > 50  # the walk found the tree
    problems, unranked = violations(ranks, modules)
    assert not unranked, (
        f"Packages/modules without a rank: {unranked}. Give each one a rank in the layering "
        "block of docs/architecture.md."
    )
    assert not problems, "Imports against the documented order:\n" + "\n".join(problems)


def test_every_folder_and_top_level_module_has_a_rank():
    ranks = read_ranks(_read(ARCHITECTURE))
    top = os.path.join(REPO, "keras_arcface")
    units = {"training", "export"}
    for name in os.listdir(top):
        if name.endswith(".py") and name != "__init__.py":
            units.add(name[: -len(".py")])
        elif os.path.isfile(os.path.join(top, name, "__init__.py")):
            units.add(name)
    assert sorted(units - set(ranks)) == []
    assert sorted(set(ranks) - units) == [], "the layering block names something that is gone"


@pytest.mark.parametrize(
    "module, source, expected",
    [
        # A lower folder importing a higher one, at module level, inside a function, and
        # through a relative import or importlib, is caught ...
        ("keras_arcface.layers.x", "from keras_arcface.training import Trainer", 1),
        ("keras_arcface.losses.x", "def f():\n    import keras_arcface.models.heads", 1),
        ("keras_arcface.data.x", "from ..evaluation import verification", 1),
        (
            "keras_arcface.data.x",
            "import importlib\nimportlib.import_module('keras_arcface.paper')",
            1,
        ),
        ("keras_arcface.layers.x", "from keras_arcface import losses, training", 1),
        # ... and so is a peer at the same rank; imports downwards and inside a unit are fine.
        ("keras_arcface.layers.x", "from keras_arcface.data import schema", 1),
        ("keras_arcface.training.x", "from keras_arcface.evaluation import report", 0),
        (
            "keras_arcface.layers.x",
            "from . import norm_dense\nfrom keras_arcface._math import l2_normalize",
            0,
        ),
    ],
)
def test_the_check_catches_an_upward_import(module, source, expected):
    ranks = {"_math": 0, "losses": 1, "data": 2, "layers": 2, "models": 3}
    ranks.update({"evaluation": 4, "training": 6, "paper": 7})
    problems, _ = violations(ranks, [("x.py", module, False, source)])
    assert len(problems) == expected, problems


def test_the_ranks_parse_from_the_document():
    text = "intro\n<!-- layering -->\n```text\n0  _io _math   # helpers\n1  losses\n```\n"
    assert read_ranks(text) == {"_io": 0, "_math": 0, "losses": 1}
    with pytest.raises(AssertionError, match="layering"):
        read_ranks("no block here")
