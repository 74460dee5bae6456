"""Matchers: the numeric traps (units, separators, scientific notation), and the rest."""

from __future__ import annotations

import pytest

from cl_toolkit.evaluation.matchers import (
    MATCHERS,
    match_any_of,
    match_contains,
    match_exact,
    match_numeric,
    match_regex,
    quantities,
)


@pytest.mark.parametrize("answer", [
    "The NIOSH IDLH for ammonia is 300 ppm.", "300ppm", "It is 300 PPM", "about 300.0 ppm",
    "the limit: 3e2 ppm", "IDLH = +300 ppm",
])
def test_numeric_matches_the_same_quantity(answer):
    assert match_numeric(answer, "300 ppm")


@pytest.mark.parametrize("answer", [
    "The NIOSH IDLH for ammonia is 3000 ppm.",  # a longer number is another number
    "The IDLH is 30 ppm.", "1300 ppm", "300.5 ppm", "0.300 ppm", "300,000 ppm", "-300 ppm",
    "300 ppb",  # the unit differs
    "300 %", "The IDLH is 300.",  # no unit where one is expected
    "UN1300 ppm", "no number at all", "",
])
def test_numeric_rejects_the_traps(answer):
    assert not match_numeric(answer, "300 ppm")


@pytest.mark.parametrize("written", ["1,200 ppm", "1200 ppm", "1.2e3 ppm", "1.2E3ppm", "1200.00 ppm"])
def test_numeric_separators_and_scientific_are_equal(written):
    assert match_numeric(written, "1200 ppm")
    assert match_numeric("The IDLH for carbon monoxide is 1200 ppm.", written)
    assert not match_numeric(written, "12000 ppm")


def test_numeric_units_are_normalised():
    assert match_numeric("The flash point is -45°F.", "-45 °F")
    assert match_numeric("The flash point is -45 degrees F.", "-45 °F")
    assert match_numeric("The flash point is −45 °F.", "-45 °F")  # Unicode minus
    assert not match_numeric("The flash point is 45 °F.", "-45 °F")
    assert not match_numeric("The flash point is -45 °C.", "-45 °F")
    assert match_numeric("The LEL of methane is 5 percent.", "5.0 %")
    assert match_numeric("The LEL of methane is 5.0%.", "5.0 %")
    assert match_numeric("after 30 s without motion", "30 seconds")
    assert match_numeric("water expands about 1700 times", "1700 times")


def test_numeric_tolerance_is_relative():
    assert not match_numeric("20.8 %", "20.9 %")
    assert match_numeric("20.8 %", "20.9 %", tolerance=0.01)
    assert not match_numeric("19 %", "20.9 %", tolerance=0.01)


def test_numeric_without_expected_unit_accepts_any_unit():
    assert match_numeric("It is 42 ppm", "42")
    assert not match_numeric("It is 420 ppm", "42")


def test_quantities_reads_numbers_with_their_units():
    assert quantities("from 4.0 % to 75 %, 1,200 ppm or 1.2e3 ppm") == [
        (4.0, "%"), (75.0, "%"), (1200.0, "ppm"), (1200.0, "ppm")]
    assert quantities("UN1203 and Guide 128") == [(128.0, None)]  # a number glued to a word is a name


def test_contains_normalises_case_and_whitespace():
    assert match_contains("Use a  class\tb extinguisher", "Class B")
    assert not match_contains("Class A", "Class B")


def test_exact_ignores_case_whitespace_and_final_full_stop():
    expected = "ICS stands for Incident Command System."
    assert match_exact("ics stands for  Incident Command System", expected)
    assert not match_exact("ICS stands for Incident Command System, mostly.", expected)


def test_regex_searches_case_insensitively():
    assert match_regex("The UN number for gasoline is UN1203.", r"\bUN ?1203\b")
    assert match_regex("un 1203", r"\bUN ?1203\b")
    assert not match_regex("UN12034", r"\bUN ?1203\b")
    assert match_regex("Pull, aim,\nsqueeze and sweep", r"Pull,?\s+Aim,?\s+Squeeze,?\s+(?:and\s+)?Sweep")


def test_any_of_needs_one_of_them():
    assert match_any_of("a Backdraught happens", ["backdraft", "backdraught"])
    assert not match_any_of("a flashover happens", ["backdraft", "backdraught"])


def test_every_matcher_is_registered_by_name():
    assert set(MATCHERS) == {"contains", "exact", "regex", "numeric", "any_of"}
