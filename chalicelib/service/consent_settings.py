"""`consent:` in the hub configuration: where keywords apply, which words, HELP's answer.

Every function types the configuration at start-up; recognising keywords and recording consent
(`consent.py`) load only where contacts are processed.
"""

import unicodedata
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator

from chalicelib.domain.defaults import empty_list
from chalicelib.domain import consent as ledger
from chalicelib.domain.models import Channel
from chalicelib.domain.policies import Strict

Action = Literal["opt_out", "opt_in", "help"]

#: Twilio's default opt-out keywords (support.twilio.com, "Twilio support for opt-out keywords").
STANDARD_OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
STANDARD_OPT_IN = ("START", "UNSTOP", "YES")
STANDARD_HELP = ("HELP", "INFO")


class ConsentKeywords(Strict):
    """Local keywords, added to the standard ones."""

    opt_out: list[str] = Field(default_factory=empty_list)
    opt_in: list[str] = Field(default_factory=empty_list)
    help: list[str] = Field(default_factory=empty_list)

    @field_validator("opt_out", "opt_in", "help")
    @classmethod
    def _words(cls, values: list[str]) -> list[str]:
        for value in values:
            if not fold_keyword(value) or len(value) > 40:
                raise ValueError(f"{value[:40]!r}: a keyword is 1 to 40 characters of text")
        return values


class ConsentSettings(Strict):
    """`consent:` in the hub configuration."""

    #: Channels where a keyword message changes consent. Email has its own ways (List-Unsubscribe,
    #: complaints) and a one-word mail is no opt-out.
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS, Channel.MMS, Channel.WHATSAPP])
    #: Whether STOP, START, HELP and the rest of the standard lists apply (besides `keywords`).
    standard_keywords: bool = True
    keywords: ConsentKeywords = Field(default_factory=ConsentKeywords)
    #: HELP's answer by language (ISO 639-1); the first is the fallback. Empty: HELP is only tagged.
    help_text: dict[str, str] = Field(default_factory=dict)
    #: What an opt-in keyword opts back in to. Marketing needs consent given for marketing, which
    #: "START" after a "STOP" is not, so by default only `service`.
    opt_in_purposes: list[ledger.Purpose] = Field(default_factory=lambda: ["service"], min_length=1)
    history_limit: int = Field(default=ledger.HISTORY_LIMIT, ge=1, le=50)

    @field_validator("channels")
    @classmethod
    def _no_email(cls, channels: list[Channel]) -> list[Channel]:
        if Channel.EMAIL in channels:
            raise ValueError("email takes no keywords: its opt-outs are List-Unsubscribe and complaints")
        return channels

    @field_validator("help_text")
    @classmethod
    def _texts(cls, texts: dict[str, str]) -> dict[str, str]:
        for language, text in texts.items():
            if not (2 <= len(language) <= 8) or not text.strip():
                raise ValueError(f"{language[:8]!r}: a language code (de, en, pt-BR) with a non-empty text")
        return texts

    @model_validator(mode="after")
    def _one_meaning(self) -> "ConsentSettings":
        seen: dict[str, str] = {}
        for action, words in self.vocabulary().items():
            for word in words:
                if seen.setdefault(word, action) != action:
                    raise ValueError(f"keywords: {word!r} cannot mean both {seen[word]} and {action}")
        return self

    @cached_property
    def _vocabulary(self) -> dict[Action, frozenset[str]]:
        return self.vocabulary()

    def vocabulary(self) -> dict[Action, frozenset[str]]:
        """The case-folded keywords of each action."""
        standard = {"opt_out": STANDARD_OPT_OUT, "opt_in": STANDARD_OPT_IN, "help": STANDARD_HELP}
        return {
            action: frozenset(fold_keyword(w) for w in (*(standard[action] if self.standard_keywords else ()),
                                                 *getattr(self.keywords, action)))
            for action in ("opt_out", "opt_in", "help")
        }


def fold_keyword(text: str) -> str:
    """A message as a keyword: trimmed, case-folded, trailing punctuation dropped ("Stop!")."""
    word = text.strip()
    while word and unicodedata.category(word[-1]).startswith("P"):
        word = word[:-1].rstrip()
    return word.casefold()
