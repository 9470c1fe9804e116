"""What the Lambda zip must carry itself, rather than take from the runtime.

The Lambda Python runtime ships boto3 and botocore with their own urllib3, which may be 1.26.
The zip (requirements.txt) comes first on Lambda's sys.path, so a pinned urllib3 there is the one
every import gets. The hub needs 2.x: the downloader calls `HTTPConnection.request(...,
preload_content=False)` and `HTTPResponse.read1(...)`, and the SNS certificate fetcher's bounded
`read(amt)` only bounds decompressed bytes since 2.6 (CVE-2025-66471).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def requirements(name: str) -> dict[str, Requirement]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[requirement.name.lower()] = requirement
    return found


def test_the_lambda_zip_pins_urllib3_2_6_or_later():
    pinned = requirements("requirements.txt").get("urllib3")

    assert pinned is not None, "requirements.txt must pin urllib3 (the Lambda runtime's may be 1.26)"
    [spec] = pinned.specifier
    assert spec.operator == "==", f"pin urllib3 exactly, not {spec}"
    assert Version("2.6") <= Version(spec.version) < Version("3"), spec.version


def test_no_other_requirements_file_pins_a_different_urllib3():
    for name in ("requirements-embedded.txt", "requirements-dev.txt"):
        assert "urllib3" not in requirements(name), f"{name}: urllib3 is pinned once, in requirements.txt"


def test_the_installed_urllib3_is_the_pinned_one_and_has_what_the_hub_calls():
    import urllib3
    from urllib3.connection import HTTPConnection

    [spec] = requirements("requirements.txt")["urllib3"].specifier
    assert urllib3.__version__ == spec.version, "rebuild .venv (make venv)"
    assert "decode_content" in inspect.signature(urllib3.HTTPResponse.read1).parameters
    assert {"preload_content", "decode_content"} <= set(inspect.signature(HTTPConnection.request).parameters)
