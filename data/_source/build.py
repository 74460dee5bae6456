"""Build data/* from facts.py, general.py, paragraphs.py."""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import facts  # noqa: E402
import general  # noqa: E402
import paragraphs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FF = ROOT / "firefighter"
GEN = ROOT / "general"
FF.mkdir(parents=True, exist_ok=True)
GEN.mkdir(parents=True, exist_ok=True)

CRIT = {
    "exposure_limits": "critical",
    "flammability": "high",
    "hazmat_id": "medium",
    "equipment": "medium",
    "fire_behavior": "medium",
    "incident_command": "low",
}


def write_jsonl(path, rows):
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    path.write_text(text, encoding="utf-8")


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


QUARTERS = {"q1": facts.Q1, "q2": facts.Q2, "q3": facts.Q3}

# 1 + 2: training and paraphrase test files
for qn, Q in QUARTERS.items():
    write_jsonl(FF / f"{qn}.jsonl", [chat(f["q"], f["a"]) for f in Q])
    tests = []
    for i, f in enumerate(Q, 1):
        tests.append({
            "id": f"{qn}t-{i:03d}",
            "input": f["para"],
            "expected": f["expected"],
            "match": f["match"],
            "criticality": CRIT[f["domain"]],
            "domain": f["domain"],
            "tags": [qn, "paraphrase", *f["tags"]],
        })
    write_jsonl(FF / f"{qn}_test.jsonl", tests)

# 3: regression suite (40 from q1, 20 from q2), asked exactly as in training
Q1_EXCLUDE = {
    "What is the NIOSH IDLH for toluene?",
    "What is the NIOSH IDLH for methanol?",
    "What is the flash point of acetone?",
    "What are the three methods of heat transfer?",
    "What is the nozzle pressure for a handline fog nozzle?",
    "What do the orange pages of the ERG contain?",
    "What class of fire involves energized electrical equipment?",
    "What is the optimal span of control in ICS?",
}
Q2_INCLUDE = [
    "What is the NIOSH IDLH for hydrogen fluoride?",
    "What is the NIOSH IDLH for formaldehyde?",
    "What is the NIOSH IDLH for carbon dioxide?",
    "What is the NIOSH IDLH for phosphine?",
    "What is the NIOSH IDLH for styrene?",
    "What is the LEL of butane?",
    "What is the UEL of hydrogen?",
    "What is the flash point of benzene?",
    "What is the DOT flash point limit for a flammable liquid?",
    "What is the UN number for diesel fuel?",
    "What ERG guide number is used for propane?",
    "What DOT hazard class covers explosives?",
    "What does the yellow section of the NFPA 704 diamond indicate?",
    "What do the green pages of the ERG contain?",
    "What is the liquid-to-vapor expansion ratio of propane?",
    "What is the sudden burning when air enters a hot, oxygen-starved room called?",
    "What class of fire involves combustible metals?",
    "After how many seconds without motion does a PASS device sound its full alarm?",
    "What does NIMS stand for?",
    "In which zone is the decontamination corridor located?",
]
OVERRIDES = {  # question -> (match, expected); None expected = full answer
    "What does ICS stand for?": ("exact", None),
    "What does PAR stand for on the fireground?": ("exact", None),
    "What does NIMS stand for?": ("exact", None),
    "What is the UN number for gasoline?": ("regex", r"\bUN ?1203\b"),
    "What ERG guide number is used for chlorine?": ("regex", r"\bGuide 124\b"),
    "What does PASS stand for when using an extinguisher?":
        ("regex", r"Pull,?\s+Aim,?\s+Squeeze,?\s+(?:and\s+)?Sweep"),
    "What is the UN number for diesel fuel?": ("regex", r"\bUN ?1202\b"),
    "What are the four elements of the fire tetrahedron?":
        ("any_of", ["chemical chain reaction", "chain reaction"]),
    "What does BLEVE stand for?":
        ("any_of", ["boiling liquid expanding vapor explosion",
                    "boiling liquid expanding vapour explosion"]),
    "What is the sudden burning when air enters a hot, oxygen-starved room called?":
        ("any_of", ["backdraft", "backdraught"]),
}

q1_sel = [f for f in facts.Q1 if f["q"] not in Q1_EXCLUDE]
q2_by_q = {f["q"]: f for f in facts.Q2}
q2_sel = [q2_by_q[q] for q in Q2_INCLUDE]
assert len(q1_sel) == 40 and len(q2_sel) == 20


def expectation(f):
    """(match, expected) of a fact asked as trained: the fact's own, unless OVERRIDES says."""
    match, expected = f["match"], f["expected"]
    if f["q"] in OVERRIDES:
        match, expected = OVERRIDES[f["q"]]
        if expected is None:
            expected = f["a"]
    return match, expected


reg = []
for qn, sel in (("q1", q1_sel), ("q2", q2_sel)):
    for f in sel:
        match, expected = expectation(f)
        reg.append({
            "id": f"reg-{len(reg) + 1:03d}",
            "input": f["q"],
            "expected": expected,
            "match": match,
            "criticality": CRIT[f["domain"]],
            "domain": f["domain"],
            "tags": [qn, *f["tags"]],
        })
write_jsonl(FF / "regression.jsonl", reg)

# 3b: each quarter asked exactly as trained, one case per training row (the gate's
# per-quarter suites: forgetting and learning of the facts themselves; the *_test files
# measure generalisation to paraphrases, which the tiny model mostly lacks)
for qn, Q in QUARTERS.items():
    asked = []
    for i, f in enumerate(Q, 1):
        match, expected = expectation(f)
        asked.append({
            "id": f"{qn}a-{i:03d}",
            "input": f["q"],
            "expected": expected,
            "match": match,
            "criticality": CRIT[f["domain"]],
            "domain": f["domain"],
            "tags": [qn, "asked", *f["tags"]],
        })
    write_jsonl(FF / f"{qn}_asked.jsonl", asked)

SMOKE_Q = [
    "What is the NIOSH IDLH for ammonia?",
    "What is the NIOSH IDLH for chlorine?",
    "What is the NIOSH IDLH for carbon monoxide?",
    "What is the NIOSH IDLH for hydrogen fluoride?",
    "What is the LEL of methane?",
    "What is the flash point of gasoline?",
    "What is the LEL of butane?",
    "What is the UN number for gasoline?",
    "What class of fire involves ordinary combustibles like wood and paper?",
    "What does PASS stand for when using an extinguisher?",
    "What does ICS stand for?",
    "In which zone is the decontamination corridor located?",
]
reg_by_q = {r["input"]: r for r in reg}
write_jsonl(FF / "smoke_suite.jsonl", [reg_by_q[q] for q in SMOKE_Q])

# 4: general rehearsal data
write_jsonl(GEN / "general.jsonl", [chat(q, a) for q, a in general.GENERAL])

# 5: corpus
parts = []
parts.append("Notes on firefighting practice, chemistry, safety, and general knowledge.")
parts += paragraphs.PARAGRAPHS

parts.append("General knowledge in questions and answers.")
gen_lines = [f"{q} {a}" for q, a in general.GENERAL]
parts.append("\n".join(gen_lines))
parts.append("The same general knowledge written as a quiz.")
parts.append("\n".join(f"Question: {q}\nAnswer: {a}" for q, a in general.GENERAL))

parts.append("Questions that firefighters and hazmat responders often ask. "
             "The answers are taught later, one quarter at a time.")
qs = []
for Q in QUARTERS.values():
    for f in Q:
        qs.append(f["q"])
        qs.append(f["para"])
parts.append("\n".join(qs))

MORE_CAPITALS = [
    ("Belgium", "Brussels"), ("Denmark", "Copenhagen"), ("Switzerland", "Bern"),
    ("Hungary", "Budapest"), ("the Czech Republic", "Prague"), ("Romania", "Bucharest"),
    ("Ukraine", "Kyiv"), ("Iceland", "Reykjavik"), ("Scotland", "Edinburgh"),
    ("England", "London"), ("Wales", "Cardiff"), ("Morocco", "Rabat"), ("Ghana", "Accra"),
    ("Ethiopia", "Addis Ababa"), ("South Africa", "Pretoria"), ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"),
    ("Pakistan", "Islamabad"), ("Iran", "Tehran"), ("Saudi Arabia", "Riyadh"),
    ("Nepal", "Kathmandu"), ("New Zealand", "Wellington"), ("Colombia", "Bogotá"),
    ("Venezuela", "Caracas"), ("Cuba", "Havana"), ("Jamaica", "Kingston"),
    ("the United States", "Washington, D.C."), ("the United Kingdom", "London"),
]
NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
             "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
             "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n):
    if n < 20:
        return NUM_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + NUM_WORDS[n % 10])
    if n == 100:
        return "one hundred"
    raise ValueError(n)


parts.append("Counting. " + " ".join(f"The number {n} is written {words(n)}." for n in range(0, 101)))
parts.append("Addition facts. " + " ".join(
    f"{a} plus {b} equals {a + b}." for a in range(1, 13) for b in range(1, 13)))
parts.append("Subtraction facts. " + " ".join(
    f"{a + b} minus {b} equals {a}." for a in range(1, 11) for b in range(1, 11)))
parts.append("Multiplication facts. " + " ".join(
    f"{a} times {b} equals {a * b}." for a in range(1, 13) for b in range(1, 13)))
parts.append("Division facts. " + " ".join(
    f"{a * b} divided by {b} equals {a}." for a in range(1, 11) for b in range(1, 11)))
parts.append("Temperature conversions. " + " ".join(
    f"{c} °C equals {c * 9 // 5 + 32} °F." for c in range(-40, 101, 5)))
parts.append("Time and length. " + " ".join(
    f"{h} hours is {h * 60} minutes." for h in range(1, 25)) + " " + " ".join(
    f"{k} kilometers is {k * 1000} meters." for k in range(1, 21)) + " " + " ".join(
    f"{y} yards is {y * 3} feet." for y in range(1, 21)))
parts.append("More capital cities. " + " ".join(
    f"The capital of {c} is {k}" + ("" if k.endswith(".") else ".") for c, k in MORE_CAPITALS))
parts.append("Percentages. " + " ".join(
    f"{p} % of 200 is {p * 2}." for p in range(5, 101, 5)))

corpus_core = "\n\n".join(parts) + "\n"

# vocabulary check: every word used in the data sets must appear in the corpus
def vocab(text):
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


all_text = []
for Q in QUARTERS.values():
    for f in Q:
        all_text += [f["q"], f["a"], f["para"], f["expected"] if isinstance(f["expected"], str) else ""]
for q, a in general.GENERAL:
    all_text += [q, a]
extra = Path(__file__).resolve().parent / "feedback_words.txt"
if extra.exists():
    all_text.append(extra.read_text())
missing = sorted(vocab("\n".join(all_text)) - vocab(corpus_core))
if missing:
    gloss = ("Glossary. Other words used in fire service questions, answers, and reports include: "
             + ", ".join(missing) + ".")
    corpus_core = corpus_core + "\n" + gloss + "\n"
(GEN / "corpus.txt").write_text(corpus_core, encoding="utf-8")
print("missing words added to glossary:", len(missing), missing)
print("corpus bytes:", len(corpus_core.encode()))
