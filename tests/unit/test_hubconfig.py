from __future__ import annotations

import pytest

from chalicelib.errors import ConfigError
from chalicelib.hubconfig import parse_config
from chalicelib.settings import DEFAULT_CONFIG

VALID = """
channels:
  twilio:
    auth_tokens: ["env:TWILIO_AUTH_TOKEN"]
    public_url: https://hub.example.com/webhooks/twilio
destinations:
  - name: crm
    type: webhook
    url: https://crm.example.com/hooks
    secrets: ["ssm:/hub/dev/crm-webhook-secret"]
routing:
  default:
    priority: high
    destinations: [crm]
api_keys:
  - name: portal
    sha256: "%s"
""" % ("a" * 64)


def test_a_valid_configuration_parses_into_typed_sections():
    config = parse_config(VALID, allow_inline_secrets=False)

    assert list(config.channels) == ["twilio"]
    assert config.destination("crm").type == "webhook"
    assert config.default_destinations() == ["crm"]
    assert config.routing.default.priority.name == "HIGH"


def test_the_shipped_local_configuration_is_valid():
    from chalicelib.hubconfig import load_config

    config = load_config(DEFAULT_CONFIG)

    assert {"twilio", "meta", "webchat"} <= set(config.channels)
    assert config.default_destinations() == ["outbox"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("public_url: https://hub.example.com/webhooks/twilio", ""), "channels.twilio.public_url: Field required"),
        (("twilio:", "carrier-pigeon:"), "channels.carrier-pigeon: unknown channel provider"),
        (("type: webhook", "type: fax"), "destinations[0].type: unknown connector 'fax'"),
        (("url: https://crm.example.com/hooks", "url: ftp://crm.example.com"), "destinations[0].url"),
        (("destinations: [crm]", "destinations: [crm, erp]"), "routing.default.destinations[1]: no destination named 'erp'"),
        (("priority: high", "priority: whenever"), "routing.default.priority"),
        (('sha256: "' + "a" * 64, 'sha256: "' + "A" * 64), "api_keys[0].sha256"),
        (("routing:", "routng:"), "routng: Extra inputs are not permitted"),
    ],
)
def test_errors_name_the_exact_key(change, expected):
    with pytest.raises(ConfigError) as error:
        parse_config(VALID.replace(*change))

    assert expected in error.value.message


def test_deployed_configurations_reject_inline_secrets_by_key():
    text = VALID.replace('"env:TWILIO_AUTH_TOKEN"', '"abc123"')

    with pytest.raises(ConfigError) as error:
        parse_config(text, allow_inline_secrets=False)

    assert "channels.twilio.auth_tokens[0]: inline secret" in error.value.message
    assert "abc123" not in error.value.message
    assert parse_config(text, allow_inline_secrets=True).channels["twilio"]


def test_secrets_are_masked_in_reprs():
    config = parse_config(VALID.replace('"env:TWILIO_AUTH_TOKEN"', '"s3cr3t-value"'))

    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" not in config.channels["twilio"].model_dump_json()


@pytest.mark.parametrize(("text", "source", "expected"), [
    ("a: [", "hub.yaml", "invalid YAML at line"),
    ("- 1\n- 2", "hub.yaml", "top level must be a mapping"),
    ("{", "hub.json", "invalid JSON at line 1"),
])
def test_unreadable_documents_get_a_located_error(text, source, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, source=source)


def test_json_is_accepted():
    config = parse_config('{"identity": {"default_region": "de"}}', source="hub.json")

    assert config.identity.default_region == "DE"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_shipped_stage_configurations_are_valid_for_deployment(stage):
    from chalicelib.hubconfig import load_config

    config = load_config(DEFAULT_CONFIG.parent / f"{stage}.yaml", allow_inline_secrets=False)

    assert config.delivery.max_receives == 8


def test_a_blocked_number_written_nationally_is_normalized_with_the_default_region():
    """Defect: `phone:0162 1234 5678` with `default_region: DE` stopped start-up with
    `not a phone number: invalid country code`; the README promises identifier normalization."""
    config = parse_config('identity: {default_region: DE, blocked: ["phone:0162 1234 5678", "phone:+49 30 123456"]}')
    assert config.identity.blocked == ["phone:+4916212345678", "phone:+4930123456"]
    with pytest.raises(ConfigError, match=r"identity.blocked\[0\]: not a phone number.*identity.default_region"):
        parse_config('identity: {blocked: ["phone:0162 1234 5678"]}')


def test_blocked_entries_are_normalized_like_the_identifiers_they_must_match():
    config = parse_config('identity: {blocked: ["phone:+49 (30) 1234-567", "email:*@bücher.de", "email:noreply@*"]}')

    assert config.identity.blocked == ["phone:+49301234567", "email:*@xn--bcher-kva.de", "email:noreply@*"]
    with pytest.raises(ConfigError, match=r"identity.blocked\[1\]: not an email address"):
        parse_config('identity: {blocked: ["phone:+4930123456", "email:nobody"]}')


def test_the_case_window_cannot_outlast_auto_close():
    with pytest.raises(ConfigError, match="cases: .*window_hours must not exceed auto_close_after_hours"):
        parse_config("cases: {window_hours: 200, auto_close_after_hours: 100}")


def test_account_regions_are_keyed_by_provider_and_account():
    config = parse_config("identity: {default_region: us, account_regions: {'meta:106540352242922': de}}")

    assert config.identity.region_for("meta", "106540352242922") == "DE"
    assert config.identity.region_for("meta", "other") == "US"
    with pytest.raises(ConfigError, match="identity.account_regions: .*must be provider:account"):
        parse_config("identity: {account_regions: {'+4930123456': DE}}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("identity: {default_region: UK}", r"identity.default_region: .*'UK' is not a region .*GB"),
        ("identity: {default_region: XX}", r"identity.default_region: .*'XX' is not a region"),
        ("identity: {account_regions: {'twilio:+4930123456': ZZ}}", r"identity.account_regions: .*twilio:\+4930123456: 'ZZ'"),
        ("identity: {max_per_kind: {email: 0}}", r"identity.max_per_kind: .*email: 0 would keep no email"),
        ('identity: {blocked: ["phone:+49 30 *"]}', r"identity.blocked\[0\]: a phone pattern is written in E.164"),
        ('identity: {blocked: ["email:x@*", "phone:0049*"]}', r"identity.blocked\[1\]: a phone pattern"),
        ('identity: {blocked: ["emial:*@x.example"]}', r"identity.blocked\[0\]: 'emial' is not an identifier kind"),
        ('identity: {blocked: ["email:*@\u00fc' + "\u00fc" * 70 + '.example"]}', r"identity.blocked\[0\]: .*not a domain name IDNA"),
        ("media: {sources: {whatsapp: {}}}", r"media.sources: not a media setting; .*media.whatsapp"),
        ("media: {telegram: {bot_token: 'env:T', api_url: 'https://api.telegram.org/bot'}}",
         r"media.telegram.api_url: .*must be a scheme and host, such as https://api.telegram.org"),
        ("media: {slack: {bot_tokens: ['env:T'], api_url: 'ftp://slack.com'}}",
         r"media.slack.api_url: .*such as https://slack.com"),
    ],
)
def test_settings_that_could_never_work_stop_start_up_at_their_key(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(text)


def test_wildcard_phone_patterns_and_real_regions_are_accepted():
    config = parse_config('identity: {default_region: gb, blocked: ["phone:+4930123*", "phone:+1[2-9]??5550100", "email:*@*"]}')
    assert config.identity.default_region == "GB"
    assert config.identity.blocked == ["phone:+4930123*", "phone:+1[2-9]??5550100", "email:*@*"]


def test_the_region_list_start_up_checks_is_the_one_phonenumbers_reads_numbers_by():
    import phonenumbers

    from chalicelib.domain.regions import PHONE_REGIONS

    assert PHONE_REGIONS == phonenumbers.SUPPORTED_REGIONS


# --- deferred sections (what a deployed function parses) ------------------------------------------

BROKEN_SECTIONS = VALID.replace("public_url: https://hub.example.com/webhooks/twilio", "").replace(
    "priority: high", "priority: whenever")


def test_the_whole_file_is_validated_at_once_by_default():
    """check-config, the deploy and the embedded runtime: every deferred section's problem at load."""
    with pytest.raises(ConfigError) as error:
        parse_config(BROKEN_SECTIONS)

    assert "channels.twilio.public_url: Field required" in str(error.value)
    assert "routing.default.priority" in str(error.value)


def test_a_deferred_section_is_typed_on_first_read_with_the_same_error_at_the_same_key():
    config = parse_config(BROKEN_SECTIONS, source="prod.yaml", defer_sections=True)

    assert config.destination("crm").type == "webhook"  # what the file's small sections say loads
    assert list(config.channels) == ["twilio"]  # listing providers types nothing
    with pytest.raises(ConfigError, match=r"prod.yaml:\n  channels.twilio.public_url: Field required"):
        config.channels["twilio"]
    with pytest.raises(ConfigError, match=r"prod.yaml:\n  routing.default.priority"):
        config.routing


def test_deferred_references_are_checked_when_the_section_is_read():
    text = VALID.replace("destinations: [crm]", "destinations: [crm, erp]")
    config = parse_config(text, defer_sections=True)

    with pytest.raises(ConfigError, match=r"routing.default.destinations\[1\]: no destination named 'erp'"):
        config.default_destinations()


def test_deferred_and_eager_parsing_give_equal_sections():
    eager, deferred = parse_config(VALID), parse_config(VALID, defer_sections=True)

    assert deferred.channels["twilio"] == eager.channels["twilio"]
    assert deferred.routing == eager.routing and deferred.media == eager.media
    assert deferred.consent == eager.consent and deferred.enrichment == eager.enrichment
    assert deferred.routing is deferred.routing, "typed once"


def test_structure_errors_are_still_found_at_load_when_deferring():
    with pytest.raises(ConfigError, match="channels.carrier-pigeon: unknown channel provider"):
        parse_config(VALID.replace("twilio:", "carrier-pigeon:"), defer_sections=True)
    with pytest.raises(ConfigError, match="routng: Extra inputs are not permitted"):
        parse_config(VALID.replace("routing:", "routng:"), defer_sections=True)


def test_a_deployed_stage_refuses_a_public_media_url_without_a_link_secret_without_typing_media():
    text = VALID + "media:\n  public_url: https://hub.example.com\n"
    with pytest.raises(ConfigError, match="media.link_secret: required on AWS"):
        parse_config(text, allow_inline_secrets=False, defer_sections=True)
    parse_config(text + "  enabled: false\n", allow_inline_secrets=False, defer_sections=True)
