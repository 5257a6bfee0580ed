"""Every function of the package stays short enough to read without scrolling.

An ``ast`` walk over ``keras_arcface/``, ``training/`` and ``export/``: a function (or method,
nested ones included) may span at most ``LIMIT`` lines, from its ``def`` line to its last line,
docstring included. A function over it is split into named steps; the only exceptions are the
public functions listed in ``DOCSTRING_EXCEPTIONS``, long because of their documented arguments:
without the docstring they too must fit in ``LIMIT``. An exception that no longer needs its
entry fails too, so the list cannot go stale.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_arcface", "training", "export")
LIMIT = 60

# "path::qualified name" -> why it may exceed LIMIT in total. Each is a public entry point
# whose docstring documents every argument (STYLE.md: Args with defaults, an example).
DOCSTRING_EXCEPTIONS = {
    "keras_arcface/data/pipeline.py::make_dataset": "docstring: 18 documented arguments",
    "keras_arcface/data/recordio.py::convert_recordio": "docstring: 13 documented arguments",
    "keras_arcface/data/image_codec.py::prepare_image": "docstring: decoding rules, 7 arguments",
    "keras_arcface/data/synthetic/generate.py::generate_synthetic": (
        "docstring: the outputs and 14 documented arguments"
    ),
    "keras_arcface/evaluation/verification.py::verification_metrics": (
        "docstring: the protocol, 7 arguments and the returned keys"
    ),
    "keras_arcface/evaluation/verification.py::evaluate_verification": (
        "docstring: flip fusion, 10 arguments and the returned keys"
    ),
    "keras_arcface/evaluation/identification.py::identification_metrics": (
        "docstring: the open-set protocol, 8 arguments and the returned keys"
    ),
    "keras_arcface/evaluation/identification.py::evaluate_identification": (
        "docstring: the gallery/probe split and 12 arguments"
    ),
    "export/exporter.py::export_model": "docstring: the export contract and 14 arguments",
}


def _without_docstring(node):
    """Lines of ``node`` minus the lines of its docstring (if it has one)."""
    total = node.end_lineno - node.lineno + 1
    if ast.get_docstring(node, clean=False) is None:
        return total
    docstring = node.body[0]
    return total - (docstring.end_lineno - docstring.lineno + 1)


def _functions(tree):
    """Yields ``(qualified name, node)`` for every function in a module, nested included."""

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                yield from walk(child, f"{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def function_lengths(root=ROOT, packages=PACKAGES):
    """``{"path::qualified name": (total lines, lines without the docstring)}``."""
    lengths = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
            for name, node in _functions(tree):
                total = node.end_lineno - node.lineno + 1
                lengths[f"{relative}::{name}"] = (total, _without_docstring(node))
    return lengths


def long_functions(lengths, exceptions, limit=LIMIT):
    """The problems: functions over ``limit`` and exceptions that are wrong or unneeded."""
    problems = []
    for key, (total, code) in sorted(lengths.items()):
        if total <= limit:
            if key in exceptions:
                problems.append(f"{key}: {total} lines, drop it from the exceptions")
            continue
        if key not in exceptions:
            problems.append(f"{key}: {total} lines (limit {limit}): split it into named steps")
        elif code > limit:
            problems.append(f"{key}: {code} lines without its docstring (limit {limit})")
    missing = [key for key in exceptions if key not in lengths]
    return problems + [f"{key}: listed as an exception, no such function" for key in missing]


def test_no_function_exceeds_the_limit():
    lengths = function_lengths()
    assert len(lengths) > 500  # the walk found the package
    problems = long_functions(lengths, DOCSTRING_EXCEPTIONS)
    assert not problems, "\n".join(problems)


def _lengths_of(source, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(source)
    return function_lengths(tmp_path, ("pkg",))


def _function(name, body_lines, docstring_lines=0, indent=""):
    lines = [f"{indent}def {name}():"]
    if docstring_lines:
        lines += [f'{indent}    """Summary.'] + [f"{indent}    x"] * (docstring_lines - 2)
        lines += [f'{indent}    """']
    lines += [f"{indent}    a = {k}" for k in range(body_lines)]
    return "\n".join(lines) + "\n"


def test_checker_counts_docstring_lines_and_nested_functions(tmp_path):
    source = _function("short", 3, docstring_lines=4) + "class Holder:\n"
    source += _function("method", 2, indent="    ")
    source += _function("outer", 1) + _function("inner", 5, indent="    ")
    lengths = _lengths_of(source, tmp_path)
    assert lengths["pkg/mod.py::short"] == (8, 4)  # def + 4 docstring + 3 body
    assert lengths["pkg/mod.py::Holder.method"] == (3, 3)
    assert lengths["pkg/mod.py::outer.inner"] == (6, 6)
    assert lengths["pkg/mod.py::outer"] == (8, 8)


@pytest.mark.parametrize(
    "body, docstring, exceptions, expected",
    [
        (59, 0, {}, []),  # 60 lines: at the limit
        (60, 0, {}, ["split it into named steps"]),  # 61 lines
        (20, 45, {"pkg/mod.py::f": "docstring"}, []),  # long only by its docstring
        (20, 45, {}, ["split it into named steps"]),  # an exception must be listed
        (70, 45, {"pkg/mod.py::f": "docstring"}, ["without its docstring"]),
        (10, 0, {"pkg/mod.py::f": "docstring"}, ["drop it from the exceptions"]),
        (10, 0, {"pkg/mod.py::gone": "docstring"}, ["no such function"]),
    ],
)
def test_checker_flags_long_functions_and_stale_exceptions(
    tmp_path, body, docstring, exceptions, expected
):
    lengths = _lengths_of(_function("f", body, docstring), tmp_path)
    problems = long_functions(lengths, exceptions)
    assert len(problems) == len(expected)
    for problem, phrase in zip(problems, expected):
        assert phrase in problem
