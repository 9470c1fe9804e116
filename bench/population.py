"""A seeded synthetic population with ground truth, for the identity-resolution benchmark.

People write to the hub over 2-4 channels (Twilio SMS, Twilio WhatsApp, WhatsApp Cloud API via
Meta, the web chat on two sites) in conversations that span minutes to days. Every request is
signed exactly as the provider (or the site's backend, for web chat identity claims) would sign
it, so it can go through the real webhook route.

The noise is the kind that breaks identity resolution in practice:

- phone numbers of several countries (DE, US, GB, BR, FR) written differently per message:
  `+49 151 …`, `0151 …` (national, only for the configured default region), `0049 …`,
  `+44 (0)7700 …`, `whatsapp:+49…` (Twilio), bare `wa_id` digits (Meta);
- Brazilian WhatsApp accounts whose `wa_id` lacks the mobile ninth digit (WhatsApp sends the
  eight-digit form for many accounts registered before the digit was added, 2012-2016), so it is
  not the number the person texts from;
- WhatsApp users known only by their business-scoped user id (BSUID, a username instead of a
  visible number);
- email addresses in varied case, padded with spaces, or with a display name;
- web chat visitors on one or two devices who sometimes log in (a `user_hash`-signed claim:
  `external_id` on the shop, the email address, or the phone on the help site) and sometimes type
  an email address without proof, now and then somebody else's;
- shared family numbers: several people write from one number (SMS and WhatsApp), and the number
  is on `identity.blocked`;
- many people share a first name (display names must never link);
- provider retries: the same signed request delivered again minutes later.

Ground truth never asks the hub's normalizer: each identifier a message carries is recorded as
the generator knows it (`TruthId.key`, the canonical form of what the person meant), with whether
the identity rules may use it to link (verified, not blocked). `bench/identity_accuracy.py` turns
that into linkable pairs and expected cases.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from chalicelib.adapters.channels.meta import adapter as meta
from chalicelib.adapters.channels.twilio import adapter as twilio
from chalicelib.adapters.channels.webchat import adapter as webchat
from chalicelib.domain.policies import DEFAULT_BLOCKED

# --- what the hub is configured with; the requests are signed with these -------------------------

TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"
TWILIO_URL = "https://hub.example.com/webhooks/twilio"
META_SECRET = "bench-meta-app-secret"
SITE_SECRETS = {"shop": "bench-shop-identity-secret", "help": "bench-help-identity-secret"}
DEFAULT_REGION = "DE"
WINDOW_HOURS = 72.0
AUTO_CLOSE_HOURS = 168.0

OUR_SMS_NUMBER = "+14155550100"
OUR_WHATSAPP_NUMBER = "whatsapp:+14155550199"
META_PHONE_NUMBER_ID = "106540352242922"

#: The simulated calendar starts here; a population's traffic spans `DAYS` days.
START = datetime(2026, 9, 7, 8, 0, tzinfo=timezone.utc)
DAYS = 28

# --- the people --------------------------------------------------------------------------------

#: A small pool on purpose: with 1,000 people, every first name is shared by dozens.
FIRST_NAMES = (
    "Anna", "Maria", "Lena", "Sofia", "Emma", "Mia", "Laura", "Julia", "Sarah", "Olivia", "Ana", "Chloe",
    "Lukas", "Paul", "Jonas", "Leon", "Max", "David", "Daniel", "James", "John", "Pedro", "Lucas", "Thomas",
)
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hartmann",
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clark",
    "Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa", "Martin", "Bernard", "Dubois", "Moreau",
    "Evans", "Walker", "Wright", "Green", "Hall", "Wood", "Jackson", "White", "Harris", "Lewis",
)
EMAIL_DOMAINS = ("gmail.com", "web.de", "gmx.de", "outlook.com", "yahoo.com", "icloud.com", "t-online.de",
                 "hotmail.co.uk", "uol.com.br", "orange.fr")
TEXTS = ("Hallo, wo bleibt meine Bestellung?", "Can I change my delivery address?", "Danke!",
         "The parcel arrived damaged.", "Olá, preciso de ajuda com o pedido.", "Any update?",
         "Ich möchte die Rechnung noch einmal.", "Bonjour, ma commande n'est pas arrivée.", "ok", "👍")

COUNTRIES = (("DE", 0.45), ("US", 0.18), ("GB", 0.14), ("BR", 0.13), ("FR", 0.10))
_DE_MOBILE = (("151", 8), ("152", 8), ("157", 8), ("159", 8), ("160", 7), ("162", 7), ("170", 7), ("171", 7),
              ("172", 7), ("175", 7), ("176", 8), ("177", 8), ("178", 8), ("179", 8))
_US_AREAS = ("212", "310", "415", "512", "617", "646", "702", "773", "206", "303")
_BR_AREAS = ("11", "21", "31", "41", "51", "61", "71", "81", "85", "92")

CHANNELS = ("sms", "wa_twilio", "wa_meta", "webchat")


@dataclass(frozen=True)
class Phone:
    country: str
    e164: str
    #: National significant number split for writing it out: (area or prefix, subscriber).
    prefix: str
    rest: str


@dataclass
class WhatsAppAccount:
    """One WhatsApp account: the number it runs on, its BSUID, and what `wa_id` WhatsApp sends."""

    phone: Phone
    bsuid: str
    #: The digits WhatsApp sends as `wa_id` / Twilio's `whatsapp:+…`; None for a username user.
    wa_id: str | None
    legacy_br: bool = False


@dataclass
class Family:
    id: int
    phone: Phone
    whatsapp: WhatsAppAccount
    members: list[int] = field(default_factory=list)


@dataclass
class Person:
    id: int
    first: str
    last: str
    country: str
    phone: Phone | None
    whatsapp: WhatsAppAccount | None
    emails: list[str]
    external_id: str | None
    channels: tuple[str, ...]
    #: Web chat sites this person uses, each with 1-2 devices (visitor ids).
    visitors: dict[str, list[str]]
    family: Family | None = None
    #: Share of phone messages sent from the family number when the person has an own phone too.
    family_share: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


# --- the traffic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthId:
    """One identifier a message carries, as the generator knows it."""

    #: Canonical `kind:value` / `kind:scope/value` of what the person meant (never the hub's
    #: normalization of what was written).
    key: str
    #: The identity rules may link with it: verified, not blocked, a linking kind.
    linkable: bool
    #: Why not, when not linkable: blocked, unverified.
    why: str = ""
    #: Several people share it (a family's number or WhatsApp account).
    shared: bool = False

    @property
    def kind(self) -> str:
        return self.key.partition(":")[0]


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Message:
    seq: int
    at: datetime
    person: int
    provider: str
    channel: str
    #: The provider message id exactly as the hub's contact records it.
    provider_message_id: str
    ids: tuple[TruthId, ...]
    request: Request
    #: The web chat session's thread key (site, visitor, session), when the widget sent one.
    thread_key: str | None = None
    #: The seq of the message this is a provider retry of (same request bytes); not a new contact.
    duplicate_of: int | None = None
    #: Labels of the noise this message carries, for diagnosis.
    noise: tuple[str, ...] = ()
    #: The sender handles exactly as written in the request, for diagnosis.
    written: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.provider, self.provider_message_id


@dataclass
class Population:
    people: list[Person]
    families: list[Family]
    messages: list[Message]

    @property
    def contacts(self) -> list[Message]:
        """The messages that must become contacts (retries excluded), in arrival order."""
        return [m for m in self.messages if m.duplicate_of is None]

    def blocked(self) -> list[str]:
        return [*DEFAULT_BLOCKED, *(f"phone:{f.phone.e164}" for f in self.families)]

    def config_yaml(self) -> str:
        """The hub configuration the traffic is signed for, with the families' numbers blocked."""
        blocked = "\n".join(f"    - {json.dumps(p)}" for p in self.blocked())
        return f"""
identity:
  default_region: {DEFAULT_REGION}
  blocked:
{blocked}
cases:
  window_hours: {WINDOW_HOURS:g}
  auto_close_after_hours: {AUTO_CLOSE_HOURS:g}
channels:
  twilio:
    auth_tokens: [{json.dumps(TWILIO_TOKEN)}]
    public_url: {TWILIO_URL}
  meta:
    app_secrets: [{json.dumps(META_SECRET)}]
    verify_tokens: ["bench-meta-verify-token"]
  webchat:
    sites:
      - {{id: shop, identity_secrets: [{json.dumps(SITE_SECRETS["shop"])}]}}
      - {{id: help, identity_secrets: [{json.dumps(SITE_SECRETS["help"])}]}}
destinations:
  - {{name: outbox, type: outbox, path: outbox.jsonl}}
"""


class Generator:
    """Deterministic for a seed: the same seed gives byte-identical requests.

    One generator hands out every number, address and id it makes exactly once, so people made by
    later calls (the sample and bulk people of the cost measurement) never collide with earlier ones.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._used: set[str] = set()
        self._people = 0
        self._families: list[Family] = []
        self._seq = 0

    # --- people ----------------------------------------------------------------------------------

    def people(self, n: int, *, families: bool = True) -> list[Person]:
        made = [self._person() for _ in range(n)]
        if families:
            self._group_families(made)
        return made

    def _person(self) -> Person:
        rng = self.rng
        pid = self._people
        self._people += 1
        country = _weighted(rng, COUNTRIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        phone = self._phone(country)
        emails = []
        if rng.random() < 0.8:
            emails.append(self._email(first, last))
            if rng.random() < 0.15:
                emails.append(self._email(first, last))
        external_id = self._unique(lambda: f"cust-{rng.randrange(10**7):07d}") if rng.random() < 0.35 else None
        channels = tuple(sorted(rng.sample(CHANNELS, rng.choice((2, 2, 3, 3, 4))), key=CHANNELS.index))
        visitors: dict[str, list[str]] = {}
        if "webchat" in channels:
            sites = ["shop"] if external_id else ["help"]
            if rng.random() < 0.25:
                sites = ["shop", "help"]
            for site in sites:
                devices = 2 if rng.random() < 0.25 else 1
                visitors[site] = [self._unique(lambda: "v-" + _hex(rng, 16)) for _ in range(devices)]
        return Person(pid, first, last, country, phone, self._whatsapp(phone), emails, external_id, channels, visitors)

    def _group_families(self, people: list[Person]) -> None:
        """About 7 % of people live in families of 2-4 who share one number, blocked in the config.
        A third of the members have no phone of their own and always use the family's."""
        rng = self.rng
        pool = [p for p in people if rng.random() < 0.07]
        by_country: dict[str, list[Person]] = {}
        for person in pool:
            by_country.setdefault(person.country, []).append(person)
        for members in by_country.values():
            while len(members) >= 2:
                size = min(len(members), rng.choice((2, 3, 4)))
                group, members = members[:size], members[size:]
                phone = self._phone(group[0].country)
                account = WhatsAppAccount(phone, self._bsuid(phone.country), phone.e164.lstrip("+"))
                family = Family(len(self._families), phone, account, [p.id for p in group])
                self._families.append(family)
                for person in group:
                    person.family = family
                    if rng.random() < 1 / 3:
                        person.phone, person.whatsapp, person.family_share = None, None, 1.0
                    else:
                        person.family_share = 0.3
                    if not any(c in person.channels for c in ("sms", "wa_twilio", "wa_meta")):
                        person.channels = ("sms", *person.channels)

    def _phone(self, country: str) -> Phone:
        rng = self.rng

        def make() -> Phone:
            digits = lambda k: "".join(rng.choice(string.digits) for _ in range(k))  # noqa: E731
            if country == "DE":
                prefix, length = rng.choice(_DE_MOBILE)
                rest = digits(length)
                return Phone(country, f"+49{prefix}{rest}", prefix, rest)
            if country == "US":
                area = rng.choice(_US_AREAS)
                exchange = str(rng.randrange(2, 10)) + digits(1) + str(rng.randrange(2, 10))
                rest = exchange + digits(4)
                return Phone(country, f"+1{area}{rest}", area, rest)
            if country == "GB":
                prefix = "7" + rng.choice("45789") + digits(2)
                rest = digits(6)
                return Phone(country, f"+44{prefix}{rest}", prefix, rest)
            if country == "BR":
                area = rng.choice(_BR_AREAS)
                rest = "9" + str(rng.randrange(6, 10)) + digits(7)
                return Phone(country, f"+55{area}{rest}", area, rest)
            prefix = rng.choice("67")
            rest = digits(8)
            return Phone(country, f"+33{prefix}{rest}", prefix, rest)

        return self._unique(make, key=lambda p: p.e164)

    def _whatsapp(self, phone: Phone) -> WhatsAppAccount:
        rng = self.rng
        bsuid = self._bsuid(phone.country)
        if rng.random() < 0.1:  # a username user: WhatsApp hides the number, only the BSUID is sent
            return WhatsAppAccount(phone, bsuid, None)
        if phone.country == "BR" and rng.random() < 0.5:
            # Many accounts older than Brazil's ninth digit keep the eight-digit form as their wa_id;
            # Twilio passes WhatsApp's id on, so its `whatsapp:+…` sender has the same form (assumed).
            legacy = "55" + phone.prefix + phone.rest[1:]
            self._used.add("+" + legacy)
            return WhatsAppAccount(phone, bsuid, legacy, legacy_br=True)
        return WhatsAppAccount(phone, bsuid, phone.e164.lstrip("+"))

    def _bsuid(self, country: str) -> str:
        return self._unique(lambda: f"{country}.{self.rng.randrange(10**19, 10**20)}")

    def _email(self, first: str, last: str) -> str:
        rng = self.rng
        f, la = _ascii(first), _ascii(last)

        def make() -> str:
            local = rng.choice((f"{f}.{la}", f"{f[0]}{la}", f"{f}{la}{rng.randrange(10, 99)}",
                                f"{f}.{la}{rng.randrange(1, 9)}"))
            return f"{local}@{rng.choice(EMAIL_DOMAINS)}"

        return self._unique(make)

    def _unique(self, make, key=lambda value: value):
        for _ in range(1000):
            value = make()
            if key(value) not in self._used:
                self._used.add(key(value))
                return value
        raise RuntimeError("the generator ran out of unique values")

    # --- traffic ---------------------------------------------------------------------------------

    def traffic(self, people: list[Person], *, start: datetime = START, days: float = DAYS,
                everyone: list[Person] | None = None) -> Population:
        """1-3 conversations per person at random times, 1-4 messages each, in arrival order.

        `everyone` is who a typed (unverified) email address may belong to by mistake.
        """
        rng = self.rng
        everyone = everyone or people
        messages: list[Message] = []
        for person in people:
            sessions: dict[tuple[str, str], str] = {}
            for _ in range(rng.choice((1, 1, 2, 2, 2, 3))):
                at = start + timedelta(seconds=rng.uniform(0, days * 86400))
                messages.extend(self._conversation(person, at, sessions, everyone))
        messages.sort(key=lambda m: (m.at, m.seq))
        retries = [self._retry(m) for m in messages if rng.random() < 0.02]
        messages = sorted([*messages, *retries], key=lambda m: (m.at, m.seq))
        families = [f for f in self._families if any(p.family is f for p in people)]
        return Population(people, families, messages)

    def _conversation(self, person: Person, at: datetime, sessions: dict, everyone: list[Person]) -> list[Message]:
        rng = self.rng
        out = []
        channel = rng.choice(person.channels)
        site = device = session = None
        for index in range(rng.choice((1, 2, 2, 3, 3, 4))):
            if index:
                at += _gap(rng)
                if rng.random() < 0.4:
                    channel = rng.choice(person.channels)
            if channel == "webchat":
                if site is None:
                    site = rng.choice(sorted(person.visitors))
                    device = rng.choice(person.visitors[site])
                    previous = sessions.get((site, device))
                    # The widget keeps its session across days now and then: same case, whatever the gap.
                    session = previous if previous and rng.random() < 0.3 else "s-" + _hex(rng, 12)
                    sessions[(site, device)] = session
                    login = self._login(person, site, everyone)
                out.append(self._webchat(person, at, site, device, session, login))
            else:
                out.append(self._phone_message(person, at, channel))
        return out

    def _retry(self, message: Message) -> Message:
        return Message(
            self._next_seq(), message.at + timedelta(seconds=self.rng.uniform(20, 600)), message.person,
            message.provider, message.channel, message.provider_message_id, message.ids, message.request,
            message.thread_key, duplicate_of=message.seq, noise=("provider_retry",), written=message.written,
        )

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- phone channels ----------------------------------------------------------------------------

    def _phone_message(self, person: Person, at: datetime, channel: str) -> Message:
        rng = self.rng
        family = person.family is not None and rng.random() < person.family_share
        account = person.family.whatsapp if family else person.whatsapp
        phone = account.phone
        noise = ["family_number"] if family else []
        blocked = dict(linkable=False, why="blocked", shared=True) if family else dict(linkable=True)
        display = self._display_name(person)
        if channel == "wa_meta":
            return self._meta(person, at, account, display, noise, family)
        if channel == "wa_twilio":
            if account.wa_id is None:  # assumed: Twilio still shows a username user by their number
                sender = "whatsapp:" + phone.e164
                truth = TruthId(f"phone:{phone.e164}", **blocked)
            else:
                sender = "whatsapp:+" + account.wa_id
                # A legacy Brazilian id is the same mobile: the hub canonicalizes it with its 9.
                truth = TruthId(f"phone:{phone.e164}", **blocked)
                if account.legacy_br:
                    noise.append("br_legacy_wa_id")
            params = {"MessageSid": "SM" + _hex(rng, 32), "AccountSid": "AC" + "0" * 32, "From": sender,
                      "To": OUR_WHATSAPP_NUMBER, "Body": rng.choice(TEXTS), "NumMedia": "0", "NumSegments": "1",
                      "SmsStatus": "received", "ApiVersion": "2010-04-01", "ProfileName": display,
                      "WaId": sender.removeprefix("whatsapp:+"), "MessageType": "text"}
            return self._twilio(person, at, "whatsapp", params, (truth,), noise)
        params = {"MessageSid": "SM" + _hex(rng, 32), "AccountSid": "AC" + "0" * 32, "From": phone.e164,
                  "To": OUR_SMS_NUMBER, "Body": rng.choice(TEXTS), "NumMedia": "0", "NumSegments": "1",
                  "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        return self._twilio(person, at, "sms", params, (TruthId(f"phone:{phone.e164}", **blocked),), noise)

    def _twilio(self, person: Person, at: datetime, channel: str, params: dict, ids, noise) -> Message:
        signature = twilio.compute_signature(TWILIO_URL, params, TWILIO_TOKEN)
        request = Request("/webhooks/twilio", urlencode(params).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        return Message(self._next_seq(), at, person.id, "twilio", channel, params["MessageSid"], tuple(ids), request,
                       noise=tuple(noise), written=(f"From={params['From']}",))

    def _meta(self, person: Person, at: datetime, account: WhatsAppAccount, display: str, noise: list,
              family: bool) -> Message:
        rng = self.rng
        message_id = "wamid." + _hex(rng, 40)
        contact: dict = {"profile": {"name": display}, "user_id": account.bsuid}
        item: dict = {"from_user_id": account.bsuid, "id": message_id, "timestamp": str(int(at.timestamp())),
                      "type": "text", "text": {"body": rng.choice(TEXTS)}}
        # The WhatsApp account of a blocked (family) number is shared too: the rules hold it back.
        ids = [TruthId(f"whatsapp_user:{account.bsuid}", linkable=not family, why="blocked" if family else "",
                       shared=family)]
        written = [f"from_user_id={account.bsuid}"]
        if account.wa_id is None:
            contact["profile"]["username"] = "@" + _ascii(person.first) + str(person.id)
            noise.append("bsuid_only")
        else:
            contact["wa_id"] = item["from"] = account.wa_id
            ids.append(TruthId(f"phone:{account.phone.e164}", linkable=not family, why="blocked" if family else "",
                               shared=family))
            written.append(f"from={account.wa_id}")
            if account.legacy_br:
                noise.append("br_legacy_wa_id")
        if family:
            noise.append("family_whatsapp_account")
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550783881", "phone_number_id": META_PHONE_NUMBER_ID},
                      "contacts": [contact], "messages": [item]}}]}]}
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = Request("/webhooks/meta", body, {"Content-Type": "application/json",
                                                   "X-Hub-Signature-256": meta.compute_signature(META_SECRET, body)})
        return Message(self._next_seq(), at, person.id, "meta", "whatsapp", message_id, tuple(ids), request,
                       noise=tuple(noise), written=tuple(written))

    # --- web chat ----------------------------------------------------------------------------------

    def _login(self, person: Person, site: str, everyone: list[Person]) -> dict:
        """The identity the widget sends for one session: signed login, typed claims, or nothing."""
        rng = self.rng
        contact_phone = person.phone or (person.family.phone if person.family else None)
        if site == "shop" and person.external_id and rng.random() < 0.6:
            identity = {"external_id": person.external_id, "name": person.name}
            if person.emails:
                identity["email"] = self._email_variant(rng.choice(person.emails), person)
            return {"identity": identity, "signed": "external_id"}
        if site == "help" and rng.random() < 0.55:
            if person.emails:
                identity = {"email": self._email_variant(rng.choice(person.emails), person), "name": person.name}
                if contact_phone and rng.random() < 0.3:
                    identity["phone"] = self._phone_variant(contact_phone)
                return {"identity": identity, "signed": "email"}
            if contact_phone:
                return {"identity": {"phone": self._phone_variant(contact_phone), "name": person.first},
                        "signed": "phone"}
        if rng.random() < 0.3:
            owner = person if rng.random() < 0.9 else rng.choice(everyone)  # a typo'd or borrowed address
            identity = {"name": person.first}
            if owner.emails:
                identity["email"] = self._email_variant(owner.emails[0], owner)
            return {"identity": identity, "signed": None, "typed_by_other": owner is not person}
        return {"identity": None, "signed": None}

    def _webchat(self, person: Person, at: datetime, site: str, visitor: str, session: str, login: dict) -> Message:
        rng = self.rng
        message_id = "m-" + _hex(rng, 16)
        body: dict = {"site_id": site, "visitor_id": visitor, "message_id": message_id, "session_id": session,
                      "text": rng.choice(TEXTS)}
        ids = [TruthId(f"webchat:{site}/{visitor}", linkable=True)]
        written = [f"visitor_id={visitor}"]
        noise = []
        identity = login["identity"]
        if identity is not None:
            body["identity"] = identity
            signed = login["signed"]
            if signed is not None:
                body["user_hash"] = webchat.user_hash(SITE_SECRETS[site], identity[signed])
            for claim in ("external_id", "email", "phone"):
                if claim not in identity:
                    continue
                written.append(f"identity.{claim}={identity[claim]!r}" + (" (signed)" if claim == signed else ""))
                verified = claim == signed
                if claim == "external_id":
                    key = f"external:{identity[claim]}"
                    blocked = False
                elif claim == "email":
                    key = f"email:{_canonical_email(identity[claim])}"
                    blocked = False
                else:
                    phone = self._meant_phone(person)
                    key = f"phone:{phone.e164}"
                    blocked = person.family is not None and phone is person.family.phone
                why = "blocked" if blocked else ("" if verified else "unverified")
                ids.append(TruthId(key, linkable=verified and not blocked, why=why, shared=blocked))
            if login.get("typed_by_other"):
                noise.append("typed_email_of_someone_else")
            noise.append(f"login:{signed}" if signed else "typed_claims")
        raw = json.dumps(body).encode()
        return Message(self._next_seq(), at, person.id, "webchat", "webchat", f"{site}/{visitor}/{message_id}",
                       tuple(ids), Request("/webhooks/webchat", raw, {"Content-Type": "application/json"}),
                       thread_key=f"webchat:{site}:{visitor}:{session}", noise=tuple(noise), written=tuple(written))

    @staticmethod
    def _meant_phone(person: Person) -> Phone:
        return person.phone or person.family.phone

    # --- how people write things -----------------------------------------------------------------

    def _display_name(self, person: Person) -> str:
        rng = self.rng
        return rng.choice((person.first, person.name, f"{person.first} {person.last[0]}.", person.first.lower()))

    def _email_variant(self, address: str, person: Person) -> str:
        rng = self.rng
        local, _, domain = address.partition("@")
        return rng.choice((
            address,
            address,
            f"{local.title()}@{domain.capitalize()}",
            address.upper(),
            f"  {address} ",
            f"{person.name} <{address}>",
            f'"{person.last}, {person.first}" <{local.title()}@{domain}>',
        ))

    def _phone_variant(self, phone: Phone) -> str:
        rng = self.rng
        cc = {"DE": "49", "US": "1", "GB": "44", "BR": "55", "FR": "33"}[phone.country]
        p, r = phone.prefix, phone.rest
        forms = [phone.e164, f"+{cc} {p} {r}", f"00{cc} {p} {r}"]
        if phone.country == "DE":  # national forms only for the default region (DEFAULT_REGION)
            forms += [f"0{p} {r}", f"0{p}-{r[:4]} {r[4:]}", f"(0{p}) {r}", f"0{p}/{r}", f"+49 (0){p} {r}"]
        elif phone.country == "US":
            forms += [f"+1 ({p}) {r[:3]}-{r[3:]}", f"+1.{p}.{r[:3]}.{r[3:]}"]
        elif phone.country == "GB":
            forms += [f"+44 (0){p} {r}"]
        elif phone.country == "BR":
            forms += [f"+55 ({p}) {r[:5]}-{r[5:]}", f"+55 {p} {r[:5]}-{r[5:]}"]
        else:
            forms += [f"+33 {p} {r[:2]} {r[2:4]} {r[4:6]} {r[6:]}", f"+33 (0){p} {r}"]
        return rng.choice(forms)


def _gap(rng: random.Random) -> timedelta:
    """Time to the next message of a conversation: mostly minutes, sometimes hours or days,
    now and then past the case window, and a few right at its edge."""
    roll = rng.random()
    if roll < 0.55:
        return timedelta(minutes=rng.uniform(0.5, 90))
    if roll < 0.78:
        return timedelta(hours=rng.uniform(2, 20))
    if roll < 0.90:
        return timedelta(hours=rng.uniform(24, 70))
    if roll < 0.97:
        return timedelta(hours=rng.uniform(WINDOW_HOURS + 1, 200))
    return timedelta(hours=WINDOW_HOURS + rng.choice((-1, 1)) * rng.uniform(0.01, 0.2))


def _weighted(rng: random.Random, table: Iterable[tuple[str, float]]) -> str:
    items = list(table)
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _ascii(name: str) -> str:
    return name.lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("ß", "ss")


def _canonical_email(written: str) -> str:
    """What the person meant: the address inside `Name <addr>`, trimmed, lower-case. Written out
    here rather than calling the hub's normalizer, so the truth does not inherit its bugs."""
    text = written.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1:-1]
    return text.strip().lower()
