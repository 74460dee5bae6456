"""PII redaction for training text: emails, phone numbers, card- and IBAN-like numbers.

Pattern based and deliberately greedy (a 16-digit serial number is redacted like a card):
a false positive costs one token of training text, a miss leaks a customer's data into
model weights. Each match becomes a placeholder such as ``[EMAIL]``.
"""

from __future__ import annotations

import re
from collections import Counter

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "phone": "[PHONE]"}

_EMAIL = r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"
# two letters, two check digits, then 11-30 letters/digits, optionally in groups of four
_IBAN = r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"
# 13-19 digits, optionally grouped by single spaces or dashes
_CARD = r"(?<![\w.])\d(?:[ -]?\d){12,18}(?!\w|\.\d)"
_PHONE = r"""(?<![\w.+-])(?:
      \+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}     # international: +44 20 7946 0958
    | \(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}     # (555) 123-4567
    | 0\d{1,4}(?:[ ./-]\d{2,8}){1,5}            # national, trunk 0: 06 12 34 56 78
    | \d{3}[ .-]\d{3}[ .-]\d{4}                 # 555-123-4567
    | \d{10,12}                                 # 5551234567
)(?![\w-])"""
# applied in this order (a card number must not be half-eaten as a phone number); each
# runs only when a cheap pre-check finds something it could match
_RULES = [
    ("email", re.compile(_EMAIL), re.compile("@")),
    ("iban", re.compile(_IBAN), re.compile(r"[A-Z]{2}\d\d")),
    ("card", re.compile(_CARD), re.compile(r"\d[\d -]{11,}\d")),
    ("phone", re.compile(_PHONE, re.VERBOSE), re.compile(r"\d[\d ().+/-]{5,}\d")),
]
_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\Z")


def _is_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return 7 <= digits <= 15 and not _DATE.match(text)


# every pattern above needs an "@" or a run of 7+ digits and separators: most text has
# neither, and this check is several times cheaper than the patterns themselves
_ASCII_DIGIT_RUN = re.compile(r"[0-9][0-9 ().+/-]{5,}[0-9]")
_DIGIT_RUN = re.compile(r"\d[\d ().+/-]{5,}\d")


def may_hold_pii(text: str) -> bool:
    """False when no pattern can match (a fast pre-check)."""
    if "@" in text:
        return True
    return bool((_ASCII_DIGIT_RUN if text.isascii() else _DIGIT_RUN).search(text))


def redact(text: str, counts: Counter | None = None) -> str:
    """`text` with PII replaced by placeholders; adds one to counts[kind] per redaction."""
    if not may_hold_pii(text):
        return text
    for kind, pattern, precheck in _RULES:
        if not precheck.search(text):
            continue

        def replace(match: re.Match, kind=kind) -> str:
            if kind == "phone" and not _is_phone(match.group()):
                return match.group()
            if counts is not None:
                counts[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replace, text)
    return text
