"""The Amazon Comprehend adapter against a real botocore client, stubbed: botocore validates every
request against Comprehend's service model, so a wrong parameter fails here, not in production."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from pydantic import ValidationError

from chalicelib.enrichment import comprehend
from chalicelib.enrichment.comprehend import (
    MAX_TEXT_BYTES,
    ComprehendAnalyzer,
    ComprehendSettings,
    SentimentScores,
    TextAnalysis,
    sentiment_language,
    truncate_utf8,
)

ROOT = Path(__file__).resolve().parents[2]
ANGRY = "Das Paket ist immer noch nicht da, ich bin sehr verärgert"
NEGATIVE = {"Sentiment": "NEGATIVE",
            "SentimentScore": {"Positive": 0.01, "Negative": 0.95, "Neutral": 0.03, "Mixed": 0.01}}


def real_client(**kwargs):
    return boto3.client("comprehend", region_name="eu-central-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", **kwargs)


@pytest.fixture
def client():
    return real_client()


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def warnings_from_the_adapter(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == comprehend.__name__ and r.levelno == logging.WARNING]


# --- sentiment -----------------------------------------------------------------------------------


def test_sentiment_is_asked_in_the_hinted_language_and_normalized(client, stub):
    stub.add_response("detect_sentiment", NEGATIVE, {"Text": ANGRY, "LanguageCode": "de"})

    analysis = ComprehendAnalyzer(client, sentiment=True, language=False).analyze(ANGRY, "de-AT")

    assert analysis == TextAnalysis(
        sentiment="negative",
        sentiment_scores=SentimentScores(positive=0.01, negative=0.95, neutral=0.03, mixed=0.01),
    )


def test_a_sentiment_label_comprehend_adds_later_maps_to_unknown(client, stub):
    stub.add_response("detect_sentiment", {**NEGATIVE, "Sentiment": "SARCASTIC"}, {"Text": ANGRY, "LanguageCode": "de"})

    assert ComprehendAnalyzer(client, sentiment=True, language=False).analyze(ANGRY, "de").sentiment == "unknown"


@pytest.mark.parametrize("hint", ["tr", "nl", None, ""])
def test_sentiment_is_skipped_without_a_supported_language(client, stub, hint, caplog):
    with caplog.at_level(logging.WARNING, logger=comprehend.__name__):
        analysis = ComprehendAnalyzer(client, sentiment=True, language=False).analyze("Paketim hala gelmedi", hint)

    assert analysis is None
    # A call the stub did not expect would have failed and been logged.
    assert warnings_from_the_adapter(caplog) == []


@pytest.mark.parametrize(("code", "expected"), [
    ("de", "de"), ("EN", "en"), ("de-AT", "de"), ("pt_BR", "pt"), ("zh-TW", "zh-TW"), ("zh-Hant", "zh-TW"),
    ("zh", "zh"), ("tr", None), ("nl", None), ("", None), (None, None),
])
def test_language_codes_map_to_comprehends_sentiment_languages(code, expected):
    assert sentiment_language(code) == expected


# --- dominant language ---------------------------------------------------------------------------


def test_comprehends_language_picks_the_sentiment_model_when_there_is_no_hint(client, stub):
    text = "Ma facture est fausse, merci de corriger"
    stub.add_response("detect_dominant_language", {"Languages": [
        {"LanguageCode": "en", "Score": 0.02}, {"LanguageCode": "fr", "Score": 0.97},
    ]}, {"Text": text})
    stub.add_response("detect_sentiment", NEGATIVE, {"Text": text, "LanguageCode": "fr"})

    analysis = ComprehendAnalyzer(client, sentiment=True, language=True).analyze(text, None)

    assert (analysis.language, analysis.language_score, analysis.sentiment) == ("fr", 0.97, "negative")


def test_the_hint_wins_over_comprehends_language_for_sentiment(client, stub):
    stub.add_response("detect_dominant_language", {"Languages": [{"LanguageCode": "en", "Score": 0.6}]},
                      {"Text": ANGRY})
    stub.add_response("detect_sentiment", NEGATIVE, {"Text": ANGRY, "LanguageCode": "de"})

    analysis = ComprehendAnalyzer(client, sentiment=True, language=True).analyze(ANGRY, "de")

    assert (analysis.language, analysis.sentiment) == ("en", "negative")


def test_a_language_without_sentiment_still_reports_the_language(client, stub, caplog):
    text = "Paketim hala gelmedi, lütfen yardım edin"
    stub.add_response("detect_dominant_language", {"Languages": [{"LanguageCode": "tr", "Score": 0.99}]},
                      {"Text": text})

    with caplog.at_level(logging.WARNING, logger=comprehend.__name__):
        analysis = ComprehendAnalyzer(client, sentiment=True, language=True).analyze(text, None)

    assert analysis == TextAnalysis(language="tr", language_score=0.99)
    assert warnings_from_the_adapter(caplog) == []


@pytest.mark.parametrize("text", [None, "", "  \n\t"])
def test_blank_text_costs_no_call(client, stub, text):
    assert ComprehendAnalyzer(client, sentiment=True, language=True).analyze(text, "de") is None


# --- the byte limit ------------------------------------------------------------------------------


def test_long_multi_byte_text_is_cut_to_the_byte_limit_between_characters(client, stub):
    text = "Grüße " + "😡" * 2000  # 8,008 bytes; the cut falls inside an emoji
    sent = "Grüße " + "😡" * ((MAX_TEXT_BYTES - len("Grüße ".encode())) // 4)
    stub.add_response("detect_sentiment", NEGATIVE, {"Text": sent, "LanguageCode": "de"})

    assert ComprehendAnalyzer(client, sentiment=True, language=False).analyze(text, "de").sentiment == "negative"
    assert len(sent.encode()) <= MAX_TEXT_BYTES < len(sent.encode()) + 4


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("abc", 3, "abc"), ("abcd", 3, "abc"), ("äöü", 4, "äö"), ("äöü", 5, "äö"), ("äöü", 6, "äöü"),
    ("a€", 3, "a"), ("😀😀", 7, "😀"), ("", 5, ""), ("ok \ud83d", 10, "ok ?"),
])
def test_truncation_never_splits_a_character(text, limit, expected):
    assert truncate_utf8(text, limit) == expected


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ThrottlingException", "TextSizeLimitExceededException", "AccessDeniedException"])
def test_a_comprehend_error_means_no_analysis_and_a_warning_without_the_text(client, stub, caplog, code):
    stub.add_client_error("detect_sentiment", service_error_code=code, http_status_code=400,
                          service_message=f"cannot process: {ANGRY}")

    with caplog.at_level(logging.WARNING, logger=comprehend.__name__):
        analysis = ComprehendAnalyzer(client, sentiment=True, language=False).analyze(ANGRY, "de")

    assert analysis is None
    [warning] = warnings_from_the_adapter(caplog)
    assert code in warning and "Paket" not in warning


def test_a_failed_language_call_means_no_analysis_at_all(client, stub):
    stub.add_client_error("detect_dominant_language", service_error_code="InternalServerException",
                          http_status_code=500)

    assert ComprehendAnalyzer(client, sentiment=True, language=True).analyze(ANGRY, "de") is None


def test_an_unreachable_endpoint_means_no_analysis(caplog, monkeypatch):
    # Port 9 (discard) on loopback refuses at once: a real BotoCoreError, no network needed.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    client = real_client(endpoint_url="http://127.0.0.1:9",
                         config=Config(connect_timeout=1, retries={"mode": "standard", "max_attempts": 1}))

    with caplog.at_level(logging.WARNING, logger=comprehend.__name__):
        analysis = ComprehendAnalyzer(client, sentiment=True, language=False).analyze(ANGRY, "de")

    assert analysis is None
    assert warnings_from_the_adapter(caplog) == ["comprehend detect_sentiment failed: EndpointConnectionError"]


# --- settings ------------------------------------------------------------------------------------


def test_comprehend_is_off_by_default_and_analyses_sentiment_once_enabled():
    assert ComprehendSettings() == ComprehendSettings(enabled=False, sentiment=True, language=False)
    assert ComprehendSettings.model_validate({"enabled": True}).sentiment is True


def test_settings_errors_name_the_field():
    with pytest.raises(ValidationError) as unknown:
        ComprehendSettings.model_validate({"enabled": True, "sentimnet": False})
    with pytest.raises(ValidationError, match="sentiment or language"):
        ComprehendSettings.model_validate({"enabled": True, "sentiment": False})

    assert [e["loc"] for e in unknown.value.errors()] == [("sentimnet",)]
    assert ComprehendSettings.model_validate({"enabled": False, "sentiment": False}).enabled is False


def test_importing_the_module_for_its_settings_does_not_load_botocore():
    # hubconfig is to embed ComprehendSettings, and every Lambda imports hubconfig.
    probe = "import sys, chalicelib.enrichment.comprehend; print('botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"
