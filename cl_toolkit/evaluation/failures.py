"""What kind of mistake a failed case is, read from its matcher, its expected value and the
answer (`clt analyze`'s failure patterns). One pattern per failed case, the first that fits:

1. `no_answer`: the answer is empty, a refusal ("I do not know", "I cannot ..."), filler
   words only ("The."), or a numeric case answered with no number at all (digits or words).
2. `format_error`: the expected value is there but in a form the matcher refuses
   ("UN-1203" for `\\bUN ?1203\\b`, "300ppm." for an exact "300 ppm", "three hundred ppm"
   for a numeric "300 ppm"); so is the right number with no unit at all.
3. `wrong_unit`: the expected number with another unit (300 ppb for 300 ppm).
4. `wrong_number`: a number, but not the expected one (3000 ppm for 300 ppm).
5. `wrong_entity`: anything else, an answer naming something other than the expected.

A case scored by a judge (`match: judge`) is `judged_wrong`: its matcher says nothing more."""

from __future__ import annotations

import math
import re
import unicodedata

from cl_toolkit.evaluation.matchers import MATCHERS, normalize, quantities

PATTERNS = ("wrong_number", "wrong_unit", "wrong_entity", "no_answer", "format_error", "judged_wrong")
DESCRIPTIONS = {
    "wrong_number": "wrong number", "wrong_unit": "right number but wrong unit", "wrong_entity": "wrong entity",
    "no_answer": "no answer or refusal", "format_error": "format error", "judged_wrong": "judged wrong",
}
_REFUSAL = re.compile(r"\b(i (do not|don't|cannot|can't) (know|say|answer|help)|i am not sure|i'm not sure|"
                      r"unable to (answer|help)|no (information|idea)|not able to|sorry)\b")
_FILLER = frozenset("a an the of for to in on at is are was be and or it this that with by as".split())
# a number spelled out: a numeric answer in words has the content in the wrong form
_NUMBER_WORD = re.compile(r"\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                          r"forty|fifty|hundred|thousand|million|half|quarter)\b")
# a number written in a regex pattern, not part of an escape such as \d or {2}
_PATTERN_NUMBER = re.compile(r"(?<![\\{,\d])\d+(?:\.\d+)?(?![\d}])")


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=max(tolerance, 1e-9), abs_tol=1e-12)


def _plain(text: str) -> str:
    """Letters and digits only, case-folded: what is left when the form is ignored."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _variants(answer: str) -> list[str]:
    """The answer with its punctuation as spaces, and without spaces: forms a reader accepts."""
    spaced = " ".join(re.sub(r"[^\w%°.]+", " ", answer).split())
    return [spaced, spaced.replace(" ", "")]


def is_no_answer(answer: str) -> bool:
    """Empty, a refusal, or only filler words ("The.", "for."): nothing that could be an answer."""
    text = normalize(answer).strip(" .!?")
    words = re.findall(r"\w+", text)
    return not words or all(w in _FILLER for w in words) or _REFUSAL.search(text) is not None


def _expected_numbers(match: str, expected) -> list[tuple[float, str | None]]:
    if match == "numeric":
        return quantities(expected)[:1]
    texts = expected if isinstance(expected, list | tuple) else [expected]
    if match == "regex":
        return [(float(n), None) for t in texts for n in _PATTERN_NUMBER.findall(t)]
    return [(v, u) for t in texts for v, u in quantities(t)]


def _form_only(answer: str, expected, match: str, tolerance: float) -> bool:
    """The matcher passes once punctuation and spacing are ignored."""
    if match == "regex":
        return any(MATCHERS["regex"](v, expected, tolerance) for v in _variants(answer))
    texts = expected if isinstance(expected, list | tuple) else [expected]
    if match == "numeric":
        return False  # the number and unit were compared as values already
    return any(_plain(t) and _plain(t) in _plain(answer) for t in texts)


def classify(answer: str, expected, match: str, tolerance: float = 0.0) -> str:
    """The failure pattern of one failed case (see the module docstring)."""
    if match == "judge":
        return "judged_wrong"
    if is_no_answer(answer):
        return "no_answer"
    if _form_only(answer, expected, match, tolerance):
        return "format_error"
    want = _expected_numbers(match, expected)
    if not want:
        return "wrong_entity"
    got = quantities(answer)
    if not got:
        if match != "numeric":
            return "wrong_entity"
        return "format_error" if _NUMBER_WORD.search(normalize(answer)) else "no_answer"
    value, unit = want[0]
    units = {u for v, u in got if _close(v, value, tolerance)}
    if units:
        if unit is None or unit in units:
            return "wrong_entity"  # the number is there as asked: something else is wrong
        return "format_error" if units == {None} else "wrong_unit"  # a bare number: the unit left out
    return "wrong_number"
