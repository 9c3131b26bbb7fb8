"""Errors that end a command with a one-line message; the exit code says whose fault it was."""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class ConvhubError(Exception):
    """Something went wrong that convhub can explain in one line; `hint`, when there is one,
    says what to do instead (the CLI shows it on a line of its own; str() has both)."""

    exit_code = 1
    log = ""  # the output of the worker it came from, if it did
    result: Any = None  # what ran, for a ConversionError or ParityError from convhub.convert

    def __init__(self, message: str = "", *, hint: str = ""):
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message = message
        self.hint = hint


class UsageError(ConvhubError):
    """The command line or the call was malformed (unknown format, bad arrow...)."""

    exit_code = 2


class InputError(ConvhubError):
    """The input is missing, unreadable, or not a model of the expected format."""

    exit_code = 2


class CacheError(ConvhubError):
    """convhub's cache folder cannot be made or written (CONVHUB_CACHE names a file, a read-only
    place, a full disk): the setup is at fault, not a model or a converter."""

    exit_code = 2


class NoRouteError(ConvhubError):
    """No usable chain of conversions leads from the source to the target."""

    exit_code = 2

    def __init__(self, message: str, reasons: list[str] | None = None, *, hint: str = ""):
        super().__init__(message, hint=hint)
        self.reasons = reasons or []


class ConversionError(ConvhubError):
    """A converter failed, or produced something its runtime will not load."""

    exit_code = 1


class ParityError(ConvhubError):
    """A converted artifact does not compute what the source computes."""

    exit_code = 1

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class RuntimeMissing(ConvhubError):
    """A runner's runtime is not available here (no Node.js, no C compiler...): its artifacts
    are reported as not checked, never as passed or as broken."""

    exit_code = 1


class PluginError(ConvhubError):
    """A plugin contributed something invalid."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGTERM arrived (SIGINT is KeyboardInterrupt): like it, not an error a handler may swallow."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean 'tflite'?' for the closest of `choices`, or '' when none is close."""
    near = difflib.get_close_matches(word.lower(), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else ""
