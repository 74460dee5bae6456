"""The PII patterns added for Greek numbers, lower-case IBANs, IP addresses, national ids
and internationalised e-mail: each caught where it is PII, and ordinary domain text (dates,
versions, measures, case numbers, times, hose sizes) left alone; the data the toolkit ships
redacts exactly as it did before."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cl_toolkit.feedback.redact import PLACEHOLDERS, may_hold_pii, redact

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize("text, expected", [
    # Greek landlines and mobiles
    ("Καλέστε στο 210 1234567 αύριο", "Καλέστε στο [PHONE] αύριο"),
    ("office 2310 123456, fax 22410 12345", "office [PHONE], fax [PHONE]"),
    ("landline 210-1234567 or 210.123.4567", "landline [PHONE] or [PHONE]"),
    ("mobile 69 1234 5678 after six", "mobile [PHONE] after six"),
    ("κινητό 694 123 4567.", "κινητό [PHONE]."),
    ("κινητό 6941234567", "κινητό [PHONE]"),
    ("+30 210 1234567 from abroad", "[PHONE] from abroad"),
    # IBANs in lower or mixed case (check digits hold)
    ("iban de89 3704 0044 0532 0130 00 please", "iban [IBAN] please"),
    ("to gb82west12345698765432.", "to [IBAN]."),
    ("GR16 0110 1250 0000 0001 2300 695 and gr1601101250000000012300695",
     "[IBAN] and [IBAN]"),
    ("De89 3704 0044 0532 0130 00 thanks a lot", "[IBAN] thanks a lot"),
    # IP addresses
    ("the tablet at 192.168.1.23 lost its link", "the tablet at [IP] lost its link"),
    ("logged from 10.0.0.1:8080.", "logged from [IP]:8080."),
    ("v6 2001:db8:85a3:0:0:8a2e:370:7334 and 2001:db8::8a2e:370:7334", "v6 [IP] and [IP]"),
    ("link-local fe80::1, loopback ::1", "link-local [IP], loopback [IP]"),
    ("mapped ::ffff:192.0.2.1 here", "mapped [IP] here"),
    # national ids
    ("SSN 123-45-6789 on file", "SSN [ID] on file"),
    ("ΑΦΜ 304011980, ΔΟΥ Αθηνών", "ΑΦΜ [ID], ΔΟΥ Αθηνών"),
    ("AFM: 944117715.", "AFM: [ID]."),
    # internationalised e-mail
    ("γράψτε στο δοκιμή@παράδειγμα.ελ σήμερα", "γράψτε στο [EMAIL] σήμερα"),
    ("mail jürgen@bücher.de or ops@xn--bcher-kva.de", "mail [EMAIL] or [EMAIL]"),
    ("联系 用户@例子.广告 谢谢", "联系 [EMAIL] 谢谢"),
])
def test_pii_is_replaced(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    # dates and times
    "Inspection due 2025-04-01, then 01/04/2025 and 1.4.2025; drill 2025 04 01.",
    "Crew on scene at 14:32:05, cleared 15:10; log 2025-04-01T12:30:45Z.",
    # versions
    "Firmware 1.10.2 replaced 1.9.3 and 2.3.14; schema 12.0.1.",
    # measures and hose sizes
    "Keep CO below 300 ppm; IDLH is 1200 ppm and the LEL 4.0%.",
    "Use 1 3/4 inch or 2 1/2 inch hose (38 mm / 65 mm), 1¾\" at 150 psi for 200 ft.",
    "Flows of 200 250 and 300 gpm; pump at 210 psi, then 250 psi.",
    "Friction loss 210 psi over 1200 feet at 325 gpm.",
    # case, call and reference numbers
    "Case 2024-00153 and case #24-1187 closed; incident 202400153 reopened.",
    "Incident 304011980 and ticket #944117715 and ref: 483435261",
    "Run number 2024-0153, call 24-118733, unit E-210.",
    # codes and words that only look like the patterns
    "NFPA 1901, UN 1203, ERG guide 128; station 210, 15 firefighters.",
    "std::vector and be::ef are code, not addresses; the ratio is 1:2:3.",
    "The so12 form and ab12 cdef ghij klmn are not accounts.",
    "Reach @station12 or the @ desk; a@b is not an address.",
    "A 9-digit count 123456789 and 000000000 are not tax numbers.",
])
def test_domain_text_is_left_alone(text):
    assert redact(text) == text


def test_each_new_kind_is_counted_and_reported():
    counts, found = Counter(), []
    redact("ip 10.1.2.3, ssn 123-45-6789, afm 304011980, 69 1234 5678, "
           "x@bücher.de, gb82west12345698765432", counts, found)
    assert counts == {"ip": 1, "national_id": 2, "phone": 1, "email": 1, "iban": 1}
    assert ("national_id", "304011980") in found and ("ip", "10.1.2.3") in found
    assert set(PLACEHOLDERS) >= set(counts)


@pytest.mark.parametrize("text", ["10.0.0.1", "fe80::1", "x@y.ελ", "210 1234567"])
def test_the_precheck_lets_every_kind_through(text):
    assert may_hold_pii(text)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_the_bundled_data_redacts_exactly_its_known_pii():
    """Training, test and suite files hold no PII; the feedback sample holds these
    contacts (and the redaction before these patterns found the same)."""
    files = sorted((DATA / "firefighter").glob("*.jsonl")) + [DATA / "general" / "general.jsonl"]
    assert len(files) >= 10
    found = Counter()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            for text in _strings(json.loads(line)):
                hits = []
                redact(text, found=hits)
                found.update((path.name, *hit) for hit in hits)
    assert found == {
        ("feedback_q2.jsonl", "email", "captain.lee@example.com"): 2,
        ("feedback_q2.jsonl", "email", "j.rivera@example.com"): 1,
        ("feedback_q2.jsonl", "email", "k.nguyen@example.org"): 2,
        ("feedback_q2.jsonl", "email", "m.okafor@example.com"): 3,
        ("feedback_q2.jsonl", "phone", "(555) 010-2233"): 1,
        ("feedback_q2.jsonl", "phone", "+1 555 014 7788"): 1,
        ("feedback_q2.jsonl", "phone", "555-123-4567"): 2,
        ("feedback_q2.jsonl", "phone", "555.019.4321"): 4,
    }
