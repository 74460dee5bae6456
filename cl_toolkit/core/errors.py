"""Errors the CLI turns into one line per problem and an exit code, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NO = 3  # gate blocked, or a decision said "no"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is and what is wrong."""

    file: str
    message: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class CltError(Exception):
    """An error with an exit code; the CLI prints it without a traceback."""

    exit_code = EXIT_FAILURE


class BadInput(CltError):
    """Bad user input (usage, config, data): exit 2. Carries every problem found."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", message=problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p).lstrip(": ") for p in self.problems))


class Refused(CltError):
    """A decision said no (gate blocked, no update due): exit 3."""

    exit_code = EXIT_NO
