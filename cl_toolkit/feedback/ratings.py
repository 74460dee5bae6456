"""What a rating means, defined once for every reader of the store: `clt feedback extract`,
the monitoring checks (triggers, drift, A/B, health) and the reports.

A prediction's *effective rating* comes from the most trusted source that rated it: an
expert, then an incident review, then the user, then feedback posted to `clt serve`'s
API (source "api"; its corrections are unverified: extract uses them only when trusted or
reviewed, see feedback/extract.py); a thumb counts as 5 (up), 3 (neutral) or
1 (down). Its *effective correction* is the most trusted correction. An effective rating
of POSITIVE_MIN or more makes a *positive* example (the answer is kept as it is); one of
NEGATIVE_MAX or less a *negative* one (trained on its correction, if it has one)."""

from __future__ import annotations

POSITIVE_MIN = 4  # effective rating >= 4: a positive example
NEGATIVE_MAX = 2  # effective rating <= 2: a negative example
THUMB_AS_RATING = {1: 5, 0: 3, -1: 1}
# (SQL alias, source), most trusted first
TRUST_ORDER = (("e", "expert"), ("i", "incident"), ("u", "user"), ("a", "api"))


def _thumb(alias: str) -> str:
    cases = " ".join(f"WHEN {t} THEN {r}" for t, r in THUMB_AS_RATING.items())
    return f"CASE {alias}.thumbs {cases} END"


# SQL over `predictions p` joined with SOURCE_JOINS
SOURCE_JOINS = "\n".join(f"LEFT JOIN feedback {a} ON {a}.request_id = p.request_id AND {a}.source = '{s}'"
                         for a, s in TRUST_ORDER)
EFFECTIVE_RATING = "COALESCE(" + ", ".join(f"{a}.rating, {_thumb(a)}" for a, _ in TRUST_ORDER) + ")"
EFFECTIVE_CORRECTION = "COALESCE(" + ", ".join(f"{a}.correction" for a, _ in TRUST_ORDER) + ")"


def is_positive(rating: float | None) -> bool:
    return rating is not None and rating >= POSITIVE_MIN


def is_negative(rating: float | None) -> bool:
    return rating is not None and rating <= NEGATIVE_MAX
