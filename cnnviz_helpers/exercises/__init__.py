"""Exercise checks: every lesson's exercises are checked by the functions of ``exercises.lessonNN``.

A lesson's exercise has three cells: the task (Markdown), the solution (a code cell
tagged ``solution``, which restates the task in leading ``#`` comments and binds the
answer names), and the check (a code cell calling ``lessonNN.check_K(answer, ...)``).
A check inspects the answer and says specifically what is wrong ("your saliency has
negative values: did you forget the absolute value?").

- In a lesson as shipped (solutions in; what CI runs under nbval) a wrong answer is
  an error: the official solution must pass its own check.
- In a student copy (``python -m cnnviz_helpers student``, which ``make lab`` opens),
  the solution cells are stubs (``answer = ...  # your code``) and the copy calls
  ``student_copy()`` first: an unsolved answer says "not done yet" with the task, a wrong
  one prints its hint, and "Run all" goes on.

Write a check as a function that raises ``Wrong(hint)`` and decorate it::

    @exercise("05.1", "the rank correlation of the top-1 and top-2 saliency maps")
    def check_1(answer, s1, s2):
        ...
        if answer < 0:
            raise Wrong("a negative correlation: did you rank one map in reverse?")
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Feedback", "Wrong", "ExerciseError", "exercise", "student_copy", "is_student_copy", "REGISTRY",
           "is_stub"]


class Wrong(Exception):
    """Raised by a check body: the answer is wrong; the message is the hint shown to the student."""


class ExerciseError(AssertionError):
    """A shipped lesson's own solution failed its check (or was left as a stub): a bug of the lesson."""


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check: ``done`` False for a stub, ``ok`` True only for a right answer."""

    exercise: str
    done: bool
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if not self.done:
            return f"Exercise {self.exercise}: not done yet. {self.message}"
        return f"Exercise {self.exercise}: " + ("correct." if self.ok else f"not yet right. {self.message}")

    def _ipython_display_(self) -> None:  # already printed by the check: no second copy as a cell result
        pass


_STATE = {"student": False}
REGISTRY: dict[str, Callable[..., Feedback]] = {}


def student_copy(on: bool = True) -> None:
    """Called by the first cell of a student copy: checks then print hints instead of raising."""
    _STATE["student"] = bool(on)


def is_student_copy() -> bool:
    return _STATE["student"]


def is_stub(value: Any) -> bool:
    """True for the stub's ``...`` (also inside a tuple, list or dict of answers)."""
    if value is Ellipsis:
        return True
    if isinstance(value, (tuple, list)):
        return any(is_stub(v) for v in value)
    if isinstance(value, dict):
        return any(is_stub(v) for v in value.values())
    return False


def exercise(ident: str, task: str) -> Callable[[Callable[..., None]], Callable[..., Feedback]]:
    """Make ``check(answer, ...)`` (which raises ``Wrong``) into a check that reports and returns ``Feedback``.

    Every positional argument before the first keyword is an answer: any of them still
    ``...`` means "not done". In a shipped lesson a stub or a wrong answer raises
    ``ExerciseError``; in a student copy it is printed and ``Feedback`` is returned.
    """
    def decorate(check: Callable[..., None]) -> Callable[..., Feedback]:
        @functools.wraps(check)
        def run(*answers: Any, **context: Any) -> Feedback:
            if any(is_stub(a) for a in answers):
                end = "" if task.endswith((".", "?", "!")) else "."
                fb = Feedback(ident, False, False, f"Replace the `...` in the cell above: {task}{end}")
            else:
                try:
                    check(*answers, **context)
                except Wrong as w:
                    fb = Feedback(ident, True, False, str(w))
                else:
                    fb = Feedback(ident, True, True, "")
            if not fb.ok and not is_student_copy():
                raise ExerciseError(f"{fb} (the lesson's own solution must pass its check)")
            print(fb)
            return fb

        run.exercise_id = ident  # type: ignore[attr-defined]
        run.task = task  # type: ignore[attr-defined]
        where = f"{check.__module__}.{check.__qualname__}"
        run.where = where  # type: ignore[attr-defined]
        if ident in REGISTRY and REGISTRY[ident].where != where:  # type: ignore[attr-defined]
            raise ValueError(f"exercise {ident!r} is defined twice: {REGISTRY[ident].where} and {where}")
        REGISTRY[ident] = run
        return run

    return decorate
