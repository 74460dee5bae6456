"""PII redaction for training text: e-mails, phone numbers, card and IBAN numbers, IP
addresses and national ids.

Pattern based and deliberately greedy (a 16-digit serial number is redacted like a card):
a false positive costs one token of training text, a miss leaks a customer's data into
model weights. Each match becomes a placeholder such as ``[EMAIL]``. Where a pattern is
broad enough to hit ordinary numbers it is narrowed by a check the real thing passes:

- e-mail: any letters, so ``δοκιμή@παράδειγμα.ελ`` and ``user@bücher.de`` count;
- phone: international (``+30 210 1234567``), national with a trunk 0, US-style, Greek
  landlines (``210 1234567``, ``2310 123456``: 10 digits starting with 2) and mobiles
  (``69 1234 5678``: 10 digits starting with 69), and runs of 10-12 digits;
- IBAN: upper case as written on paper (greedy); lower or mixed case only when the
  ISO 13616 check digits hold (mod 97) and it is mostly digits, since such text is
  otherwise ordinary words;
- card: 13-19 digits, grouped by spaces or dashes or not;
- IP: dotted IPv4 and IPv6 (full or ``::``-compressed), valid per :mod:`ipaddress`; an
  IPv6 candidate needs a digit, so ``std::vector`` stays (a four-part version such as
  ``1.2.3.4`` reads as an address and is redacted);
- national id: US SSN written ``123-45-6789`` (area not 000, 666 or 9xx, group and serial
  not zero) and the Greek AFM (9 digits whose check digit holds, not after ``#``,
  ``case``, ``incident``, ``ticket`` and the like).

Not PII, and left alone: dates (``2025-04-01``, ``15.04.2025``), times (``12:30:45``),
versions (``1.10.2``), measures (``300 ppm``, ``1 3/4 inch``), case and call numbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "ip": "[IP]",
                "national_id": "[ID]", "phone": "[PHONE]"}

# any letters in the local part and the domain (internationalised mail, IDN domains)
_EMAIL = r"[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)"
# two letters, two check digits, then 11-30 letters/digits, optionally in groups of four
_IBAN = r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"
_IBAN_ANY_CASE = r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,3})?\b"
# 13-19 digits, optionally grouped by single spaces or dashes
_CARD = r"(?<![\w.])\d(?:[ -]?\d){12,18}(?!\w|\.\d)"
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"
_IPV6 = (r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|(?=::))(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}"
         r"(?![\w:])")
_SSN = r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
# a 9-digit number right after "case", "incident", "ticket"... is that, not a tax number
_AFM = (r"(?:\b(?i:case|incident|call|run|ticket|report|ref|no|number)\.?[ ]?[#:]?[ ]?)?"
        r"(?<![\w#.,-])\d{9}(?![\w-]|[.,]\d)")
# Greek numbers (the `greek` group) have 10 digits and no trunk 0: 210 1234567,
# 2310 123456, 69 1234 5678
_PHONE = r"""(?<![\w.+-])(?:
      \+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}     # international: +44 20 7946 0958
    | \(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}     # (555) 123-4567
    | 0\d{1,4}(?:[ ./-]\d{2,8}){1,5}            # national, trunk 0: 06 12 34 56 78
    | \d{3}[ .-]\d{3}[ .-]\d{4}                 # 555-123-4567
    | \d{10,12}                                 # 5551234567
    | (?P<greek>2\d{1,4}[ .-]\d{2,8}(?:[ .-]\d{2,4})?   # landline: area code, number
        | 69\d?[ .-]?\d{3,4}[ .-]?\d{3,4})             # mobile: 69 1234 5678
)(?![\w-]|(?(greek)[.,]\d|(?!)))"""
_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")  # where an IPv6 address could be
_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\Z")


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _all(ok: Callable[[str], bool]) -> Callable[[re.Match], int]:
    """A check on the whole match: its length when it holds, else 0."""
    return lambda match: len(match.group()) if ok(match.group()) else 0


def _phone(match: re.Match) -> int:
    text = match.group()
    digits = len(_digits(text))
    if match.group("greek"):
        return len(text) if digits == 10 else 0
    return len(text) if 7 <= digits <= 15 and not _DATE.match(text) else 0


def _mod97(code: str) -> bool:
    code = code[4:] + code[:4]
    return int("".join(str(int(c, 36)) for c in code)) % 97 == 1


def _iban_prefix(match: re.Match) -> int:
    """The length of the longest prefix of `text` (cut where a space is) that is an IBAN
    by ISO 13616's mod-97 check and mostly digits, 0 if none: lower or mixed case is
    ordinary text far more often than an account, so its check digits must hold."""
    text = match.group()
    cuts = [i for i, c in enumerate(text) if c == " "] + [len(text)]
    for end in reversed(cuts):
        code = text[:end].replace(" ", "").upper()
        if 15 <= len(code) <= 34 and sum(c.isdigit() for c in code) * 2 >= len(code) \
                and _mod97(code):
            return end
    return 0


def _is_ip(text: str) -> bool:
    if ":" in text and not any(c.isdigit() for c in text):
        return False  # be::ef, std::vector: letters and colons are not an address
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _afm_checks(text: str) -> bool:
    """The Greek tax number's check digit: sum(d_i * 2^(8-i)) mod 11 mod 10 == d_9."""
    if not text.isdigit() or len(set(text)) == 1:
        return False  # case 123456789; 000000000, 111111111: placeholders, not numbers
    total = sum(int(d) << (8 - i) for i, d in enumerate(text[:8]))
    return total % 11 % 10 == int(text[8])


# applied in this order (a card number must not be half-eaten as a phone number, an IP
# address not read as a version); each runs only when a cheap pre-check finds something it
# could match, and its check says how much of a match is PII (all, a prefix, or none)
_Rule = tuple[str, re.Pattern, re.Pattern, Callable[[re.Match], int] | None]
_RULES: list[_Rule] = [
    ("email", re.compile(_EMAIL), re.compile("@"), None),
    ("iban", re.compile(_IBAN), re.compile(r"[A-Z]{2}\d\d"), None),
    ("iban", re.compile(_IBAN_ANY_CASE), re.compile(r"[A-Za-z]{2}\d\d"), _iban_prefix),
    ("card", re.compile(_CARD), re.compile(r"\d[\d -]{11,}\d"), None),
    ("ip", re.compile(_IPV6), _COLONS, _all(_is_ip)),
    ("ip", re.compile(_IPV4), re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d"), _all(_is_ip)),
    ("national_id", re.compile(_SSN), re.compile(r"-\d\d-"), None),
    ("national_id", re.compile(_AFM), re.compile(r"\d{9}"), _all(_afm_checks)),
    ("phone", re.compile(_PHONE, re.VERBOSE), re.compile(r"\d[\d ().+/-]{5,}\d"), _phone),
]


# every pattern above needs an "@", a run of 7+ digits and separators (dots included, so
# a dotted IPv4 address) or two colons (IPv6): most text has none, and this check is several
# times cheaper than the patterns themselves
_ASCII_DIGIT_RUN = re.compile(r"[0-9][0-9 ().+/-]{5,}[0-9]")
_DIGIT_RUN = re.compile(r"\d[\d ().+/-]{5,}\d")


def may_hold_pii(text: str) -> bool:
    """False when no pattern can match (a fast pre-check)."""
    if "@" in text or (":" in text and _COLONS.search(text)):
        return True
    return bool((_ASCII_DIGIT_RUN if text.isascii() else _DIGIT_RUN).search(text))


def redact(text: str, counts: Counter | None = None, found: list | None = None) -> str:
    """`text` with PII replaced by placeholders; adds one to counts[kind] per redaction
    and appends (kind, the text replaced) to `found` when given."""
    if not may_hold_pii(text):
        return text
    for kind, pattern, precheck, check in _RULES:
        if not precheck.search(text):
            continue

        def replace(match: re.Match, kind=kind, check=check) -> str:
            text = match.group()
            end = len(text) if check is None else check(match)
            if not end:
                return text
            if counts is not None:
                counts[kind] += 1
            if found is not None:
                found.append((kind, text[:end]))
            return PLACEHOLDERS[kind] + text[end:]

        text = pattern.sub(replace, text)
    return text
