"""The top-level ``keras-arcface`` command: help, version, dispatch, errors."""

import argparse
import errno
import os
import re
import subprocess
import sys
import types

import pytest
import yaml

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


@pytest.mark.slow  # a subprocess importing TensorFlow; the in-process tests cover the wrapper
def test_a_real_command_fails_in_one_line(tmp_path):
    result = _run("convert", "check", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-arcface convert: error: No manifest.json") and "nowhere" in last
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ TensorFlow's start-up logs
PROBE = """
import sys, types
from keras_arcface import cli

probe = types.ModuleType("tf_probe")
probe.add_arguments = lambda parser: None


def _main(args):
    import tensorflow as tf

    print("sum", float(tf.reduce_sum(tf.ones(3))))


probe.main = _main
sys.modules["tf_probe"] = probe
cli.COMMANDS["tf-probe"] = ("tf_probe", "imports TensorFlow and runs one op")
sys.exit(cli.main(["tf-probe", *sys.argv[1:]]))
"""

# A TensorFlow C++ log line ("I0000 00:00:... cpu_feature_guard.cc:...]") or absl's notice.
TF_LOG_LINE = re.compile(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN|cpu_feature_guard", re.M)


def _probe(*args, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def test_commands_hide_tensorflow_start_up_logs_unless_verbose():
    quiet = _probe()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "sum 3.0" in quiet.stdout
    assert not TF_LOG_LINE.search(quiet.stderr), quiet.stderr[-2000:]
    loud = _probe("--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert TF_LOG_LINE.search(loud.stderr), loud.stderr[-2000:]


def test_quiet_tensorflow_respects_the_users_log_level(monkeypatch):
    import logging

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert not cli.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert not cli.quiet_tensorflow(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setattr(logging.getLogger("absl"), "level", logging.NOTSET)
    assert cli.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert logging.getLogger("absl").level == logging.ERROR


# ------------------------------------------------------------------ argument order, help lines
def test_train_accepts_flags_and_overrides_in_any_order(capsys, tmp_path):
    run_dir = str(tmp_path / "run")
    orders = (
        ["synthetic_demo", "--run-dir", run_dir, "data.train_dir=Y", "--print-config"],
        ["--print-config", "synthetic_demo", "data.train_dir=Y", "--run-dir", run_dir],
        ["synthetic_demo", "data.train_dir=Y", "--run-dir", run_dir, "--print-config"],
        ["synthetic_demo", "--print-config", "data.train_dir=Y", "loss.scale=16"],
    )
    for order in orders:
        assert cli.main(["train", *order]) == 0, order
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["name"] == "synthetic_demo", order
        assert printed["data"]["train_dir"] == "Y", order
    assert printed["loss"]["scale"] == 16.0


def _walk(parser, path):
    """Yields ``(command path, action)`` for every argument of a parser and its sub-parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, child in action.choices.items():
                yield f"{path} {name}", name if name in helped else None
                yield from _walk(child, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_argument_has_a_help_line(name):
    module = cli._load(cli.COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"keras-arcface {name}")
    module.add_arguments(parser)
    missing = []
    for path, action in _walk(parser, name):
        if isinstance(action, str) or action is None:
            if action is None:
                missing.append(f"{path} (sub-command)")
            continue
        if not action.help or action.help == argparse.SUPPRESS or not action.help.strip():
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without a help line: {missing}"


def test_the_top_level_parser_has_a_help_line_for_everything():
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        if not isinstance(action, str) and action is not None
        else f"{path} (sub-command)"
        for path, action in _walk(cli.build_parser(), "keras-arcface")
        if action is None or (not isinstance(action, str) and not (action.help or "").strip())
    ]
    assert not missing, f"arguments without a help line: {missing}"


def _parsers(parser):
    """The parser and every sub-parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


# Commands with a progress bar (each once had either --quiet or --no-progress).
PROGRESS_COMMANDS = {"align", "convert", "demo", "eval", "paper", "synth", "train"}


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_progress_is_hidden_by_the_same_flag_in_every_command(name):
    """``--no-progress`` and ``--quiet`` are one option wherever a command shows progress."""
    module = cli._load(cli.COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"keras-arcface {name}")
    module.add_arguments(parser)
    has_flag = False
    for sub in _parsers(parser):
        flags = [a for a in sub._actions if {"--quiet", "--no-progress"} & set(a.option_strings)]
        assert len(flags) <= 1, (sub.prog, [a.option_strings for a in flags])
        if flags:
            (flag,) = flags
            assert set(flag.option_strings) == {"--no-progress", "--quiet"}, sub.prog
            assert flag.dest == "no_progress", sub.prog
            has_flag = True
    assert has_flag == (name in PROGRESS_COMMANDS)


def test_convert_failures_are_one_line_naming_the_file(tmp_path, capsys):
    # Issue 16: a corrupt JPEG under --on-error raise and a non-empty output folder printed
    # 29-line tracebacks.
    (tmp_path / "faces" / "ann").mkdir(parents=True)
    (tmp_path / "faces" / "ann" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    argv = ["convert", "images", str(tmp_path / "faces"), str(tmp_path / "out"), "--quiet"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt image" in err[0] and "broken.jpg" in err[0]
    assert "--on-error skip" in err[0] and not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.pdf").write_bytes(b"%PDF")
    argv = ["convert", "images", str(tmp_path / "faces"), str(tmp_path / "mine"), "--quiet"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and "mine" in err[0]
    assert (tmp_path / "mine" / "thesis.pdf").read_bytes() == b"%PDF"


def test_the_command_line_shows_a_renamed_config_key_once(tmp_path):
    # Python hides DeprecationWarning outside __main__: the CLI shows the package's own.
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("partial_fc:\n  shard_centres: false\n")
    new.write_text("partial_fc:\n  shard_centers: false\n")
    result = _run("train", str(old), "--print-config")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["partial_fc"]["shard_centers"] is False
    assert result.stderr.count("DeprecationWarning") == 1, result.stderr
    assert "'partial_fc.shard_centres' is deprecated" in result.stderr
    assert "'partial_fc.shard_centers' instead" in result.stderr
    result = _run("train", str(new), "--print-config")
    assert result.returncode == 0 and "Deprecation" not in result.stderr, result.stderr


def test_filtered_stderr_drops_only_start_up_noise(capfd):
    with cli.filtered_stderr(cli.TF_START_UP_NOISE):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\n")
        os.write(2, b"I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1.0 something really failed\n")
        print("a line of the command", file=sys.stderr)
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "absl::InitializeLog" not in err
    assert "E0000 00:00:1.0 something really failed\n" in err
    assert "a line of the command\n" in err
