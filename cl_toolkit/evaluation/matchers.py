"""Deterministic matchers: does an answer satisfy a case's expected value?

Each matcher is `fn(answer, expected, tolerance) -> bool`, registered by name in
MATCHERS (habit: name -> implementation dicts). Case and whitespace are normalised where
that is sensible (everything but `regex`'s pattern itself, which runs case-insensitive).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

# A number: optional sign (not glued to a word: "UN-1005" has no negative number),
# thousands separators only in groups of three ("1,200"), decimals, scientific ("1.2e3").
_NUMBER = r"(?<![\w.,])(?P<num>[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\d])"
# The unit right after it: %, a degree sign with its scale, "degrees F", or a word.
_UNIT = r"(?:\s*(?P<unit>%|°\s*[A-Za-z]+|deg(?:rees?)?\s+(?:F|C|fahrenheit|celsius)\b|[A-Za-zµ]+(?:/[A-Za-z]+)?))?"
_QUANTITY = re.compile(_NUMBER + _UNIT)

# Spellings of one unit that must compare equal. Keys and values are already normalised.
_UNIT_ALIASES = {
    "percent": "%", "pct": "%", "per cent": "%",
    "°f": "°f", "degf": "°f", "degreesf": "°f", "degreef": "°f", "fahrenheit": "°f", "degreesfahrenheit": "°f",
    "°c": "°c", "degc": "°c", "degreesc": "°c", "degreec": "°c", "celsius": "°c", "degreescelsius": "°c",
    "s": "second", "sec": "second", "secs": "second", "seconds": "second",
    "min": "minute", "mins": "minute", "minutes": "minute",
    "lbs": "lb", "pound": "lb", "pounds": "lb",
    "times": "time", "years": "year", "degrees": "degree", "feet": "ft", "foot": "ft",
}


def normalize(text: str) -> str:
    """Unicode-normalised, case-folded, whitespace collapsed and stripped."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def normalize_unit(unit: str | None) -> str | None:
    if not unit:
        return None
    u = re.sub(r"\s+", "", unicodedata.normalize("NFKC", unit).casefold())
    return _UNIT_ALIASES.get(u, u)


def parse_number(raw: str) -> float:
    """'1,200', '1200' and '1.2e3' are all 1200.0; a Unicode minus is a minus."""
    return float(raw.replace(",", "").replace("−", "-"))


def quantities(text: str) -> list[tuple[float, str | None]]:
    """Every (number, unit) in a text, in order. The unit is None when none follows."""
    text = unicodedata.normalize("NFKC", str(text))
    return [(parse_number(m["num"]), normalize_unit(m["unit"])) for m in _QUANTITY.finditer(text)]


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=max(tolerance, 1e-9), abs_tol=1e-12)


def match_numeric(answer: str, expected: str, tolerance: float = 0.0) -> bool:
    """True when the answer holds the expected number (within a relative tolerance) with the
    same unit. '300 ppm' never matches '3000 ppm' or '300 ppb'; when the expected value has
    no unit, any unit is accepted."""
    want = quantities(expected)
    if not want:
        return False
    value, unit = want[0]
    return any(_close(v, value, tolerance) and (unit is None or u == unit) for v, u in quantities(answer))


def match_contains(answer: str, expected: str, tolerance: float = 0.0) -> bool:
    return normalize(expected) in normalize(answer)


def _strip_final_punct(text: str) -> str:
    return text.rstrip(" .!")


def match_exact(answer: str, expected: str, tolerance: float = 0.0) -> bool:
    """Equal up to case, whitespace and a final full stop."""
    return _strip_final_punct(normalize(answer)) == _strip_final_punct(normalize(expected))


def match_regex(answer: str, expected: str, tolerance: float = 0.0) -> bool:
    """`re.search`, case-insensitive, on the answer with its whitespace collapsed."""
    text = " ".join(unicodedata.normalize("NFKC", answer).split())
    return re.search(expected, text, flags=re.IGNORECASE) is not None


def match_any_of(answer: str, expected: list[str], tolerance: float = 0.0) -> bool:
    """Any one of the expected strings, each as `contains`."""
    return any(match_contains(answer, e) for e in expected)


MATCHERS: dict[str, Callable[..., bool]] = {
    "contains": match_contains,
    "exact": match_exact,
    "regex": match_regex,
    "numeric": match_numeric,
    "any_of": match_any_of,
}
