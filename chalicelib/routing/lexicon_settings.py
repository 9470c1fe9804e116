"""`enrichment.lexicons` in the hub configuration: the lexicons' shape and their terms' syntax.

Every function types the configuration at start-up and few of them enrich contacts, so the terms
are checked here (parsed as the matcher will read them, so a bad term fails at load) while the
matcher and the built-in lexicons (`lexicon.py`) load only where contacts are enriched.
"""

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain.policies import Strict
from chalicelib.domain.values import Value

#: The key of urgency terms in `LexiconMatch.terms`; therefore not an intent name.
URGENCY = "urgency"

_INTENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
_TRANSLITERATION = str.maketrans({
    "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i", "œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d",
    "’": "'", "‘": "'", "ʼ": "'",
})
_COMBINING_MARKS = re.compile(r"[\u0300-\u036f]+")
_UMLAUTS = {"ä": "a", "ö": "o", "ü": "u"}
_OPTIONAL_E = "e?"
_WHITESPACE = r"\s+"


def normalize(text: str) -> str:
    """The form both messages and terms are compared in: casefolded, ASCII where Latin script."""
    folded = text.casefold().translate(_TRANSLITERATION)
    if folded.isascii():
        return folded
    return _COMBINING_MARKS.sub("", unicodedata.normalize("NFKD", folded))


class ParsedTerm(Value):
    """A term as written in a lexicon, parsed into regex atoms: one per normalized character, an
    optional "e" after an umlaut's vowel, and one for each run of whitespace."""

    written: str
    leading_wildcard: bool
    atoms: tuple[str, ...]
    trailing_wildcard: bool

    @classmethod
    def parse(cls, written: str) -> "ParsedTerm":
        core = written.strip()
        leading, trailing = core.startswith("*"), core.endswith("*") and len(core) > 1
        core = core[1 if leading else 0: -1 if trailing else None].strip()
        if "*" in core:
            raise ValueError(f"{written!r}: '*' is allowed only at the start or end of a term")
        plain = normalize(core)
        if not plain:
            raise ValueError(f"{written!r} has no word in it")
        if not (plain[0].isalnum() and plain[-1].isalnum()):
            raise ValueError(f"{written!r} must begin and end with a letter or digit (besides '*')")
        atoms: list[str] = []
        for char in unicodedata.normalize("NFC", core).casefold():
            if char.isspace():
                if atoms[-1] != _WHITESPACE:
                    atoms.append(_WHITESPACE)
            elif char in _UMLAUTS:
                atoms += [_UMLAUTS[char], _OPTIONAL_E]
            else:
                atoms += [re.escape(c) for c in normalize(char)]
        return cls(written, leading, tuple(atoms), trailing)


def _valid_term(term: str) -> str:
    ParsedTerm.parse(term)
    return term


Term = Annotated[str, AfterValidator(_valid_term)]


class LanguageLexicon(Strict):
    """One language's terms: intent name → terms, and terms that make a message urgent."""

    intents: dict[str, list[Term]] = Field(default_factory=dict)
    urgency: list[Term] = Field(default_factory=empty_list)

    @field_validator("intents")
    @classmethod
    def _intent_names(cls, intents: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in intents:
            if name == URGENCY:
                raise ValueError(f"{name!r} is reserved; list urgency terms under `urgency`")
            if not _INTENT_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an intent name (lower-case letters, digits and _, starting with a letter)")
        return intents


class LexiconSettings(Strict):
    """The `lexicons:` section. By default its entries extend the built-in lexicons (per language
    and intent, the union of terms); `replace_defaults: true` uses only what is configured."""

    replace_defaults: bool = False
    languages: dict[str, LanguageLexicon] = Field(default_factory=dict)

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, languages: dict[str, LanguageLexicon]) -> dict[str, LanguageLexicon]:
        for code in languages:
            if not _LANGUAGE_CODE.fullmatch(code):
                raise ValueError(f"{code!r} is not a lower-case ISO 639 language code such as de or en")
        return languages
