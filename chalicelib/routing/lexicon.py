"""Intent and urgency from per-language lexicons: "Kündigung!!! Sofort!" → cancellation, urgent.

Routing needs a cheap, explainable first guess at what a message is about, in the languages our
customers write. A lexicon maps intent names to terms, per language; `Lexicon.analyze` reports
which intents and whether urgency terms occur, and which terms matched, so a routing trace can say
*why*.

Terms are words or phrases matched case-insensitively on word boundaries; `*` at the start or end
of a term stands for any word characters there, for German compounds and inflections
(`*störung*` matches "Netzstörung" and "Störungen"). Text and terms are normalized alike:
casefolded, German umlauts transliterated (ä→ae, ß→ss), other diacritics stripped (é→e, ş→s,
ı→i). An umlaut in a term also matches its bare vowel, because customers without a German keyboard
write "Storung" as often as "Stoerung".

Each language's terms are compiled into one regular expression shaped like a trie, so a message
is scanned once however many terms there are. Every occurrence is found, overlapping ones too;
of terms starting at the same position, the longest wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from chalicelib.routing.lexicon_settings import (  # noqa: F401 (re-exported)
    URGENCY,
    LanguageLexicon,
    LexiconSettings,
    ParsedTerm,
    normalize,
)

#: Customers mix English into every language, so English terms always apply.
MIXED_IN = "en"


@dataclass(frozen=True)
class LexiconMatch:
    #: Intent names found, sorted.
    intents: tuple[str, ...] = ()
    urgent: bool = False
    #: Intent name, or "urgency", → the matched terms as written in the lexicon, sorted.
    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Lexicon:
    """Lexicons compiled for matching, once, at construction: one expression per language and one
    for all languages together. Raises `ValueError` for an invalid term."""

    def __init__(self, settings: LexiconSettings | None = None) -> None:
        self.languages = merged_languages(settings or LexiconSettings())
        parsed: dict[str, ParsedTerm] = {}  # a term shared by languages or intents is parsed once
        entries = {
            code: [(category, _parsed(written, parsed)) for category, written in _entries(lexicon)]
            for code, lexicon in self.languages.items()
        }
        own = {code: _Matcher(language_entries) for code, language_entries in entries.items()}
        mixed_in = own.get(MIXED_IN)
        #: Language → the matchers that apply to its messages: its own, and English.
        self._matchers = {
            code: (matcher,) if mixed_in in (None, matcher) else (matcher, mixed_in) for code, matcher in own.items()
        }
        self._all_languages = (_Matcher(entry for language in entries.values() for entry in language),)

    def analyze(self, text: str | None, subject: str | None = None, language: str | None = None) -> LexiconMatch:
        """Intents and urgency in a message's subject and text. `language` (ISO 639; a region
        suffix such as de-AT is ignored) restricts matching to that language plus English, which
        customers mix into every language. None, or a language without a lexicon, matches all
        languages, since then nothing narrows what the customer may have written."""
        content = "\n".join(part for part in (subject, text) if part)
        if not content:
            return LexiconMatch()
        normalized = normalize(content)
        found: dict[str, set[str]] = {}
        for matcher in self._matchers.get(_primary_language(language), self._all_languages):
            matcher.find(normalized, found)
        urgency = found.pop(URGENCY, None)
        terms = {category: tuple(sorted(written)) for category, written in found.items()}
        if urgency:
            terms[URGENCY] = tuple(sorted(urgency))
        return LexiconMatch(intents=tuple(sorted(found)), urgent=bool(urgency), terms=terms)


def merged_languages(settings: LexiconSettings) -> dict[str, LanguageLexicon]:
    """The lexicons in effect: the built-in ones extended (or replaced) by the configured ones."""
    merged: dict[str, LanguageLexicon] = {}
    base = {} if settings.replace_defaults else DEFAULT_LEXICONS
    for code in {**base, **settings.languages}:
        default = base.get(code, {})
        configured = settings.languages.get(code, LanguageLexicon())
        intents = {name: list(terms) for name, terms in default.get("intents", {}).items()}
        for name, terms in configured.intents.items():
            intents[name] = _union(intents.get(name, []), terms)
        # Both sides are valid already (the built-ins by test), and `Lexicon` parses every term.
        merged[code] = LanguageLexicon.model_construct(
            intents=intents, urgency=_union(default.get("urgency", []), configured.urgency)
        )
    return merged


def _primary_language(language: str | None) -> str | None:
    """`de-AT`, `de_AT` and `DE` → `de`."""
    return language.strip().lower().replace("_", "-").partition("-")[0] if language else None


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _parsed(written: str, parsed: dict[str, ParsedTerm]) -> ParsedTerm:
    if written not in parsed:
        parsed[written] = ParsedTerm.parse(written)
    return parsed[written]


def _entries(lexicon: LanguageLexicon) -> Iterable[tuple[str, str]]:
    """(category, term as written) for every intent term and urgency term."""
    for intent, terms in lexicon.intents.items():
        for term in terms:
            yield intent, term
    for term in lexicon.urgency:
        yield URGENCY, term


class _Node:
    """A trie node: one atom further into the terms that share the path to it."""

    __slots__ = ("children", "bounded", "open_ended")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        #: Entries of terms ending here at a word boundary / followed by any word characters.
        self.bounded: set[tuple[str, str]] = set()
        self.open_ended: set[tuple[str, str]] = set()


class _Matcher:
    """One compiled expression over a set of (category, term) entries.

    Terms are laid out as a trie so the regex engine rejects most positions after one character.
    Every way a term can end is marked by an empty capturing group; the group number of a match
    (`lastindex`) leads to the entries that end there. Terms without a leading `*` start at a word
    boundary; those with one may start anywhere in a word."""

    def __init__(self, entries: Iterable[tuple[str, ParsedTerm]]) -> None:
        at_word_start, inside_words = _Node(), _Node()
        for category, term in entries:
            node = inside_words if term.leading_wildcard else at_word_start
            for atom in term.atoms:
                node = node.children.setdefault(atom, _Node())
            (node.open_ended if term.trailing_wildcard else node.bounded).add((category, term.written))
        #: Group number → the (category, term) entries a match ending in that group stands for.
        self._groups: list[tuple[tuple[str, str], ...]] = [()]
        alternatives = []
        if at_word_start.children:
            alternatives.append(r"\b" + self._emit(at_word_start))
        if inside_words.children:
            alternatives.append(self._emit(inside_words))
        # A lookahead matches nothing, so the scan resumes at the next character and terms that
        # overlap ("mein geld zurück") are all found.
        self._pattern = re.compile("(?=" + "|".join(alternatives) + ")") if alternatives else None

    def find(self, normalized: str, found: dict[str, set[str]]) -> None:
        """Adds category → matched terms (as written) to `found`."""
        if self._pattern is None:
            return
        for match in self._pattern.finditer(normalized):
            for category, written in self._groups[match.lastindex]:
                found.setdefault(category, set()).add(written)

    def _emit(self, node: _Node) -> str:
        """The node's subtree as a regex: longer terms first, so the longest term wins."""
        branches = [atom + self._emit(child) for atom, child in sorted(node.children.items())]
        if node.bounded:
            # A term ending here also satisfies a `term*` ending here (with zero extra characters).
            branches.append(r"\b" + self._group(node.bounded | node.open_ended))
        if node.open_ended:
            branches.append(r"\w*" + self._group(node.open_ended))
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    def _group(self, entries: set[tuple[str, str]]) -> str:
        self._groups.append(tuple(sorted(entries)))
        return "()"


# --- built-in lexicons ---------------------------------------------------------------------------
# For a German/English telco and e-commerce support desk, with smaller sets for customers writing
# in French, Spanish, Italian, Turkish and Dutch. Terms are written as customers write them, with
# diacritics; normalization also matches them typed without. Words that are common in another
# sense are left out or only used in phrases ("no va", "plat", "direct", "Ups" for UPS).

DEFAULT_LEXICONS: dict[str, dict] = {
    "de": {
        "intents": {
            "outage": [
                "*störung*", "*ausfall*", "ausgefallen", "gestört", "geht nicht", "funktioniert nicht",
                "kein internet", "kein netz", "kein empfang", "kein signal", "kein wlan", "kein dsl",
                "kein telefon", "keine verbindung", "internet weg", "netz weg", "verbindungsabbr*",
            ],
            "cancellation": [
                "*kündigung*", "kündigen", "kündige", "gekündigt", "vertrag beenden", "vertrag auflösen",
                "stornieren", "storniert", "stornierung", "storno", "widerruf*", "abo beenden",
            ],
            "refund": [
                "*erstattung*", "erstatten", "erstattet", "zurückerstatten", "geld zurück", "mein geld",
                "rückzahlung", "*rückbuchung*", "zurückbuchen", "zurückgebucht", "gutschrift*",
            ],
            "billing": [
                "*rechnung*", "abbuchung*", "abgebucht", "lastschrift*", "zu viel berechnet", "berechnet",
                "mahnung*", "inkasso", "zahlung*", "*gebühr*",
            ],
            "delivery": [
                "*lieferung*", "geliefert", "liefertermin", "lieferzeit", "paket*", "sendung*", "zustellung",
                "zusteller", "zugestellt", "nicht zugestellt", "versand*", "verschickt", "nicht angekommen",
                "wo bleibt", "wo ist meine bestellung", "dhl", "hermes", "dpd", "gls",
            ],
            "complaint": [
                "beschwerde*", "beschweren", "beschwere", "unverschämt*", "frechheit", "skandal*",
                "katastroph*", "inakzeptabel", "unzumutbar", "enttäuscht", "verärgert",
                "verbraucherzentrale", "bundesnetzagentur", "schlichtungsstelle", "anwalt", "rechtsanwalt",
            ],
        },
        "urgency": [
            "dringend*", "sofort*", "eilig", "eilt", "notfall", "so schnell wie möglich", "schnellstmöglich",
            "umgehend", "unverzüglich", "heute noch",
        ],
    },
    "en": {
        "intents": {
            "outage": [
                "outage*", "down", "downtime", "offline", "not working", "isn't working", "isnt working",
                "doesn't work", "doesnt work", "does not work", "stopped working", "no internet", "no signal",
                "no service", "no connection", "no network", "no dial tone", "disconnect*", "keeps dropping",
                "service interruption",
            ],
            "cancellation": [
                "cancel*", "terminate my contract", "terminate the contract", "terminate contract",
                "end my contract", "close my account",
            ],
            "refund": [
                "refund*", "money back", "my money", "reimburs*", "chargeback", "charge back", "charged back",
                "credit note",
            ],
            "billing": [
                "invoice*", "bill", "bills", "billing", "billed", "overcharg*", "double charg*", "charged twice",
                "charged me", "was charged", "direct debit", "payment*", "fees",
            ],
            "delivery": [
                "deliver*", "parcel*", "package", "tracking", "tracking number", "shipment*", "shipping",
                "shipped", "courier", "not arrived", "hasn't arrived", "hasnt arrived", "never arrived",
                "where is my order",
            ],
            "complaint": [
                "complain*", "unacceptable", "disgrace*", "ridiculous", "outrageous", "appalling",
                "disappointed", "terrible service", "worst service", "escalate*", "lawyer", "ombudsman",
            ],
        },
        "urgency": [
            "urgent*", "asap", "a.s.a.p", "immediately", "emergency", "right now", "right away",
            "as soon as possible", "critical",
        ],
    },
    "fr": {
        "intents": {
            "outage": [
                "panne*", "ne marche pas", "ne marche plus", "ne fonctionne pas", "ne fonctionne plus",
                "coupure*", "pas de réseau", "pas d'internet", "plus d'internet", "pas de connexion",
                "hors service", "dérangement",
            ],
            "cancellation": ["résili*", "annul*", "mettre fin à mon contrat"],
            "refund": ["rembours*", "mon argent"],
            "billing": ["factur*", "prélèvement*", "prélevé"],
            "delivery": ["livraison*", "livré*", "colis", "suivi de commande", "pas reçu"],
            "complaint": ["plainte", "réclamation*", "inadmissible", "inacceptable", "scandaleux", "honteux"],
        },
        "urgency": [
            "urgent*", "urgence", "immédiatement", "au plus vite", "au plus tôt", "dès que possible",
            "tout de suite",
        ],
    },
    "es": {
        "intents": {
            "outage": [
                "no funciona", "sin servicio", "sin internet", "sin señal", "sin conexión", "sin línea",
                "avería*", "caída del servicio", "corte de servicio", "corte de internet", "fuera de servicio",
            ],
            "cancellation": [
                "cancelar", "cancelación", "cancelado", "dar de baja", "darme de baja", "baja del contrato",
                "anular", "rescindir",
            ],
            "refund": ["reembols*", "devolución del dinero", "devolver el dinero", "mi dinero"],
            "billing": ["factura*", "cobro*", "cobrado*"],
            "delivery": ["envío*", "paquete*", "entrega*", "seguimiento", "no ha llegado", "no llegó"],
            "complaint": ["queja*", "reclamación", "reclamo", "inaceptable", "vergüenza", "indignante"],
        },
        "urgency": [
            "urgente*", "urgencia", "inmediatamente", "de inmediato", "cuanto antes", "lo antes posible",
            "ya mismo",
        ],
    },
    "it": {
        "intents": {
            "outage": [
                "guasto", "guasti", "non funziona", "disservizio*", "senza linea", "linea assente",
                "niente internet", "nessun segnale", "interruzione*", "fuori servizio",
            ],
            "cancellation": [
                "disdetta", "disdire", "disdico", "annullare", "annullamento", "recesso", "cancellare",
                "cancellazione",
            ],
            "refund": ["rimbors*", "restituzione", "soldi indietro", "riavere i soldi"],
            "billing": ["fattur*", "addebit*", "bolletta*", "bollette"],
            "delivery": [
                "consegn*", "pacco", "pacchi", "spedizione*", "spedito", "tracciamento", "corriere",
                "non è arrivato",
            ],
            "complaint": ["reclamo", "reclami", "lamentela", "inaccettabile", "vergogna", "assurdo"],
        },
        "urgency": [
            "urgente*", "urgenza", "subito", "immediatamente", "il prima possibile", "al più presto",
            "quanto prima",
        ],
    },
    "tr": {
        "intents": {
            "outage": [
                "arıza*", "çalışmıyor", "internet yok", "internetim yok", "bağlantı yok", "sinyal yok",
                "şebeke yok", "hat yok", "kesinti*", "çekmiyor",
            ],
            "cancellation": ["iptal*", "fesih", "feshet*", "sözleşmeyi sonlandır*"],
            "refund": ["iade*", "paramı geri", "geri ödeme*"],
            "billing": ["fatura*", "ödeme*", "tahsilat*", "iki kez çekildi"],
            "delivery": ["kargo*", "teslimat*", "teslim edilmedi", "siparişim gelmedi", "paket*"],
            "complaint": ["şikayet*", "rezalet", "kabul edilemez", "saygısızlık", "mağdur*"],
        },
        "urgency": ["acil*", "hemen", "derhal", "bir an önce", "en kısa sürede", "ivedi*"],
    },
    "nl": {
        "intents": {
            "outage": [
                "*storing*", "werkt niet", "geen internet", "geen bereik", "geen verbinding", "geen signaal",
                "geen netwerk", "uitval", "uitgevallen", "ligt eruit", "ligt plat",
            ],
            "cancellation": [
                "opzeggen", "opzegging", "opgezegd", "annuleren", "annulering", "geannuleerd",
                "contract beëindigen", "abonnement stopzetten",
            ],
            "refund": ["terugbetal*", "geld terug", "restitutie", "terugstort*"],
            "billing": ["factuur", "facturen", "gefactureerd", "rekening", "afschrijving*", "incasso", "dubbel afgeschreven"],
            "delivery": [
                "bezorg*", "pakket*", "levering*", "geleverd", "verzending*", "verzonden", "niet ontvangen",
                "track en trace", "postnl",
            ],
            "complaint": ["klacht*", "onacceptabel", "schandalig", "belachelijk", "teleurgesteld"],
        },
        "urgency": ["dringend*", "spoed*", "urgent*", "meteen", "onmiddellijk", "zo snel mogelijk", "zsm"],
    },
}
