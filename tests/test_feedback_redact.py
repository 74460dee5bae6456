"""PII redaction: what it catches and what ordinary domain text keeps."""

from __future__ import annotations

from collections import Counter

import pytest

from cl_toolkit.feedback.redact import redact


@pytest.mark.parametrize("text, expected", [
    ("mail jane.doe+ops@fire.example.co.uk today", "mail [EMAIL] today"),
    ("call +44 20 7946 0958 now", "call [PHONE] now"),
    ("call (555) 123-4567 now", "call [PHONE] now"),
    ("call 555.123.4567 now", "call [PHONE] now"),
    ("appelez le 06 12 34 56 78", "appelez le [PHONE]"),
    ("ring 5551234567", "ring [PHONE]"),
    ("電話 +81 3-1234-5678 です", "電話 [PHONE] です"),
    ("card 4111 1111 1111 1111.", "card [CARD]."),
    ("card 4111-1111-1111-1111 or 378282246310005", "card [CARD] or [CARD]"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please"),
    ("to GB82WEST12345698765432", "to [IBAN]"),
])
def test_pii_is_replaced(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "Run a 1.75 inch line at 150 psi for 200 feet.",
    "Inspection due 2025-04-01, then 04/15/2025 and 15.04.2025.",
    "Flows of 150 250 and 300 gpm; NFPA 1901 and NFPA 1710 apply.",
    "Engine 12 and Ladder 7 respond; call sign E-12.",
    "Version 1.10.0 replaced 1.9.3 at 12:30:45.",
    "no digits at all, only words and an @ sign alone",
])
def test_domain_text_is_left_alone(text):
    assert redact(text) == text


def test_counts_each_kind():
    counts = Counter()
    redact("a@b.io, c@d.io, +1 415 555 0100, 4111111111111111", counts)
    assert counts == {"email": 2, "phone": 1, "card": 1}
