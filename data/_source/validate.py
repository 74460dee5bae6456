import collections
import json
import re
from pathlib import Path

D = Path(__file__).resolve().parent.parent
FF, GEN = D / "firefighter", D / "general"
errors = []


def err(msg):
    errors.append(msg)


def load(path):
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    if not text.endswith("\n") or text.endswith("\n\n"):
        err(f"{path}: bad trailing newline")
    rows = []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            err(f"{path}:{n}: blank line")
            continue
        rows.append(json.loads(line))
    return rows


def check_chat(rows, path):
    for r in rows:
        m = r["messages"]
        if set(r) != {"messages"} or len(m) != 2 or m[0]["role"] != "user" or m[1]["role"] != "assistant":
            err(f"{path}: bad chat row {r}")
        if not m[0]["content"].strip() or not m[1]["content"].strip():
            err(f"{path}: empty content")


NUM_RE = re.compile(r"^(-?\d+(?:\.\d+)?) (.+)$")


def hit(case, answer):
    exp, match = case["expected"], case["match"]
    if match == "numeric":
        m = NUM_RE.match(exp)
        if not m:
            return False
        num, unit = m.groups()
        return re.search(r"(?<![\d.-])" + re.escape(num) + r"\s?" + re.escape(unit), answer) is not None
    if match == "contains":
        return exp.lower() in answer.lower()
    if match == "exact":
        return exp.strip() == answer.strip()
    if match == "regex":
        return re.search(exp, answer) is not None
    if match == "any_of":
        return isinstance(exp, list) and any(e.lower() in answer.lower() for e in exp)
    return False


CASE_KEYS = {"id", "input", "expected", "match", "criticality", "domain", "tags"}
DOMAINS = {"exposure_limits", "flammability", "hazmat_id", "fire_behavior", "equipment", "incident_command"}
CRITS = {"critical", "high", "medium", "low"}
MATCHES = {"numeric", "contains", "exact", "regex", "any_of"}


def check_case(c, path):
    if set(c) != CASE_KEYS:
        err(f"{path}: keys {set(c)}")
    if c["match"] not in MATCHES or c["criticality"] not in CRITS or c["domain"] not in DOMAINS:
        err(f"{path}: bad enum {c}")
    if c["domain"] == "exposure_limits" and c["criticality"] != "critical":
        err(f"{path}: exposure limit not critical {c['id']}")
    if c["domain"] == "flammability" and c["criticality"] != "high":
        err(f"{path}: flammability not high {c['id']}")
    if c["match"] == "any_of" and not isinstance(c["expected"], list):
        err(f"{path}: any_of needs list")
    if c["match"] == "regex":
        re.compile(c["expected"])


train = {}
answers = {}
for q in ("q1", "q2", "q3"):
    rows = load(FF / f"{q}.jsonl")
    check_chat(rows, q)
    assert len(rows) == 48, (q, len(rows))
    train[q] = rows
    for r in rows:
        answers[r["messages"][0]["content"]] = (q, r["messages"][1]["content"])
all_q = [r["messages"][0]["content"] for q in train for r in train[q]]
if len(all_q) != len(set(all_q)):
    err("duplicate questions across q1/q2/q3: " + str([k for k, v in collections.Counter(all_q).items() if v > 1]))
lower_q = [q.lower().strip() for q in all_q]
if len(lower_q) != len(set(lower_q)):
    err("case-insensitive duplicate questions")
ans_words = [len(a.split()) for _, a in answers.values()]
print("answer words max/mean:", max(ans_words), round(sum(ans_words) / len(ans_words), 1))

# tests
para_inputs = []
for q in ("q1", "q2", "q3"):
    tests = load(FF / f"{q}_test.jsonl")
    assert len(tests) == 48
    for i, (c, r) in enumerate(zip(tests, train[q]), 1):
        check_case(c, f"{q}_test")
        if c["id"] != f"{q}t-{i:03d}":
            err(f"bad id {c['id']}")
        if c["match"] not in ("numeric", "contains"):
            err(f"test match {c['match']}")
        if c["input"] in answers:
            err(f"paraphrase equals a training question: {c['input']}")
        if c["tags"][0] != q:
            err("test tag")
        if not hit(c, r["messages"][1]["content"]):
            err(f"{c['id']} expected {c['expected']!r} not in training answer {r['messages'][1]['content']!r}")
        # key value appears exactly once in the answer
        if c["match"] == "contains":
            cnt = r["messages"][1]["content"].lower().count(c["expected"].lower())
        else:
            cnt = r["messages"][1]["content"].count(c["expected"])
        if cnt != 1:
            err(f"{c['id']} key value appears {cnt} times")
        para_inputs.append(c["input"])
if len(para_inputs) != len(set(para_inputs)):
    err("duplicate paraphrases")

# regression
reg = load(FF / "regression.jsonl")
assert len(reg) == 60
tags = collections.Counter(c["tags"][0] for c in reg)
assert tags == {"q1": 40, "q2": 20}, tags
for i, c in enumerate(reg, 1):
    check_case(c, "regression")
    if c["id"] != f"reg-{i:03d}":
        err(f"reg id {c['id']}")
    if c["input"] not in answers:
        err(f"regression input not a training question: {c['input']}")
        continue
    qn, a = answers[c["input"]]
    if qn != c["tags"][0]:
        err(f"regression quarter tag mismatch {c['id']}")
    if not hit(c, a):
        err(f"{c['id']}: expected {c['expected']!r} ({c['match']}) not in {a!r}")
if len({c["input"] for c in reg}) != 60:
    err("duplicate regression inputs")
print("regression matches:", dict(collections.Counter(c["match"] for c in reg)))
print("regression criticality:", dict(collections.Counter(c["criticality"] for c in reg)))

smoke = load(FF / "smoke_suite.jsonl")
assert len(smoke) == 12
reg_by_id = {c["id"]: c for c in reg}
for c in smoke:
    if reg_by_id.get(c["id"]) != c:
        err(f"smoke case not identical to regression: {c['id']}")
sc = collections.Counter(c["criticality"] for c in smoke)
print("smoke criticality:", dict(sc))
assert sc["critical"] >= 3 and len(sc) >= 3

# general
gen = load(GEN / "general.jsonl")
check_chat(gen, "general")
assert len(gen) == 120
gq = [r["messages"][0]["content"] for r in gen]
assert len(set(gq)) == 120
if set(gq) & set(all_q):
    err("general overlaps firefighter")

# corpus
corpus = (GEN / "corpus.txt").read_text(encoding="utf-8")
size = len(corpus.encode())
assert 60_000 <= size <= 120_000, size
cv = {w.lower() for w in re.findall(r"[A-Za-z]+", corpus)}
texts = []
for q in train:
    for r in train[q]:
        texts += [m["content"] for m in r["messages"]]
texts += para_inputs + [m["content"] for r in gen for m in r["messages"]]
dv = {w.lower() for t in texts for w in re.findall(r"[A-Za-z]+", t)}
if dv - cv:
    err(f"corpus misses words: {sorted(dv - cv)}")
for q, (qn, a) in answers.items():
    if a in corpus:
        err(f"corpus contains quarterly answer: {a}")

# feedback
fb = load(FF / "feedback_q2.jsonl")
assert len(fb) == 400
q1a = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in train["q1"]}
q2a = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in train["q2"]}
src = collections.Counter()
kinds = collections.Counter()
pii = 0
prev = ""
ids = set()
for n, r in enumerate(fb, 1):
    keys = set(r)
    base = {"request_id", "timestamp", "input", "output", "model_version", "metadata"}
    if keys not in (base, base | {"user_feedback"}):
        err(f"feedback keys {keys}")
    if r["request_id"] != f"req-{n:06d}":
        err("request id")
    ids.add(r["request_id"])
    if not re.fullmatch(r"2026-0[456]-\d\dT\d\d:\d\d:\d\dZ", r["timestamp"]) or r["timestamp"] < prev:
        err(f"timestamp {r['timestamp']}")
    prev = r["timestamp"]
    if r["model_version"] != "1.0.0":
        err("model version")
    md = r["metadata"]
    if set(md) != {"domain", "confidence", "latency_ms"} or not (0 <= md["confidence"] <= 1) or not isinstance(md["latency_ms"], int):
        err(f"metadata {md}")
    if re.search(r"@|555", r["input"]):
        pii += 1
    base_q = next((q for q in list(q1a) + list(q2a) if r["input"].startswith(q) or r["input"].endswith(q)), None)
    s = "q1" if base_q in q1a else "q2" if base_q in q2a else "general"
    src[s] += 1
    uf = r.get("user_feedback")
    if uf is None:
        kinds["none"] += 1
        continue
    if ("rating" in uf) == ("thumbs" in uf):
        err("rating xor thumbs")
    kinds["thumbs" if "thumbs" in uf else "rating"] += 1
    if "rating" in uf and uf["rating"] not in range(1, 6):
        err("rating range")
    if "thumbs" in uf and uf["thumbs"] not in (1, -1):
        err("thumbs value")
    if s == "q2":
        if r["output"] == q2a[base_q]:
            err(f"q2 answered correctly {r['request_id']}")
        if uf.get("rating", 1) > 2 or uf.get("thumbs", -1) != -1:
            err("q2 rated high")
        if uf["correction"] is not None and uf["correction"] != q2a[base_q]:
            err("q2 correction mismatch")
    elif s == "q1":
        if r["output"] != q1a[base_q]:
            err("q1 wrong output")
        if uf.get("rating", 5) < 4 or uf.get("thumbs", 1) != 1 or uf["correction"] is not None:
            err("q1 rated low")
print("feedback source:", dict(src), "feedback kinds:", dict(kinds), "pii inputs:", pii,
      "q2 corrections:", sum(1 for r in fb if (r.get("user_feedback") or {}).get("correction")))

print("ERRORS:" if errors else "ALL CHECKS PASSED", *errors, sep="\n")
for p in sorted(D.rglob("*")):
    if p.is_file():
        lines = p.read_text(encoding="utf-8").count("\n")
        print(f"{str(p.relative_to(D)):40s} {p.stat().st_size:7d} bytes {lines:5d} lines")
