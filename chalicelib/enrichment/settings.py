"""`enrichment:` in the hub configuration, and building the enricher from it.

    enrichment:
      language: {enabled: true, languages: [de, en, fr, es, it, tr, nl], min_confidence: 0.5}
      lexicons: {replace_defaults: false, languages: {de: {intents: {outage: ["*störung*"]}}}}
      comprehend: {enabled: false, sentiment: true, language: false}

Validated with the rest of the configuration when it is loaded; the detector, lexicons and the
Comprehend client are built only where contacts are enriched.
"""

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.routing.lexicon_settings import LexiconSettings

#: The detector's defaults (`language.py`), here because the configuration states them.
DEFAULT_LANGUAGES = ("de", "en", "fr", "es", "it", "tr", "nl")
#: The model answers text without words (emojis, digits, "") with en at ~0.12 probability.
DEFAULT_MIN_CONFIDENCE = 0.5


class ComprehendSettings(BaseModel):
    """Whether and what Comprehend analyses; for the hub configuration to embed."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    sentiment: bool = True
    #: Comprehend's own language guess; the hub's fastText guess is free and usually enough.
    language: bool = False

    @model_validator(mode="after")
    def _something_to_do(self) -> "ComprehendSettings":
        if self.enabled and not (self.sentiment or self.language):
            raise ValueError("enabled needs sentiment or language (or both) set to true")
        return self


class LanguageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: The languages the team serves: detection picks among these (ISO 639-1 codes).
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES), min_length=1)
    #: Below this the text is too short or mixed to tell; the customer's `language` attribute
    #: stands in.
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1)


class EnrichmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: LanguageSettings = Field(default_factory=LanguageSettings)
    lexicons: LexiconSettings = Field(default_factory=LexiconSettings)
    comprehend: ComprehendSettings = Field(default_factory=ComprehendSettings)


def build_enricher(settings: EnrichmentSettings, aws_client: Callable[[str], Any]):
    """The enricher the configuration describes; Comprehend's client is made only when enabled."""
    from chalicelib.enrichment.comprehend import ComprehendAnalyzer
    from chalicelib.enrichment.enrich import Enricher
    from chalicelib.enrichment.language import FastTextDetector
    from chalicelib.routing.lexicon import Lexicon

    detector = (
        FastTextDetector(tuple(settings.language.languages), settings.language.min_confidence)
        if settings.language.enabled else None
    )
    comprehend = settings.comprehend
    analyzer = (
        ComprehendAnalyzer(aws_client("comprehend"), sentiment=comprehend.sentiment, language=comprehend.language)
        if comprehend.enabled else None
    )
    return Enricher(language=detector, lexicon=Lexicon(settings.lexicons), analyzer=analyzer)
