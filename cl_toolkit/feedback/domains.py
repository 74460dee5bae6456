"""`--domain` filters over the feedback store: the domain of a prediction is its
``predictions.domain`` column (the import row's ``metadata.domain``).

A filter is a set of domain names, any of which selects a prediction; the empty set
selects every prediction. A name with no prediction in the store is an error that lists
the domains the store does hold: a typo must not pass as an empty, successful export.

The column has no index, and needs none: every command that filters on it (extract,
annotation export) reads the predictions in one pass anyway, and the check below stops at
the first row of each domain it finds.
"""

from __future__ import annotations

from collections.abc import Iterable

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.store import FeedbackStore

SHOWN_DOMAINS = 30  # an error lists at most this many of the store's domains


def normalise(domains: Iterable[str] | None) -> tuple[str, ...]:
    """The filter as recorded in manifests: unique names, sorted; () for no filter."""
    names = tuple(sorted({d.strip() for d in domains or ()}))
    if any(not d for d in names):
        raise BadInput("--domain needs a non-empty name")
    return names


def store_domains(store: FeedbackStore) -> dict[str, int]:
    """{domain: predictions} of every domain in the store (NULL domains left out)."""
    rows = store.conn.execute("SELECT domain, COUNT(*) FROM predictions WHERE domain IS NOT NULL "
                              "GROUP BY domain ORDER BY domain")
    return dict(rows.fetchall())


def unknown_domain_error(unknown: list[str], known: list[str], where: str) -> BadInput:
    """The error for names that select nothing, naming the domains that do exist."""
    shown = ", ".join(known[:SHOWN_DOMAINS]) + (f", ... ({len(known)} in all)"
                                                 if len(known) > SHOWN_DOMAINS else "")
    names = ", ".join(repr(d) for d in unknown)
    return BadInput(f"unknown domain{'s' if len(unknown) > 1 else ''} {names}; "
                    + (f"the domains of {where}: {shown}" if known else f"{where} has no domain at all"))


def check_store_domains(store: FeedbackStore, domains: Iterable[str] | None) -> tuple[str, ...]:
    """The normalised filter; BadInput when a name has no prediction in the store."""
    names = normalise(domains)
    present = "SELECT 1 FROM predictions WHERE domain = ? LIMIT 1"
    unknown = [d for d in names if store.conn.execute(present, (d,)).fetchone() is None]
    if unknown:
        raise unknown_domain_error(unknown, list(store_domains(store)), f"the feedback store {store.path}")
    return names


def domain_clause(domains: tuple[str, ...], column: str = "p.domain") -> tuple[str, list]:
    """(SQL condition, parameters) selecting the filter's predictions; ("", []) for none."""
    if not domains:
        return "", []
    return f"{column} IN ({', '.join('?' * len(domains))})", list(domains)
