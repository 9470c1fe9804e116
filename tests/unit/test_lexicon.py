from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from chalicelib.routing.lexicon import DEFAULT_LEXICONS, Lexicon, LexiconMatch, LexiconSettings, normalize

DEFAULTS = Lexicon()


def configured(text: str) -> Lexicon:
    return Lexicon(LexiconSettings.model_validate(yaml.safe_load(text)))


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        LexiconSettings.model_validate(yaml.safe_load(text))
    return [".".join(map(str, e["loc"])) + ": " + e["msg"] for e in caught.value.errors(include_url=False)]


@pytest.mark.parametrize("written", ["Störung", "Stoerung", "STÖRUNG", "Storung", "STOERUNG", "Sto\u0308rung"])
def test_umlauts_match_whether_typed_transliterated_bare_or_decomposed(written):
    match = DEFAULTS.analyze(f"Wir haben eine {written} im Haus", language="de")

    assert match.intents == ("outage",)
    assert match.terms == {"outage": ("*störung*",)}


@pytest.mark.parametrize(
    ("text", "intent", "term"),
    [
        ("Seit Montag Netzstörung in der ganzen Straße", "outage", "*störung*"),
        ("Immer wieder Störungen", "outage", "*störung*"),
        ("Wo bleibt meine Kündigungsbestätigung?", "cancellation", "*kündigung*"),
        ("Die Rückerstattung fehlt", "refund", "*erstattung*"),
        ("Warum zahle ich Mahngebühren?", "billing", "*gebühr*"),
        ("I got refunded twice", "refund", "refund*"),
    ],
)
def test_wildcards_match_compounds_and_inflections(text, intent, term):
    match = DEFAULTS.analyze(text)

    assert intent in match.intents
    assert term in match.terms[intent]


def test_terms_match_whole_words_only():
    assert DEFAULTS.analyze("The download is slow and downloads keep failing", language="en") == LexiconMatch()
    assert DEFAULTS.analyze("The internet is down.", language="en").intents == ("outage",)
    assert DEFAULTS.analyze("Paketdienst und Pakete", language="de").intents == ("delivery",)
    assert DEFAULTS.analyze("Ich brauche ein größeres Datenpaket", language="de").intents == ()


@pytest.mark.parametrize(("text", "language"), [("Commande annulée", "fr"), ("commande annulee", "fr"),
                                                ("Sin señal desde ayer", "es"), ("sin senal desde ayer", "es")])
def test_diacritics_are_optional(text, language):
    assert DEFAULTS.analyze(text, language=language).intents in {("cancellation",), ("outage",)}


@pytest.mark.parametrize("written", ["İPTAL", "IPTAL", "iptal", "ıptal", "İptal etmek istiyorum"])
def test_turkish_dotted_and_dotless_i_do_not_break_matching(written):
    assert DEFAULTS.analyze(written, language="tr").intents == ("cancellation",)


def test_turkish_capitals_without_the_dotless_i_still_match():
    match = DEFAULTS.analyze("ARIZA var, İNTERNET YOK", language="tr")

    assert match.terms == {"outage": ("arıza*", "internet yok")}


def test_phrases_match_across_any_whitespace_but_not_across_other_words():
    assert DEFAULTS.analyze("Leider kein\n   Internet", language="de").intents == ("outage",)
    assert DEFAULTS.analyze("kein schnelles Internet", language="de").intents == ()


def test_the_match_lists_intents_once_sorted_with_the_terms_that_matched_and_urgency_apart():
    match = DEFAULTS.analyze("Störung! Immer noch Störung. Ich will sofort mein Geld zurück", language="de")

    assert match == LexiconMatch(
        intents=("outage", "refund"),
        urgent=True,
        terms={"outage": ("*störung*",), "refund": ("geld zurück", "mein geld"), "urgency": ("sofort*",)},
    )


def test_the_subject_counts_as_part_of_the_message():
    match = DEFAULTS.analyze("Bitte bestätigen.", subject="DRINGEND: Kündigung")

    assert (match.intents, match.urgent) == (("cancellation",), True)


@pytest.mark.parametrize(("text", "subject"), [(None, None), ("", None), ("", ""), ("   \n", None)])
def test_empty_messages_match_nothing(text, subject):
    assert DEFAULTS.analyze(text, subject=subject) == LexiconMatch()


def test_a_language_restricts_matching_to_its_lexicon_plus_english():
    text = "iptal please, I want a refund"

    assert DEFAULTS.analyze(text, language="de").intents == ("refund",)
    assert DEFAULTS.analyze(text, language="tr").intents == ("cancellation", "refund")
    assert DEFAULTS.analyze(text).intents == ("cancellation", "refund")


def test_region_suffixes_and_case_of_the_language_are_ignored():
    assert DEFAULTS.analyze("iptal", language="tr-TR").intents == ("cancellation",)
    assert DEFAULTS.analyze("iptal", language="TR_tr").intents == ("cancellation",)
    assert DEFAULTS.analyze("iptal", language="de-AT").intents == ()


def test_a_language_without_a_lexicon_matches_all_languages():
    assert DEFAULTS.analyze("Kündigung bitte, dziękuję", language="pl").intents == ("cancellation",)


def test_configured_terms_extend_the_defaults_per_intent():
    lexicon = configured("""
languages:
  de: {intents: {outage: ["router kaputt"], porting: ["rufnummernmitnahme", "*portierung*"]}, urgency: ["hilfe"]}
""")

    assert lexicon.analyze("Router kaputt, Hilfe!", language="de") == LexiconMatch(
        intents=("outage",), urgent=True, terms={"outage": ("router kaputt",), "urgency": ("hilfe",)}
    )
    assert lexicon.analyze("Störung", language="de").intents == ("outage",)
    assert lexicon.analyze("Frage zur Nummernportierung", language="de").intents == ("porting",)
    assert lexicon.analyze("sofort", language="de").urgent


def test_replace_defaults_uses_only_the_configured_lexicons():
    lexicon = configured("""
replace_defaults: true
languages:
  de: {intents: {outage: ["router kaputt"]}}
""")

    assert lexicon.analyze("Router kaputt", language="de").intents == ("outage",)
    assert lexicon.analyze("Störung, sofort, refund", language="de") == LexiconMatch()
    assert lexicon.analyze("Störung, sofort, refund") == LexiconMatch()


def test_a_configured_language_gets_english_mixed_in():
    lexicon = configured("languages: {pl: {intents: {outage: ['awaria*', 'brak internetu']}, urgency: ['pilne']}}")

    assert lexicon.analyze("Awaria, brak internetu, refund asap", language="pl") == LexiconMatch(
        intents=("outage", "refund"),
        urgent=True,
        terms={"outage": ("awaria*", "brak internetu"), "refund": ("refund*",), "urgency": ("asap",)},
    )


def test_a_term_listed_under_two_intents_reports_both():
    lexicon = configured("languages: {de: {intents: {refund: ['storno']}}}")

    match = lexicon.analyze("Storno bitte", language="de")

    assert match.intents == ("cancellation", "refund")
    assert match.terms == {"cancellation": ("storno",), "refund": ("storno",)}


def test_a_word_matching_a_term_and_the_same_term_with_a_wildcard_reports_both():
    lexicon = configured("""
replace_defaults: true
languages: {de: {intents: {billing: ["rechnung*"], invoice_copy: ["rechnung"]}}}
""")

    assert lexicon.analyze("Rechnung", language="de").intents == ("billing", "invoice_copy")
    assert lexicon.analyze("Rechnungen", language="de").intents == ("billing",)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("languages: {de: {intents: {Outage: [x]}}}", "languages.de.intents: Value error, 'Outage' is not an intent name"),
        ("languages: {de: {intents: {2fa: [x]}}}", "languages.de.intents: Value error, '2fa' is not an intent name"),
        ("languages: {de: {intents: {urgency: [x]}}}", "languages.de.intents: Value error, 'urgency' is reserved"),
        ("languages: {de: {intents: {outage: [ok, 'st*rung']}}}",
         "languages.de.intents.outage.1: Value error, 'st*rung': '*' is allowed only at the start or end"),
        ("languages: {de: {intents: {outage: ['**']}}}", "languages.de.intents.outage.0: Value error, '**' has no word in it"),
        ("languages: {en: {urgency: ['now!']}}", "languages.en.urgency.0: Value error, 'now!' must begin and end with a letter"),
        ("languages: {DE: {urgency: [sofort]}}", "languages: Value error, 'DE' is not a lower-case ISO 639 language code"),
        ("languages: {de: {urgncy: [sofort]}}", "languages.de.urgncy: Extra inputs are not permitted"),
        ("replace_default: true", "replace_default: Extra inputs are not permitted"),
    ],
)
def test_invalid_lexicons_name_the_field_at_fault(config, expected):
    found = problems(config)

    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("language", sorted(DEFAULT_LEXICONS))
def test_every_built_in_term_matches_its_own_text_and_reports_itself(language):
    lexicon = DEFAULT_LEXICONS[language]
    categories = [*lexicon["intents"].items(), ("urgency", lexicon["urgency"])]
    missed = [
        (category, term)
        for category, terms in categories
        for term in terms
        if term not in DEFAULTS.analyze(term.strip("*"), language=language).terms.get(category, ())
    ]

    assert not missed


def test_built_in_lexicons_cover_the_support_desk_intents_in_every_language():
    for language, lexicon in DEFAULT_LEXICONS.items():
        assert {"outage", "cancellation", "refund"} <= set(lexicon["intents"]), language
        assert lexicon["urgency"], language
    assert {"billing", "delivery", "complaint"} <= set(DEFAULT_LEXICONS["de"]["intents"]) & set(DEFAULT_LEXICONS["en"]["intents"])


def test_normalize_folds_case_transliterates_german_and_strips_other_diacritics():
    assert normalize("Größe ÄÖÜ") == "groesse aeoeue"
    assert normalize("Annulée, señal, çalışmıyor, İptal") == "annulee, senal, calismiyor, iptal"
    assert normalize("don’t") == "don't"
