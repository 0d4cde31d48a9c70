"""The wallet web app in a real browser: web/e2e's Playwright journeys against the e2e stack.

Cards (Stripe.js from localstripe, 3-D Secure included) and PayPal (the stand-in's approval page,
approved and cancelled) go through the real services.

Headless Chromium is the system's (Debian's `chromium`, which `.ci/run` installs); like nginx
for the stack, a missing browser fails the test rather than skipping it. Screenshots of each
step are kept under web/test-results/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from stack.launcher import ROOT
from stack.web import find_npm, is_built
from tests.e2e.client import StackView

pytestmark = pytest.mark.timeout(420)
WEB = ROOT / "web"
ARTEFACTS = WEB / "test-results"


def find_chromium() -> str | None:
    """The system's Chromium (MICROPAY_CHROMIUM overrides)."""
    configured = os.environ.get("MICROPAY_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_the_browser_journey_passes_against_the_stack(stack: StackView) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("the browser journey drives headless Chromium: install `chromium`")
    npm = find_npm()
    if npm is None:
        pytest.fail("the wallet app needs Node.js 20.19+ with npm to build and test")
    assert stack.gateway_url is not None
    # The stack's launcher built the app before starting the gateway.
    assert is_built(), "web/dist is not a build of the current sources"
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    result = subprocess.run(
        [npm, "exec", "--", "playwright", "test"],
        cwd=WEB,
        env={
            **os.environ,
            "CI": "1",
            "MICROPAY_GATEWAY_URL": stack.gateway_url,
            "MICROPAY_CHROMIUM": chromium,
            "MICROPAY_E2E_ARTEFACTS": str(ARTEFACTS),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=400,
    )
    report = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, report
    assert " 7 passed" in report, report
    screenshots = sorted(path.name for path in ARTEFACTS.rglob("*.png"))
    assert "05-history.png" in screenshots, screenshots
    # PayPal's approval page is the stand-in's real HTML, left and come back from.
    assert any(name.endswith("-paypal-approval.png") for name in screenshots), screenshots
    assert any(name.endswith("-paypal-credited.png") for name in screenshots), screenshots
