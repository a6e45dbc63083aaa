"""The ``edgeseg`` command line.

Each command lives in its own module exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so the
runtime commands work in a torch-free install. Errors from the library arrive as
:class:`EdgesegError` and leave as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator

# command -> (module under edgeseg.cli, one-line help). Order is the help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart_cmd", "train -> export -> video on procedural scenes (or --data), end to end"),
    "models": ("models_cmd", "list bundled models and the architectures to train"),
    "train": ("train_cmd", "train a model on a dataset"),
    "val": ("val_cmd", "mIoU of a checkpoint, ONNX model or engine on a dataset split"),
    "export": ("export_cmd", "export a checkpoint to ONNX / TensorRT (fp32, fp16, int8)"),
    "predict": ("predict_cmd", "segment images, folders and videos (every frame)"),
    "demo": ("demo_cmd", "live camera / stream demo with overlay, FPS and latency"),
    "bench": ("bench_cmd", "latency and throughput of models and the video pipeline"),
    "info": ("info_cmd", "metadata, IO and backend availability of a model"),
}

# A missing optional package -> the extra that installs it. Training-side commands need torch
# through the `export` extra when they export (COMMAND_EXTRA).
EXTRA_OF: dict[str, str] = {
    "torch": "train", "torchvision": "train",
    "onnx": "export", "onnxscript": "export", "onnxslim": "export", "onnxconverter_common": "export",
    "tensorrt": "trt", "cuda": "trt",
}
COMMAND_EXTRA: dict[str, str] = {"export": "export", "quickstart": "export"}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15  # SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (temporary files, sinks) still runs."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other failure
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def finite_float(text: str) -> float:
    """argparse type for real-valued options: 'nan' and 'inf' parse as floats but mean nothing here."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    from edgeseg import __version__

    parser = _Parser(prog="edgeseg", description="Semantic segmentation from training to a camera: "
                     "train, export (ONNX / TensorRT, FP16 / INT8), run on video.",
                     epilog="Run 'edgeseg COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"edgeseg.cli.{module_name}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Only the chosen command's module is imported (and only it may need torch).
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        from edgeseg.runtime.errors import unknown_name

        print(f"edgeseg: error: {unknown_name('command', command, COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    if command in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        sub.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logs")
        module = _load(command)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    verbose = getattr(args, "verbose", False) or os.environ.get("EDGESEG_VERBOSE") == "1"
    from edgeseg.runtime.errors import EdgesegError, UsageError

    try:
        _check_outputs(args)
        with _sigterm_as_interrupt():
            return int(module.run(args) or 0)
    except UsageError as e:
        _fail(e, verbose)
        return EXIT_USAGE
    except EdgesegError as e:
        _fail(e, verbose)
        return EXIT_ERROR
    except Terminated:
        print("edgeseg: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # a bug or an unforeseen environment problem: still one line
        hint = missing_extra(e, args.command)
        if hint:
            _fail(EdgesegError(hint), verbose)
            return EXIT_ERROR
        if verbose:
            traceback.print_exc()
        print(f"edgeseg {args.command}: unexpected {type(e).__name__}: {e} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def missing_extra(e: BaseException, command: str | None = None) -> str | None:
    """The line for an optional package that is not installed ("... pip install 'edgeseg[train]'"),
    or None when ``e`` is not about one."""
    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return None
    package = e.name.split(".")[0]
    extra = EXTRA_OF.get(package)
    if extra is None:
        return None
    if extra in ("train", "export") and command in COMMAND_EXTRA:
        extra = COMMAND_EXTRA[command]
    where = f"edgeseg {command}" if command else "this"
    return f"{where} needs {package}, which is not installed: pip install 'edgeseg[{extra}]'"


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before the work, a number outside its limits (:mod:`edgeseg.cli.limits`) and an output
    that cannot be written or would replace an input or another output (:mod:`edgeseg.cli.outputs`)."""
    from edgeseg.cli.limits import check_limits
    from edgeseg.cli.outputs import check_outputs

    check_limits(args)  # numbers first: a bad --threads fails before any path is probed
    check_outputs(args)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds like Ctrl-C (exit 143). predict and demo install their
    own handler for their runs (stop at the next frame) and restore this one after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(e: BaseException, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    print(f"error: {e}", file=sys.stderr)
