"""A data source's `domain:`: the file is one domain's data, and its manifest says so.

Chat rows carry no domain, so a source cannot be filtered row by row; what can be checked is
where the file came from. `clt feedback extract --domain D -o FILE` and `clt synth --domain D`
write FILE.manifest.json beside FILE (the convention of ``feedback.extract.manifest_path``),
recording the domain filter (extract: ``filters.domains``) or the scenario's domain (synth:
``scenario.domain``) and the output's SHA-256. A source `{path: FILE, domain: D}` (or a list
of domains) is accepted when that manifest exists, still matches the file, and records only
domains the source names; the training manifest then lists them with the input.
"""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core.files import sha256_file


def wanted_domains(src: dict) -> tuple[str, ...]:
    """The domains a source names (`domain: D` or a list), sorted; () when it names none."""
    value = src.get("domain")
    names = [value] if isinstance(value, str) else list(value or ())
    return tuple(sorted({n.strip() for n in names}))


def manifest_beside(path: Path) -> Path:
    """FILE.jsonl -> FILE.manifest.json (as extract and synth write it)."""
    return path.with_name(path.stem + ".manifest.json")


def recorded_domains(path: Path) -> tuple[str, ...]:
    """The domains the manifest beside `path` records for it; ValueError saying why none
    can be read (no manifest, not one of ours, the file changed since, no domain filter)."""
    manifest = manifest_beside(path)
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no manifest beside it ({manifest.name}): write it with "
                         "`clt feedback extract --domain D` or `clt synth --domain D`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"its manifest {manifest.name} cannot be read ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{manifest.name} is not an extract's or synth's manifest")
    if (doc.get("output") or {}).get("sha256") != sha256_file(path):
        raise ValueError(f"the file changed since {manifest.name} was written (its SHA-256 differs)")
    if doc.get("kind") == "synthetic":
        domain = (doc.get("scenario") or {}).get("domain")
        names = (domain,) if isinstance(domain, str) and domain else ()
    else:
        names = tuple((doc.get("filters") or {}).get("domains") or ())
    if not names:
        raise ValueError(f"{manifest.name} records no domain filter: the file holds every domain")
    return tuple(sorted(names))


def domain_problem(src: dict, path: Path) -> str | None:
    """Why `path` cannot be the source's domain data, or None when it can (or names none)."""
    wanted = wanted_domains(src)
    if not wanted:
        return None
    try:
        recorded = recorded_domains(path)
    except ValueError as e:
        return f"domain {', '.join(wanted)}: {e}"
    extra = [d for d in recorded if d not in wanted]
    if extra:
        return (f"domain {', '.join(wanted)}: the file holds domain(s) {', '.join(recorded)} "
                f"(its manifest {manifest_beside(path).name})")
    return None
