"""The top-level ``keras-arcface`` command: help, version, dispatch, errors."""

import errno
import subprocess
import sys
import types

import pytest

from keras_arcface import cli
from keras_arcface.errors import DataError
from keras_arcface.version import __version__


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_arcface", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from keras_arcface.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_ABSENT')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in cli.COMMANDS:
        assert name in result.stdout
    assert result.stdout.strip().endswith("TF_ABSENT")


def test_version_matches_the_package():
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"keras-arcface {__version__}"


def test_no_arguments_prints_help_and_succeeds(capsys):
    assert cli.main([]) == 0
    assert "usage: keras-arcface" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["no-such-command"])
    assert raised.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_registered_command_module_exists(name):
    module = cli._load(cli.COMMANDS[name][0])
    assert module is not None, f"{name}: module {cli.COMMANDS[name][0]} is missing"
    assert callable(module.add_arguments) and callable(module.main)


def _fake_command(monkeypatch, error):
    module = types.ModuleType("fake_command")
    module.add_arguments = lambda parser: parser.add_argument("path")

    def run(args):
        raise error

    module.main = run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_command", "a test command"))


@pytest.mark.parametrize(
    "error",
    [
        DataError("corrupt image: faces/a.jpg (truncated). Pass --on-error skip to count it."),
        FileNotFoundError("No manifest.json in faces/. Received: data_dir='faces/'"),
        IsADirectoryError("Expected an image file, got a folder. Received: path='faces/'"),
        PermissionError(13, "Permission denied", "run/config.yaml"),
        OSError(errno.EROFS, "Read-only file system", "run/ckpt-1.keras"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_expected_errors_print_one_line_and_exit_non_zero(monkeypatch, capsys, error):
    _fake_command(monkeypatch, error)
    assert cli.main(["fake", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("keras-arcface fake: error: ")
    assert ("faces/" in err) or ("run/" in err)  # names the file


def test_verbose_anywhere_shows_the_traceback(monkeypatch, capsys):
    _fake_command(monkeypatch, DataError("corrupt image: a.jpg"))
    for argv in (["--verbose", "fake", "x"], ["fake", "x", "--verbose"]):
        with pytest.raises(DataError, match="a.jpg"):
            cli.main(argv)
    _fake_command(monkeypatch, DataError("corrupt image: a.jpg"))
    assert cli.main(["fake", "--", "--verbose"]) == 1  # after "--" it is the path, not the flag


def test_genuine_bugs_keep_their_traceback(monkeypatch):
    _fake_command(monkeypatch, KeyError("internal"))
    with pytest.raises(KeyError):
        cli.main(["fake", "x"])
    _fake_command(monkeypatch, TypeError("unsupported operand"))
    with pytest.raises(TypeError):
        cli.main(["fake", "x"])


def test_a_real_command_fails_in_one_line(tmp_path):
    result = _run("convert", "check", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-arcface convert: error: No manifest.json") and "nowhere" in last
    assert "Traceback" not in result.stderr
