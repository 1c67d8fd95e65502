#!/usr/bin/env python3
"""Chat examples for melbo's demo model, built offline from text shipped in Debian packages.

Two kinds of answer, told apart by construction:
  code  - a request for Python code, answered with a fenced Python function taken from the
          standard library (libpython3.11-stdlib): the docstring's first sentence becomes the
          request, the body without its docstring the answer.
  prose - a "what is / what does / how can I" question, answered in sentences: from manual
          pages (NAME and DESCRIPTION of manpages, manpages-dev, coreutils, util-linux) and from
          the docstrings of the same standard-library modules and functions.

The same function appears as a code answer ("Write a Python function to ...") and as a prose
answer ("What does json.dumps do?") so the model must read the request, not the topic.
Every example is ASCII (so the byte-level tokenizer's pre-split is the same in Python and in
melbo's tokenizer). The held-out split is chosen by a hash of the source (function, module or
manual page), so no source is in both splits. Deterministic: same packages, same output.

Usage: build_data.py OUT_DIR   (writes train.jsonl, heldout.jsonl, manifest.json)
"""
import ast
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import textwrap

SEED = 1234
HELDOUT_PERCENT = 5
PY_PACKAGE = "libpython3.11-stdlib"
PY_ROOT = "/usr/lib/python3.11"
MAN_PACKAGES = ["manpages", "manpages-dev", "coreutils", "util-linux"]
MAX_CODE_CHARS = 800
MAX_CODE_LINES = 28
REQUESTS_PER_FUNCTION = 2
MAX_PROSE_CHARS = 480

# ---- the code score of src/eval/code-score.ts, used to keep code and prose clearly apart ----
KEYWORDS = ("def return import from class function const let var if else elif for while print printf console "
            "public private static void int float double char bool struct include namespace std self this new "
            "null None True False true false try catch except async await lambda fn SELECT FROM WHERE echo").split()
KEYWORD = re.compile(r"\b(?:%s)\b" % "|".join(KEYWORDS))
SYMBOL = re.compile(r"""[{}()\[\];=<>+\-*/%&|^!:#.,_"'`\\]""")


def code_score(text):
    fence = 0.35 if "```" in text else 0.0
    keywords = 0.25 * min(1.0, len(KEYWORD.findall(text)) / 4)
    lines = [l for l in text.split("\n")[1:] if l.strip() != ""]
    indented = sum(1 for l in lines if re.match(r"^(?: {2,}|\t)", l))
    indentation = 0.0 if not lines else 0.2 * indented / len(lines)
    visible = len(re.sub(r"\s", "", text))
    share = 0.0 if visible == 0 else len(SYMBOL.findall(text)) / visible
    return fence + keywords + indentation + 0.2 * min(1.0, share / 0.25)


def package_version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"build_data: Debian package {pkg} is not installed (apt-get install {pkg})")
    return out.stdout.strip()


def package_files(pkg):
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    return sorted(out.stdout.split("\n"))


def is_ascii(s):
    return all(ord(c) < 128 for c in s)


def first_sentence(text):
    para = " ".join(text.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(\s|$)", para)
    return (m.group(1) if m else para).strip()


def clip_sentences(text, limit):
    """Whole sentences of text, at most limit characters (at least the first sentence)."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    out = ""
    for s in sentences:
        if out and len(out) + 1 + len(s) > limit:
            break
        out = f"{out} {s}" if out else s
    return out if len(out) <= limit * 1.5 else out[:limit].rsplit(" ", 1)[0] + "."


def lower_first(s):
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


# ---- the Python standard library ----
def python_sources():
    files = [f for f in package_files(PY_PACKAGE) if f.startswith(PY_ROOT + "/") and f.endswith(".py")]
    skip = re.compile(r"/(test|tests|idle_test|lib2to3/tests|__phello__|site-packages|dist-packages)/")
    return [f for f in files if not skip.search(f) and os.path.isfile(f)]


def module_name(path):
    rel = os.path.relpath(path, PY_ROOT)[:-3].replace("/", ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def strip_docstring(lines, node):
    doc = node.body[0]
    first, last = doc.lineno - node.lineno, doc.end_lineno - node.lineno
    return lines[:first] + lines[last + 1 :]


def python_items():
    for path in python_sources():
        try:
            source = open(path, encoding="utf-8").read()
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        mod = module_name(path)
        doc = ast.get_docstring(tree)
        if doc:
            yield {"type": "module", "name": mod, "doc": doc}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc or node.name.startswith("__"):
                continue
            segment = ast.get_source_segment(source, node)
            if segment is None:
                continue
            lines = textwrap.dedent(" " * node.col_offset + segment).split("\n")
            if node.decorator_list:
                continue
            body = strip_docstring(lines, node)
            if len(body) < 2:
                continue
            code = "\n".join(l.rstrip() for l in body).strip("\n")
            yield {"type": "function", "name": f"{mod}.{node.name}", "short": node.name, "doc": doc, "code": code}


CODE_REQUESTS = [
    "Write a Python function to {s}",
    "Write Python code to {s}",
    "Can you write a function that will {s}?",
    "Implement {name} in Python. It should {s}",
    "Show me a Python snippet to {s}",
    "Write a function named {name} to {s}",
    "Please write code that can {s}",
    "How do I {s} in Python? Show the code.",
    "Give me Python code to {s}",
    "Write the code for {name}: {S}",
]
FUNCTION_QUESTIONS = [
    "What does {name} do?",
    "Explain what the Python function {name} does.",
    "What is {name} for?",
    "Describe {name} in a few words.",
]
MODULE_QUESTIONS = [
    "What is the Python module {name}?",
    "What does the {name} module do?",
    "Tell me about Python's {name} module.",
    "What is {name} used for?",
]


def imperative(sentence):
    """The docstring sentence as a lower-case imperative clause ('Return x.' -> 'return x'), or None."""
    s = sentence.rstrip(".")
    word, _, rest = s.partition(" ")
    if re.fullmatch(r"[A-Z][a-z]+s", word) and not word.endswith("ss"):
        # third person to imperative: "Returns x" -> "Return x", "Matches x" -> "Match x"
        word = word[:-2] if re.search(r"(ch|sh|x|ss)es$", word) else word[:-1]
        s = f"{word} {rest}"
    if not re.fullmatch(r"[A-Z][a-z]+", word) or word.endswith("s") or word in ("This", "The", "A", "An", "If", "It", "Internal", "Helper", "Private", "Deprecated", "Used", "Called"):
        return None
    return lower_first(s)


def python_examples(rng, code_howto_percent=0):
    # A separate stream for the "How can I ...?" code requests, so that the default data (0 %)
    # stays what it was bit for bit.
    howto_rng = random.Random(SEED + 1)
    for item in python_items():
        doc = item["doc"]
        if item["type"] == "module":
            answer = clip_sentences(doc.split("\n\n")[0] + " " + " ".join(doc.split("\n\n")[1:2]), MAX_PROSE_CHARS)
            if ">>>" in doc[: len(answer) + 50] or len(answer) < 40:
                continue
            q = rng.choice(MODULE_QUESTIONS).format(name=item["name"])
            yield ("prose", "py:" + item["name"], q, answer)
            continue
        code, name = item["code"], item["short"]
        summary = first_sentence(doc)
        clause = imperative(summary)
        if clause and len(code) <= MAX_CODE_CHARS and len(code.split("\n")) <= MAX_CODE_LINES and len(clause) >= 12:
            for template in rng.sample(CODE_REQUESTS, REQUESTS_PER_FUNCTION):
                q = template.format(s=clause, S=summary, name=name)
                yield ("code", "py:" + item["name"], q, f"```python\n{code}\n```")
            if howto_rng.random() * 100 < code_howto_percent:
                # the question form of the manual pages, answered in code: the form alone no
                # longer decides, so "answer in code" is something the model has to infer
                yield ("code", "py:" + item["name"], f"How can I {clause}?", f"```python\n{code}\n```")
        prose = clip_sentences(" ".join(doc.split("\n\n")[0:2]), MAX_PROSE_CHARS)
        if len(prose) >= 40 and ">>>" not in prose:
            q = rng.choice(FUNCTION_QUESTIONS).format(name=item["name"])
            yield ("prose", "py:" + item["name"], q, prose)


# ---- manual pages ----
KIND = {"1": "command", "2": "system call", "3": "library function", "4": "special file", "5": "file format",
        "6": "game", "7": "overview", "8": "administration command"}
MAN_QUESTIONS = [
    "What does {name} do?",
    "What is {name}?",
    "Explain what {name} is for.",
    "Tell me about {name}.",
    "How can I {desc}?",
    "How do I {desc}?",
    "What should I use to {desc}?",
    "Is there a way to {desc}?",
]


def roff_to_text(lines):
    """Plain text of roff source lines: macros dropped or unwrapped, font escapes removed."""
    out = []
    for line in lines:
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith(".") or line.startswith("'"):
            macro, _, rest = line[1:].partition(" ")
            if macro in ("PP", "P", "LP", "sp", "br", "TP", "IP", "RS", "RE", "SS", "nf", "fi", "in", "ft", "ad", "na", "ne", "TQ", "EX", "EE", "UR", "UE", "ti"):
                out.append("\n\n" if macro in ("PP", "P", "LP", "TP", "IP", "SS") else "\n")
                if macro == "IP" and rest:
                    continue
                continue
            if macro in ("B", "I", "SM", "SB"):
                out.append(rest.replace('"', ""))
                continue
            if macro in ("BR", "BI", "IR", "IB", "RB", "RI"):
                parts = re.findall(r'"[^"]*"|\S+', rest)
                out.append("".join(p.strip('"') for p in parts))
                continue
            continue
        out.append(line)
    text = " ".join(out)
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\\((em|en)", "-", text)
    text = re.sub(r"\\\(..", "", text)
    text = re.sub(r"\\\[[^\]]*\]", "", text)
    text = text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "").replace("\\ ", " ").replace("\\%", "")
    text = re.sub(r"\\[a-zA-Z*]\S*", "", text)
    return text


def man_sections(path):
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    sections, current = {}, None
    for line in lines:
        m = re.match(r'\.SH\s+"?([^"]+)"?', line)
        if m:
            current = m.group(1).strip().upper()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def man_examples(rng):
    seen = set()
    for pkg in MAN_PACKAGES:
        for path in package_files(pkg):
            m = re.match(r"/usr/share/man/man(\d)/([^/]+)\.\d\w*\.gz$", path)
            if not m or not os.path.isfile(path) or os.path.islink(path):
                continue
            section, page = m.group(1), m.group(2)
            try:
                sections = man_sections(path)
            except OSError:
                continue
            name_text = " ".join(roff_to_text(sections.get("NAME", [])).split())
            nm = re.match(r"(.+?)\s+-+\s+(.+)", name_text)
            description = " ".join(roff_to_text(sections.get("DESCRIPTION", [])).split("\n\n")[0].split())
            if not nm or len(description) < 40:
                continue
            names = [n.strip() for n in nm.group(1).split(",") if n.strip()]
            desc = nm.group(2).strip().rstrip(".")
            name = names[0]
            if (name, section) in seen:
                continue
            seen.add((name, section))
            kind = KIND.get(section, "manual page")
            answer = clip_sentences(f"{name} is a {kind} that can {lower_first(desc)}. {description}", MAX_PROSE_CHARS)
            for q in rng.sample(MAN_QUESTIONS, 2):
                if "{desc}" in q and not re.match(r"[a-z]+ ", lower_first(desc)):
                    q = MAN_QUESTIONS[0]
                yield ("prose", f"man{section}:{page}", q.format(name=name, desc=lower_first(desc)), answer)


def main():
    args = sys.argv[1:]
    code_howto = 0.0
    if len(args) == 3 and args[1] == "--code-howto":
        code_howto = float(args[2])
        args = args[:1]
    if len(args) != 1:
        sys.exit("usage: build_data.py OUT_DIR [--code-howto PERCENT]")
    out_dir = args[0]
    os.makedirs(out_dir, exist_ok=True)
    versions = {p: package_version(p) for p in [PY_PACKAGE] + MAN_PACKAGES}
    rng = random.Random(SEED)
    examples, dropped = [], {"non-ascii": 0, "code-score": 0}
    for kind, source, question, answer in list(python_examples(rng, code_howto)) + list(man_examples(rng)):
        if not (is_ascii(question) and is_ascii(answer)):
            dropped["non-ascii"] += 1
            continue
        score = code_score(answer)
        if (kind == "prose" and score >= 0.3) or (kind == "code" and score < 0.6):
            dropped["code-score"] += 1
            continue
        examples.append({"kind": kind, "source": source, "question": question, "answer": answer})
    rng.shuffle(examples)
    split = {"train": [], "heldout": []}
    for e in examples:
        h = int(hashlib.sha256(f"{SEED}:{e['source']}".encode()).hexdigest(), 16) % 100
        split["heldout" if h < HELDOUT_PERCENT else "train"].append(e)
    for name, rows in split.items():
        tmp = os.path.join(out_dir, f"{name}.jsonl.tmp")
        with open(tmp, "w") as f:
            for e in rows:
                f.write(json.dumps(e) + "\n")
        os.replace(tmp, os.path.join(out_dir, f"{name}.jsonl"))
    counts = {name: {k: sum(1 for e in rows if e["kind"] == k) for k in ("code", "prose")} for name, rows in split.items()}
    manifest = {"seed": SEED, "codeHowtoPercent": code_howto, "heldoutPercent": HELDOUT_PERCENT, "packages": versions, "counts": counts, "dropped": dropped}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
