"""Feedback: production predictions and their ratings in, clean training data out.

- :mod:`.store`      the SQLite store and the application API (log_prediction, add_feedback)
- :mod:`.schema`     its tables, documented, and their migrations
- :mod:`.importer`   JSONL logs in (`clt feedback import`), with quarantine for bad lines
- :mod:`.extract`    training examples out by explicit rules (`clt feedback extract`)
- :mod:`.redact`     PII redaction used by extract
- :mod:`.annotate`   expert annotation batches as CSV, out and back in
- :mod:`.rehearsal`  the per-version rehearsal buffer recipes draw on
- :mod:`.review`     incident reviews, in a terminal or from an answers file
- :mod:`.scoring`    quality scorers (heuristic, judge) behind `clt feedback score`
- :mod:`.prune`      old rows out to a verified gzip archive (`clt feedback prune`)
- :mod:`.stats`      `clt feedback stats`, latency percentiles included
- :mod:`.endpoint`   a client for OpenAI-compatible chat endpoints (retries, no key kept)
- :mod:`.synth_remote` synthetic Q&A for a new scenario from such an endpoint (`clt synth`,
  whose command is :mod:`.synth_cli`)
- :mod:`.synth`      seeded synthetic logs for tests and benchmarks

The public entry points are ``store.open_store``/``store.FeedbackStore``,
``extract.extract`` and ``rehearsal.add_to_buffer``/``rehearsal.load_buffer``. Nothing is
re-exported here, so ``cl_toolkit.feedback.extract`` stays the module.
"""
