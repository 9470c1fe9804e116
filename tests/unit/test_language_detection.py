"""Language detection with fastText's lid.176.ftz: accuracy on our kind of text, the restriction
to configured languages, the confidence cut-off, and the lazy, shared, fail-soft model load."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from chalicelib.enrichment import language
from chalicelib.enrichment.language import MODEL_PATH, FastTextDetector, LanguageGuess

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "bench" / "data" / "language_samples.json"
LANGUAGES = ("de", "en", "fr", "es", "it", "tr", "nl")
MODEL_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


@pytest.fixture(scope="module")
def detector() -> FastTextDetector:
    return FastTextDetector()


def warnings_from_the_detector(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == language.__name__ and r.levelno == logging.WARNING]


# --- accuracy ------------------------------------------------------------------------------------


def test_accuracy_on_short_customer_messages_is_at_least_97_percent(detector):
    samples = json.loads(CORPUS.read_text(encoding="utf-8"))
    guesses = [detector.detect(sample["text"]) for sample in samples]
    hits = Counter(s["lang"] for s, g in zip(samples, guesses) if g is not None and g.code == s["lang"])
    totals = Counter(s["lang"] for s in samples)
    misses = [(s["lang"], g, s["text"]) for s, g in zip(samples, guesses) if g is None or g.code != s["lang"]]

    assert set(totals) == set(LANGUAGES)
    # An answer below the cut-off (None) counts as wrong: that is what routing will see.
    assert sum(hits.values()) / len(samples) >= 0.97, misses
    assert all(hits[code] / totals[code] >= 0.90 for code in LANGUAGES), misses


def test_every_answer_is_a_configured_language_with_a_probability(detector):
    samples = json.loads(CORPUS.read_text(encoding="utf-8"))
    guesses = [g for g in (detector.detect(s["text"]) for s in samples) if g is not None]

    assert {g.code for g in guesses} <= set(LANGUAGES)
    assert all(0.5 <= g.confidence <= 1.0 and g.source == "fasttext" for g in guesses)


# --- restriction and cut-off ---------------------------------------------------------------------


def test_the_best_configured_language_wins_and_keeps_the_models_probability():
    portuguese = "Obrigado pela ajuda, o pacote chegou"

    with_portuguese = FastTextDetector(languages=("pt", "es")).detect(portuguese)
    without = FastTextDetector(languages=("es", "it"), min_confidence=0.0).detect(portuguese)

    assert with_portuguese.code == "pt" and with_portuguese.confidence > 0.9
    assert without.code in ("es", "it") and without.confidence < 0.1


def test_a_message_in_an_unconfigured_language_falls_below_the_default_cut_off(detector):
    assert detector.detect("Obrigado pela ajuda, o pacote chegou") is None


def test_language_codes_are_configured_case_insensitively():
    assert FastTextDetector(languages=("DE",)).detect("Wo bleibt mein Paket?").code == "de"


@pytest.mark.parametrize("text", [None, "", "   \n ", "👍", "😕🙏👍", "12345", "#4711 / 0815", "a1"])
def test_text_with_fewer_than_two_letters_gets_no_guess_whatever_the_cut_off(text):
    assert FastTextDetector(min_confidence=0.0).detect(text) is None


def test_the_cut_off_drops_the_models_no_evidence_answer():
    # The model answers text it has no evidence for with en at ~0.12; this message gets exactly that.
    assert FastTextDetector().detect("Forgot my password") is None
    low = FastTextDetector(min_confidence=0.1).detect("Forgot my password")
    assert low == LanguageGuess("en", pytest.approx(0.1245, abs=1e-3))


def test_line_breaks_and_other_whitespace_do_not_break_prediction(detector):
    guess = detector.detect("Hallo,\r\nmein Internet\ngeht seit gestern\tnicht.\u2028Bitte um Rückruf\n")

    assert guess.code == "de" and guess.confidence > 0.9


def test_a_lone_surrogate_from_a_json_payload_does_not_break_prediction(detector):
    text = json.loads('"Hallo, mein Internet geht nicht \\ud83d bitte helfen"')

    assert detector.detect(text).code == "de"


def test_very_long_text_is_judged_by_its_opening(detector):
    assert detector.detect("Bonjour, ma facture est fausse. " * 50 + "Danke und viele Grüße " * 500).code == "fr"


@pytest.mark.parametrize("kwargs", [{"languages": ()}, {"min_confidence": -0.1}, {"min_confidence": 1.5}])
def test_nonsensical_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        FastTextDetector(**kwargs)


# --- the model: shipped, lazy, shared, fail-soft -------------------------------------------------


def test_the_shipped_model_is_the_measured_one_with_its_attribution():
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() == MODEL_SHA256
    notice = (MODEL_PATH.parent / "NOTICE").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in notice and MODEL_SHA256 in notice


def test_importing_and_constructing_the_detector_does_not_import_fasttext():
    probe = (
        "import sys; from chalicelib.enrichment.language import FastTextDetector;"
        "d = FastTextDetector(); print('fasttext' in sys.modules);"
        "d.detect('Wo bleibt mein Paket?'); print('fasttext' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["False", "True"]


def test_concurrent_first_detections_load_the_model_once(tmp_path, monkeypatch):
    model = tmp_path / "lid.176.ftz"  # a path no other test used: its cache entry starts empty
    shutil.copy(MODEL_PATH, model)
    loads = []
    real_load = language._load_model

    def counting_load(path):
        loads.append(path)
        return real_load(path)

    monkeypatch.setattr(language, "_load_model", counting_load)
    detectors = [FastTextDetector(model_path=model) for _ in range(8)]
    start = threading.Barrier(len(detectors))
    results = [None] * len(detectors)

    def run(index):
        start.wait()
        results[index] = detectors[index].detect("Ciao, il pacco non è ancora arrivato")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(detectors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert loads == [model]
    assert [r.code for r in results] == ["it"] * len(detectors)


def test_a_missing_model_means_no_guesses_and_one_warning(tmp_path, caplog):
    detector = FastTextDetector(model_path=tmp_path / "missing.ftz")

    with caplog.at_level(logging.WARNING, logger=language.__name__):
        guesses = [detector.detect("Wo bleibt mein Paket?") for _ in range(3)]
        guesses.append(FastTextDetector(model_path=tmp_path / "missing.ftz").detect("Where is my parcel?"))

    assert guesses == [None] * 4
    [warning] = warnings_from_the_detector(caplog)
    assert "missing.ftz" in warning


def test_a_file_that_is_not_a_model_means_no_guesses_and_one_warning(tmp_path, caplog):
    bogus = tmp_path / "bogus.ftz"
    bogus.write_bytes(b"not a fastText model")

    with caplog.at_level(logging.WARNING, logger=language.__name__):
        guesses = [FastTextDetector(model_path=bogus).detect("Wo bleibt mein Paket?") for _ in range(2)]

    assert guesses == [None, None]
    assert len(warnings_from_the_detector(caplog)) == 1


def test_without_the_fasttext_module_there_are_no_guesses_and_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "fasttext", None)  # makes `import fasttext` raise ImportError
    detector = FastTextDetector(model_path=tmp_path / "lid.176.ftz")

    with caplog.at_level(logging.WARNING, logger=language.__name__):
        guesses = [detector.detect("Wo bleibt mein Paket?") for _ in range(2)]

    assert guesses == [None, None]
    [warning] = warnings_from_the_detector(caplog)
    assert "fasttext-predict" in warning


def test_warnings_never_contain_the_message_text(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=language.__name__):
        FastTextDetector(model_path=tmp_path / "gone.ftz").detect("Meine Nummer ist +49 170 1234567")

    assert caplog.records and all("1234567" not in r.getMessage() for r in caplog.records)
