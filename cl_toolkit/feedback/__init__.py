"""Feedback: production predictions and their ratings in, clean training data out.

- :mod:`.store`      the SQLite store and the application API (log_prediction, add_feedback)
- :mod:`.schema`     its tables, documented, and their migrations
- :mod:`.importer`   JSONL logs in (`clt feedback import`), with quarantine for bad lines
- :mod:`.extract`    training examples out by explicit rules (`clt feedback extract`)
- :mod:`.redact`     PII redaction used by extract
- :mod:`.annotate`   expert annotation batches as CSV, out and back in
- :mod:`.rehearsal`  the per-version rehearsal buffer recipes draw on
- :mod:`.stats`      `clt feedback stats`
- :mod:`.synth`      seeded synthetic logs for tests and benchmarks

The public entry points are ``store.open_store``/``store.FeedbackStore``,
``extract.extract`` and ``rehearsal.add_to_buffer``/``rehearsal.load_buffer``. Nothing is
re-exported here, so ``cl_toolkit.feedback.extract`` stays the module.
"""
