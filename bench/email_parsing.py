"""Email parsing on hostile input: does the cost stay linear in the size of the mail?

Every email webhook (Mailgun, SendGrid, SES) runs `email/mime.py` `parse_email` on customer-controlled
bytes inside API Gateway's 29 s limit. A quadratic step turns one 1 MB mail into minutes of CPU
(the review measured a 200 KB Mailgun POST taking 18 s). For each adversarial input below, the
parse is timed at n and 4n bytes against the parse of an ordinary mail of the same size (prose
lines of text/plain), measured in the same run, round by round. If a case costs c times an
ordinary mail at n, a linear parser costs about c times at 4n too; a quadratic one about 4c.

Reported per case: the cost relative to an ordinary mail at 4n (measured) and at n (floor), and
their quotient, the growth. Target: growth <= 1.5x (linear is 1.0x; quadratic 4.0x). The cost
relative to ordinary mail at 4n is in the note: capped work (the HTML converter reads at most
`MAX_HTML_TO_TEXT` characters) makes it shrink as the mail grows.

    .venv/bin/python -m bench.email_parsing           # about 1 minute on a 2-core VM
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from bench.common import Result, paired_ratio, print_table, ratio_result

NAME = "email_parsing"
N = 250_000
ROUNDS = 5
GROWTH_LIMIT = 1.5

_HEAD = "From: Ana <ana@customer.example>\r\nTo: support@mg.acme.example\r\nMessage-ID: <b1@customer.example>\r\n"


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


def _text_mail(body: str) -> bytes:
    return (_HEAD + "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def _html_mail(html: str) -> bytes:
    return (_HEAD + "Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html).encode()


def ordinary(size: int) -> bytes:
    """A plain-text mail of prose lines, with a short quoted history at the end."""
    line = "Hello, this is an ordinary line of a customer's message about order 1042.\r\n"
    history = "\r\nOn Wed, Dec 31, 2025 at 10:00 AM Acme <support@acme.example> wrote:\r\n> Your order shipped.\r\n"
    return _text_mail(_repeat(line, size - len(history)) + history)


#: name -> (what it is, size -> raw message). Each one was quadratic somewhere before.
CASES: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "attribution line": (
        'a body line "<a@a@a@…" (reply-attribution pattern)',
        lambda n: _text_mail("Hallo,\r\n<" + _repeat("a@", n) + "\r\n"),
    ),
    "header-block lines": (
        'lines "From: x" / "To: y" (Outlook header-block detection)',
        lambda n: _text_mail(_repeat("From: Frankfurt\r\nTo: New York\r\nAm Montag schrieb ich 1:\r\n", n)),
    ),
    "HTML links": (
        "HTML-only mail of ordinary links on one line (link-label bookkeeping)",
        lambda n: _html_mail("<p>" + _repeat("<a href='http://e.x/'>t</a> ", n) + "</p>"),
    ),
    "HTML declarations": (
        '"<!<!<!…" (the HTML parser\'s search for a missing ">")',
        lambda n: _html_mail(_repeat("<!", n)),
    ),
    "HTML comments": (
        '"<!--x><!--x>…" (the HTML parser\'s search for a missing "-->")',
        lambda n: _html_mail(_repeat("<!--x>", n)),
    ),
    "HTML nested quotes": (
        '"<blockquote>" nested n deep (a "> " per level on every line)',
        lambda n: _html_mail(_repeat("<blockquote>x<br>", n)),
    ),
    "MIME parameters": (
        "a Content-Type of RFC 2231 parameters (header registry / parameter splitter)",
        lambda n: (_HEAD + "Content-Type: text/plain; " + "; ".join(f"name*{i}*=utf-8''a" for i in range(n // 20))
                   + "\r\n\r\nx").encode(),
    ),
    "MIME open quote": (
        'a Content-Type with an unclosed quote before many ";" (parameter splitter)',
        lambda n: (_HEAD + 'Content-Type: multipart/mixed; boundary=z; x="' + _repeat(";a", n)
                   + "\r\n\r\n--z\r\n\r\nx\r\n--z--\r\n").encode(),
    ),
    "MIME empty parts": (
        "multipart/mixed of many empty parts (parsing and walking the tree)",
        lambda n: (_HEAD + "Content-Type: multipart/mixed; boundary=z\r\n\r\n"
                   + _repeat("--z\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n", n) + "--z--\r\n").encode(),
    ),
    "address header": (
        "a To: header of garbage (the standard library's address parser)",
        lambda n: (_HEAD.replace("To: support@mg.acme.example", "To: =?Sent: " + _repeat("<", n))
                   + "Content-Type: text/plain\r\n\r\nx").encode(),
    ),
}


def _cpu(func: Callable[[], object]) -> float:
    gc.collect()
    start = time.process_time()
    func()
    return time.process_time() - start


def measure(sizes: tuple[int, int] = (N, 4 * N), rounds: int = ROUNDS) -> dict[tuple[str, int], list[float]]:
    """CPU seconds per parse, one sample per round, every subject of a size interleaved."""
    from chalicelib.adapters.channels.email.mime import parse_email

    inputs = {("ordinary", size): ordinary(size) for size in sizes}
    inputs.update({(name, size): make(size) for name, (_, make) in CASES.items() for size in sizes})
    for raw in inputs.values():  # warm-up: imports, regex compilation, allocator
        parse_email(raw)
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in inputs}
    for _ in range(rounds):
        for key, raw in inputs.items():
            samples[key].append(_cpu(lambda raw=raw: parse_email(raw)))
    return samples


def run() -> list[Result]:
    small, large = N, 4 * N
    samples = measure((small, large))
    rows = []
    for name, (what, _) in CASES.items():
        at_small = paired_ratio(samples[(name, small)], samples[("ordinary", small)])
        at_large = paired_ratio(samples[(name, large)], samples[("ordinary", large)])
        rows.append(ratio_result(
            f"email parse, {name}: cost vs ordinary mail at {large // 1000} KB / at {small // 1000} KB",
            at_large, at_small, GROWTH_LIMIT, "x ordinary",
            note=f"{what}; {statistics.median(samples[(name, large)]):.3f} s CPU at {large // 1000} KB "
                 f"(ordinary mail {statistics.median(samples[('ordinary', large)]):.3f} s)",
        ))
    return rows


if __name__ == "__main__":
    results = run()
    for row in results:
        print(f"{row.benchmark}: {row.cells()[1]} (floor {row.cells()[2]}, {row.cells()[3]}, target {row.target}) "
              f"{row.cells()[5]}\n    {row.note}")
    print()
    print_table([r.cells() for r in results], ["benchmark", "measured", "floor", "ratio", "target", "met?"])
