"""DKIM verification (RFC 6376) of a raw message, with dkimpy (https://launchpad.net/dkimpy).

dkimpy does the canonicalization, hashing and RSA check; this module decides which signatures it
is asked to check, gives it our DNS port, and turns its answers into one `DkimResult` per
signature. Bad mail never raises: every signature gets a status and a short reason.

Algorithms (RFC 8301, RFC 8463):
- `rsa-sha256` is verified, with keys of 1024 to 8192 bits (RFC 8301 requires 1024-4096; the few
  8192-bit keys in use still verify quickly with a normal exponent).
- `rsa-sha1` is never a pass: RFC 8301 §3.1 says verifiers must not consider it valid. It is
  reported as `policy` without a DNS lookup.
- `ed25519-sha256` is reported as `permerror` ("unsupported"): dkimpy needs PyNaCl (libsodium,
  about 1 MB of native code in the Lambda zip) for it, and RFC 8463 senders sign with
  rsa-sha256 as well, so the RSA signature of the same mail proves the same domain.

Why the limits (`DkimLimits`): the message is customer-controlled and the signer's DNS is
attacker-controlled, so the work per message is capped, and mail past a cap is refused or the
signature is reported as `policy`, never silently passed:
- messages over 10 MiB are refused (`too_large`). Each signature re-canonicalizes the whole body
  (about 30 ms per MB relaxed, 150 ms per MB for a body of blank lines, dkimpy's worst linear
  case), and 10 MiB covers mail with a few ordinary attachments; bigger mail stays unverified.
- a header block over 256 KiB or 1000 fields is refused: dkimpy joins folded header lines one
  by one (quadratic in one header's length) and searches the fields once per signed name.
- at most 5 signatures are checked (real mail carries 1-3: author domain, ESP, list), with at
  most 20 MiB of body canonicalized in all; later signatures are not looked at (`skipped`).
- relaxed body canonicalization in dkimpy uses a regular expression that is quadratic in a run
  of spaces or tabs not followed by a line break (a 100 kB run takes 30 s). The runs are
  measured first in linear time; a body whose runs would cost more than about 0.5 s of
  regular-expression work gets `policy` for its relaxed-body signatures.
- signatures with `l=` (a body length limit) that leave part of the body unsigned are `policy`:
  the unsigned rest could be anybody's text under a proved From (RFC 6376 §8.2).
- a signature field over 8 KiB, or one naming more than 100 header fields, is `policy`.
- key records over 4 KiB, keys over 8192 bits or exponents over 64 bits are `policy` (the RSA
  check is a modular exponentiation whose cost the key's publisher chooses).
- key lookups stop after 4 s of DNS time per message (each lookup has its own ~2 s budget in
  the resolver): five signatures naming five silent DNS servers would otherwise hold a worker
  for 10 s. Signatures whose key was not fetched in time are `temperror`.

dkimpy is imported on first use (it imports dnspython with it), never at import time.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from chalicelib.adapters.email_auth.dns import TxtResolver
from chalicelib.adapters.email_auth.exceptions import DnsTemporaryFailureError, UnverifiableMessageError

__all__ = [
    "ACCEPTED_ALGORITHMS", "DEFAULT_LIMITS", "DkimLimits", "DkimResult", "DkimStatus", "DkimVerification",
    "DkimVerifier", "SignedMessage",
]

#: The only `a=` value that can pass (see the module docstring).
ACCEPTED_ALGORITHMS = frozenset({"rsa-sha256"})

MIB = 1024 * 1024
_MAX_REASON = 120


class DkimStatus(StrEnum):
    """RFC 8601 §2.7.1 result names for one signature."""

    PASS = "pass"
    #: The signature or body hash did not verify.
    FAIL = "fail"
    #: Verified or not, it is not acceptable here (rsa-sha1, partial l=, a work limit).
    POLICY = "policy"
    #: The key could not be fetched now (DNS timeout or SERVFAIL): may pass later.
    TEMPERROR = "temperror"
    #: Unusable as sent: malformed signature, no key or a revoked one, unsupported algorithm.
    PERMERROR = "permerror"


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature's outcome. `domain` is d= (lower case), `selector` is s=; both are
    None when the signature could not be parsed."""

    domain: str | None
    selector: str | None
    algorithm: str | None
    status: DkimStatus
    reason: str

    @property
    def passed(self) -> bool:
        return self.status is DkimStatus.PASS

    def as_metadata(self) -> dict[str, str | None]:
        return {"d": self.domain, "s": self.selector, "a": self.algorithm, "result": self.status.value,
                "reason": self.reason}


@dataclass(frozen=True)
class DkimLimits:
    """Caps on the work one message may cause (the module docstring says why each)."""

    max_message_bytes: int = 10 * MIB
    max_header_bytes: int = 256 * 1024
    max_header_fields: int = 1000
    max_signatures: int = 5
    max_signature_field: int = 8 * 1024
    max_signed_header_names: int = 100
    max_canonicalized_bytes: int = 20 * MIB
    #: Estimated steps of dkimpy's trailing-whitespace regular expression (about 5 ns each).
    max_whitespace_steps: int = 100_000_000
    max_key_record: int = 4096
    min_key_bits: int = 1024
    max_key_bits: int = 8192
    max_exponent_bits: int = 64
    #: Seconds of key lookups per message; later lookups are temperror without a query.
    max_dns_seconds: float = 4.0


DEFAULT_LIMITS = DkimLimits()


@dataclass(frozen=True)
class DkimVerification:
    """Every checked signature's result, in header order. `refused` is `too_large` or
    `malformed` when the message was not looked at; `skipped` counts signatures past the cap."""

    results: tuple[DkimResult, ...]
    refused: str | None = None
    skipped: int = 0


@functools.cache
def _dkimpy():
    import dkim
    import dkim.canonicalization
    import dkim.util

    return dkim


@functools.cache
def _quiet_logger() -> logging.Logger:
    """dkimpy logs every missing key at ERROR with the signer's domain; our result carries the
    reason, so its logger is an unregistered one that drops everything."""
    logger = logging.Logger("email_auth.dkimpy", level=logging.CRITICAL + 1)
    logger.addHandler(logging.NullHandler())
    return logger


_HEADER_END = re.compile(rb"\n\r?\n")
#: Runs of 16+ spaces/tabs and whether CRLF follows. Shorter runs cost dkimpy at most a few
#: steps a byte, like the rest of its canonicalization, so they are not counted.
_LONG_WHITESPACE = re.compile(rb"[\t ]{16,}(\r\n)?")


class SignedMessage:
    """A raw message split once, exactly the way dkimpy splits it (`dkim.DKIM(raw)`), so that
    the From header the verifier reads is the one the signatures covered: two parsers that
    disagree about where a header starts are how DKIM checks get fooled.

    Raises `UnverifiableMessageError` (`too_large`, `malformed`) for a message it will not read.
    """

    def __init__(self, raw: bytes, limits: DkimLimits = DEFAULT_LIMITS) -> None:
        if isinstance(raw, (bytearray, memoryview)):
            raw = bytes(raw)
        if not isinstance(raw, bytes) or not raw.strip():
            raise UnverifiableMessageError("not a message", reason="malformed")
        if len(raw) > limits.max_message_bytes:
            raise UnverifiableMessageError(f"message over {limits.max_message_bytes} bytes", reason="too_large")
        end = 0 if raw[:1] == b"\n" or raw[:2] == b"\r\n" else None
        if end is None:
            match = _HEADER_END.search(raw)
            end = match.start() if match else len(raw)
        if end > limits.max_header_bytes:
            raise UnverifiableMessageError(f"header block over {limits.max_header_bytes} bytes", reason="too_large")
        dkim = _dkimpy()
        try:
            self._signer = dkim.DKIM(raw, logger=_quiet_logger(), minkey=limits.min_key_bits)
        except Exception as exc:  # noqa: BLE001 - dkimpy's parser on hostile bytes: refuse, never crash
            raise UnverifiableMessageError(f"unparseable header block ({type(exc).__name__})", reason="malformed") from None
        if len(self._signer.headers) > limits.max_header_fields:
            raise UnverifiableMessageError(f"over {limits.max_header_fields} header fields", reason="too_large")
        if not self._signer.headers:
            raise UnverifiableMessageError("no header fields", reason="malformed")
        self.limits = limits
        self._whitespace_steps: int | None = None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """(name, raw value) pairs in message order; values keep their folding and CRLF."""
        return [(bytes(name), bytes(value)) for name, value in self._signer.headers]

    def header_values(self, name: str) -> list[bytes]:
        wanted = name.lower().encode("ascii")
        return [bytes(value) for key, value in self._signer.headers if key.lower() == wanted]

    @property
    def body_size(self) -> int:
        return len(self._signer.body)

    def verify_signature(self, index: int, dnsfunc) -> bool:
        """dkimpy's check of the index-th DKIM-Signature (0 is the topmost); raises what dkimpy
        and `dnsfunc` raise."""
        return self._signer.verify(idx=index, dnsfunc=dnsfunc)

    def canonical_body_length(self, c_value: bytes) -> int:
        policy = _dkimpy().canonicalization.CanonicalizationPolicy.from_c_value(c_value)
        return len(policy.canonicalize_body(self._signer.body))

    def whitespace_steps(self) -> int:
        """An upper estimate of the steps dkimpy's `[\\t ]+\\r\\n` substitution takes on this body:
        about L*L/2 for each run of L blanks not followed by CRLF."""
        if self._whitespace_steps is None:
            steps = 0
            for match in _LONG_WHITESPACE.finditer(self._signer.body):
                if match.group(1) is None:
                    length = match.end() - match.start()
                    steps += length * length // 2
            self._whitespace_steps = steps
        return self._whitespace_steps


class _KeyRefusedError(Exception):
    """A key this verifier will not use (size, exponent, record length); aborts dkimpy's check."""


class _KeyLookup:
    """dkimpy's `dnsfunc(name, timeout)`, backed by our `TxtResolver`.

    It returns the one key record or None, notes why a key is unusable (dkimpy only answers
    False), and lets `DnsTemporaryFailureError` through dkimpy (which catches only its own
    errors), so a DNS timeout stays a temperror instead of a failed signature.
    """

    def __init__(self, resolver: TxtResolver, limits: DkimLimits, dns: _DnsSpent) -> None:
        self.resolver = resolver
        self.limits = limits
        self.dns = dns
        self.problem: str | None = None

    def __call__(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        dkim = _dkimpy()
        qname = name.decode("ascii", "replace").rstrip(".").lower()
        if qname in self.dns.failed:  # one timeout per name per message, not one per signature
            raise DnsTemporaryFailureError(f"DNS timeout for {qname} TXT")
        if self.dns.clock() > self.dns.deadline:
            raise DnsTemporaryFailureError(f"DNS time for this message spent before {qname} TXT")
        try:
            records = self.resolver.txt(qname)
        except DnsTemporaryFailureError:
            self.dns.failed.add(qname)
            raise
        record = self._key_record(records)
        if record is None:
            self.problem = f"no key at {qname}"[:_MAX_REASON]
            return None
        if len(record) > self.limits.max_key_record:
            raise _KeyRefusedError(f"key record over {self.limits.max_key_record} bytes")
        tags = dkim.util.parse_tag_value(record)
        if not tags.get(b"p", b"").strip():
            self.problem = "key revoked (empty p=)"
            return None
        try:
            key, bits, key_type, _ = dkim.evaluate_pk(name, record)
        except Exception as exc:  # noqa: BLE001 - KeyFormatError, binascii.Error on bad base64, ...
            self.problem = f"unusable key: {exc}"[:_MAX_REASON]
            return None
        if key_type != b"rsa":
            self.problem = f"key type {key_type.decode('ascii', 'replace')} does not match a=rsa-sha256"
            return None
        if bits < self.limits.min_key_bits:
            raise _KeyRefusedError(f"key too small ({bits} bits, RFC 8301 requires 1024)")
        if bits > self.limits.max_key_bits or key["publicExponent"].bit_length() > self.limits.max_exponent_bits:
            raise _KeyRefusedError(f"key too large ({bits} bits) or unusual exponent")
        return record

    @staticmethod
    def _key_record(records: Sequence[str]) -> bytes | None:
        """The first record that parses as a tag list with p= (RFC 6376 §3.6.2.2 leaves
        several records undefined; other TXT data at the selector is ignored)."""
        dkim = _dkimpy()
        for text in records:
            raw = text.encode("utf-8", "replace")
            try:
                tags = dkim.util.parse_tag_value(raw)
            except Exception:  # noqa: BLE001 - InvalidTagValueList and friends: not a key record
                continue
            if b"p" in tags:
                return raw
        return None


class DkimVerifier:
    """Verifies every DKIM-Signature of a message with dkimpy and our DNS port.

    `verify(raw)` never raises for bad mail; `DnsTemporaryFailureError` is reported as a
    `temperror` result, not raised.
    """

    def __init__(
        self, resolver: TxtResolver, *, limits: DkimLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.resolver = resolver
        self.limits = limits
        self.clock = clock

    def parse(self, raw: bytes) -> SignedMessage:
        """Raises `UnverifiableMessageError` (`too_large`, `malformed`)."""
        return SignedMessage(raw, self.limits)

    def verify(self, raw: bytes) -> DkimVerification:
        try:
            message = self.parse(raw)
        except UnverifiableMessageError as exc:
            return DkimVerification((), refused=exc.reason)
        return self.verify_message(message)

    def verify_message(self, message: SignedMessage) -> DkimVerification:
        signatures = message.header_values("DKIM-Signature")
        checked = signatures[: self.limits.max_signatures]
        budget = _Budget(self.limits)
        dns = _DnsSpent(self.clock, self.clock() + self.limits.max_dns_seconds)
        results = tuple(self._verify_one(message, index, value, budget, dns) for index, value in enumerate(checked))
        return DkimVerification(results, skipped=len(signatures) - len(checked))

    def _verify_one(
        self, message: SignedMessage, index: int, value: bytes, budget: _Budget, dns: _DnsSpent
    ) -> DkimResult:
        dkim = _dkimpy()
        if len(value) > self.limits.max_signature_field:
            return DkimResult(None, None, None, DkimStatus.POLICY, "signature field too long")
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:  # noqa: BLE001 - InvalidTagValueList and friends
            return DkimResult(None, None, None, DkimStatus.PERMERROR, "malformed signature (tag list)")
        domain = _text(tags.get(b"d"))
        domain = domain.lower().rstrip(".") if domain else None
        selector = _text(tags.get(b"s"))
        algorithm = _text(tags.get(b"a"))

        def result(status: DkimStatus, reason: str) -> DkimResult:
            return DkimResult(domain, selector, algorithm, status, reason[:_MAX_REASON])

        if not domain or not selector or not algorithm:
            return result(DkimStatus.PERMERROR, "malformed signature (missing d=, s= or a=)")
        if algorithm == "rsa-sha1":
            return result(DkimStatus.POLICY, "rsa-sha1 is not accepted (RFC 8301)")
        if algorithm not in ACCEPTED_ALGORITHMS:
            return result(DkimStatus.PERMERROR, f"unsupported algorithm {algorithm}")
        signed = [name.lower() for name in re.split(rb"\s*:\s*", tags.get(b"h", b"").strip()) if name]
        if len(signed) > self.limits.max_signed_header_names:
            return result(DkimStatus.POLICY, f"more than {self.limits.max_signed_header_names} signed header names")
        if b"from" not in signed:
            return result(DkimStatus.PERMERROR, "From is not signed (RFC 6376 §6.1.1)")
        _, _, body_method = tags.get(b"c", b"simple").partition(b"/")
        body_method = body_method.strip().lower() or b"simple"
        refusal = budget.charge(message, relaxed=body_method == b"relaxed", length_check=b"l" in tags)
        if refusal:
            return result(DkimStatus.POLICY, refusal)

        keys = _KeyLookup(self.resolver, self.limits, dns)
        try:
            verified = message.verify_signature(index, keys)
        except DnsTemporaryFailureError:
            return result(DkimStatus.TEMPERROR, "DNS temporary failure fetching the key")
        except _KeyRefusedError as exc:
            return result(DkimStatus.POLICY, str(exc))
        except dkim.ValidationError as exc:
            text = str(exc)
            if text.startswith("body hash mismatch"):
                return result(DkimStatus.FAIL, "body hash mismatch")
            if text.startswith("x= value is past"):
                return result(DkimStatus.FAIL, "signature expired (x=)")
            return result(DkimStatus.PERMERROR, f"invalid signature: {text}")
        except dkim.DKIMException as exc:
            return result(DkimStatus.PERMERROR, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - dkimpy on hostile input: a result, never a crash
            return result(DkimStatus.PERMERROR, f"verifier error ({type(exc).__name__})")
        if not verified:
            if keys.problem:
                return result(DkimStatus.PERMERROR, keys.problem)
            return result(DkimStatus.FAIL, "signature did not verify")
        if b"l" in tags and int(tags[b"l"]) < message.canonical_body_length(tags.get(b"c", b"simple/simple")):
            return result(DkimStatus.POLICY, "l= leaves part of the body unsigned")
        return result(DkimStatus.PASS, "signature verified")


@dataclass
class _DnsSpent:
    """Key lookups of one message: names that timed out, and when lookups must stop."""

    clock: Callable[[], float]
    deadline: float
    failed: set[str] = field(default_factory=set)


@dataclass
class _Budget:
    """The canonicalization work left for one message's signatures."""

    limits: DkimLimits
    body_bytes: int = 0
    whitespace_steps: int = 0

    def charge(self, message: SignedMessage, *, relaxed: bool, length_check: bool) -> str | None:
        """None when the signature may be checked (its work is then counted), or why not."""
        body = message.body_size * (2 if length_check else 1)
        steps = message.whitespace_steps() * (2 if length_check else 1) if relaxed else 0
        if self.body_bytes + body > self.limits.max_canonicalized_bytes:
            return "work limit: body too large to check another signature"
        if self.whitespace_steps + steps > self.limits.max_whitespace_steps:
            return "work limit: long runs of blanks make relaxed canonicalization too costly"
        self.body_bytes += body
        self.whitespace_steps += steps
        return None


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return re.sub(r"\s+", "", value.decode("ascii", "replace"))[:255] or None
