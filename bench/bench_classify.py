"""Throughput of parsing, classifying and the whole decision over 10,000+ realistic mails.

Usage: ``python bench/bench_classify.py [--count 10000] [--corpus models/corpus/mail]``

Mail comes from the rendered training corpus, each grown to a size drawn between 5 and
20 KB with the layout markup and legal footer Amazon's HTML notices carry (inside the
body part, in its own transfer encoding), so parsing does the work real mail asks for.
Everything runs on one core (BLAS threads pinned to 1). Prints a table and writes
``bench/results/classify.json``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import platform
import random
import resource
import sys
import time
from email.message import EmailMessage
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from triage import message, model, pipeline, rules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FOOTER_HTML = (
    "<table width='100%' cellpadding='0' cellspacing='0' style='font-family:Arial,sans-serif;"
    "font-size:11px;color:#666666;border-top:1px solid #dddddd'><tr><td style='padding:12px'>"
    "This email was sent by Amazon Services Europe S.a r.l. Please note that this message was "
    "sent to the following e-mail address. Amazon takes your privacy seriously; to learn more, "
    "read our <a href='https://sellercentral.amazon.com/help/privacy'>Privacy Notice</a>. "
    "Was this email helpful? <a href='https://sellercentral.amazon.com/survey?y=1'>Yes</a> | "
    "<a href='https://sellercentral.amazon.com/survey?y=0'>No</a></td></tr></table>\n"
)
FOOTER_TEXT = (
    "This email was sent by Amazon Services Europe S.a r.l. Please note that this message was "
    "sent to the following e-mail address. Amazon takes your privacy seriously. Was this "
    "email helpful? Seller Central | Help | Notification preferences\n"
)


def grow(raw: bytes, target: int) -> bytes:
    """The same mail with footer markup added inside its body part until ``target`` bytes."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("html", "plain"))
    if part is None or not isinstance(part, EmailMessage):
        return raw
    subtype = part.get_content_subtype()
    filler = FOOTER_HTML if subtype == "html" else FOOTER_TEXT
    content = part.get_content()
    copies = max(0, (target - len(raw)) // len(filler))
    if subtype == "html" and "</body>" in content:
        content = content.replace("</body>", filler * copies + "</body>", 1)
    else:
        content += filler * copies
    cte = part.get("Content-Transfer-Encoding", "quoted-printable").lower()
    part.set_content(content, subtype=subtype, cte=cte if cte != "7bit" else "quoted-printable")
    return msg.as_bytes()


def load(corpus: Path, count: int) -> list[bytes]:
    files = sorted(corpus.rglob("*.eml"))
    if not files:
        sys.exit(f"no .eml files under {corpus}: render the corpus first (python -m triage.corpus)")
    sizes = random.Random(7)
    picked = [files[i % len(files)] for i in range(count)]
    return [grow(f.read_bytes(), sizes.randint(5 * 1024, 20 * 1024)) for f in picked]


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else float("inf")


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--corpus", type=Path, default=ROOT / "models/corpus/mail")
    args = parser.parse_args()

    raws = load(args.corpus, args.count)
    sizes = sorted(len(r) for r in raws)
    classifier = model.Classifier.load()
    loaded_rules = rules.load_rules(ROOT / "rules.yaml")
    pipe = pipeline.Pipeline(classifier, loaded_rules)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    parsed, t_parse = timed(lambda: [message.parse(r) for r in raws])
    _, t_predict = timed(lambda: classifier.predict(parsed))
    _, t_all = timed(lambda: [v for i in range(0, len(raws), 512)
                              for v in pipe.decide([message.parse(r) for r in raws[i:i + 512]])])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result = {
        "messages": len(raws),
        "size_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]},
        "parse_per_s": rate(len(raws), t_parse),
        "classify_batched_per_s": rate(len(raws), t_predict),
        "parse_classify_rules_per_s": rate(len(raws), t_all),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (one used)",
    }
    for key, value in result.items():
        print(f"{key:<28} {value}")
    out = ROOT / "bench/results/classify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
