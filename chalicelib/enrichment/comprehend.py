"""Amazon Comprehend sentiment and dominant language, an optional enrichment of a message's text.

https://docs.aws.amazon.com/comprehend/latest/APIReference/API_DetectSentiment.html
Off by default: every call is billed and adds a network round trip per message. Like every
enrichment it is best effort: a Comprehend fault means no analysis, never a failed contact.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from chalicelib.enrichment.settings import ComprehendSettings  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

#: DetectSentiment's `LanguageCode` enum (botocore's service model); others get no sentiment.
SENTIMENT_LANGUAGES = frozenset({"en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW"})
#: DetectSentiment takes "fewer than 5,000 bytes" of UTF-8. DetectDominantLanguage takes 100 KB,
#: but is billed per 100 characters, and a message's language shows long before 5 KB.
MAX_TEXT_BYTES = 4_999

#: Comprehend's sentiment vocabulary → ours; a label Comprehend adds later maps to "unknown".
_SENTIMENTS = {"POSITIVE": "positive", "NEGATIVE": "negative", "NEUTRAL": "neutral", "MIXED": "mixed"}


@dataclass(frozen=True, slots=True)
class SentimentScores:
    positive: float
    negative: float
    neutral: float
    mixed: float


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    #: positive | negative | neutral | mixed | unknown; None when sentiment was not analysed.
    sentiment: str | None = None
    sentiment_scores: SentimentScores | None = None
    #: Dominant language (RFC 5646 as Comprehend names it: "de", "zh-TW") when it was asked for.
    language: str | None = None
    language_score: float | None = None
    source: str = "comprehend"


class TextAnalyzer(ABC):
    """Port: analyses one message's text. Never raises; None means nothing could be analysed."""

    @abstractmethod
    def analyze(self, text: str | None, language_hint: str | None) -> TextAnalysis | None:
        """`language_hint` is the hub's own guess (ISO 639-1), used to pick a sentiment model."""


class ComprehendAnalyzer(TextAnalyzer):
    """Sentiment (DetectSentiment) and dominant language (DetectDominantLanguage), as configured.

    Sentiment needs the text's language: the hint wins, else Comprehend's own guess when
    `language` is on; a language Comprehend has no sentiment model for skips the call.
    """

    def __init__(self, client: Any, *, sentiment: bool, language: bool) -> None:
        self._client = client
        self._sentiment = sentiment
        self._language = language

    def analyze(self, text: str | None, language_hint: str | None) -> TextAnalysis | None:
        if not text or text.isspace():
            return None
        text = truncate_utf8(text, MAX_TEXT_BYTES)
        language = language_score = None
        if self._language:
            response = self._call("detect_dominant_language", Text=text)
            if response is None:
                return None
            candidates = response.get("Languages") or []
            if candidates:
                best = max(candidates, key=lambda candidate: candidate.get("Score", 0.0))
                language, language_score = best.get("LanguageCode"), best.get("Score")

        sentiment = scores = None
        code = sentiment_language(language_hint) or sentiment_language(language)
        if self._sentiment and code:
            response = self._call("detect_sentiment", Text=text, LanguageCode=code)
            if response is None:
                return None
            sentiment = _SENTIMENTS.get(response.get("Sentiment", ""), "unknown")
            raw = response.get("SentimentScore") or {}
            scores = SentimentScores(
                positive=raw.get("Positive", 0.0), negative=raw.get("Negative", 0.0),
                neutral=raw.get("Neutral", 0.0), mixed=raw.get("Mixed", 0.0),
            )

        if sentiment is None and language is None:
            return None
        return TextAnalysis(sentiment=sentiment, sentiment_scores=scores, language=language,
                            language_score=language_score)

    def _call(self, operation: str, **params: Any) -> dict | None:
        # Imported here, not at the top: a worker that builds the analyzer but never calls it
        # (Comprehend off for a message) should not load botocore for it.
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            # The error code only: Comprehend's messages may quote the text.
            logger.warning("comprehend %s failed: %s", operation, exc.response.get("Error", {}).get("Code", ""))
        except BotoCoreError as exc:
            logger.warning("comprehend %s failed: %s", operation, type(exc).__name__)
        return None


def sentiment_language(code: str | None) -> str | None:
    """The DetectSentiment language for an ISO 639-1 / RFC 5646 code ("de-AT" → "de"), or None."""
    if not code:
        return None
    code = code.strip()
    if code.lower() in ("zh-tw", "zh-hant"):
        return "zh-TW"
    primary = code.split("-", 1)[0].split("_", 1)[0].lower()
    return primary if primary in SENTIMENT_LANGUAGES else None


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character (invalid ones become '?')."""
    # "replace": JSON payloads can carry lone surrogates (half an emoji), which are not UTF-8.
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return encoded.decode("utf-8")
    # Only the last character can be cut in half; "ignore" drops exactly that partial sequence.
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
