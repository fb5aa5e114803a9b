"""The log explorer in a real browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``)
driven by selenium against a real log server with entries. Verifies an entry in the page (green)
and refuses tampered inputs and a wrong key (red); writes screenshots to $TLOG_TEST_SCREENSHOT_DIR
(default test-artifacts/screenshots). Skips with a reason when Chromium is absent, except in CI
(CI=1 or .ci/run), where its absence fails the test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .explorer_support import ISS, build

ROOT = Path(__file__).resolve().parent.parent
INSECURE_HOST = "explorer.test"
SHOTS = Path(os.environ.get("TLOG_TEST_SCREENSHOT_DIR") or ROOT / "test-artifacts" / "screenshots")


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install chromium and chromium-driver (.ci/run does)")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    profile = tempfile.mkdtemp(prefix="tlog-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--window-size=1280,1600",
              # a name for loopback that is not a secure context (plain HTTP, not "localhost")
              f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(found[1]), options=opts)
    drv.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build(tmp_path_factory.mktemp("explorer-browser"))
    yield w
    w.server.stop()


def shot(drv, name: str) -> None:
    drv.save_screenshot(str(SHOTS / f"{name}.png"))


def _by(drv, css):
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, css)


def verdict(drv, timeout: float = 10) -> tuple[str, str]:
    """The verdict once the page has reached one (good or bad)."""
    from selenium.webdriver.support.ui import WebDriverWait

    el = WebDriverWait(drv, timeout).until(
        lambda d: (lambda v: v if ("good" in v.get_attribute("class") or "bad" in v.get_attribute("class")) else None)(
            _by(d, "#verdict")))
    return ("good" if "good" in el.get_attribute("class") else "bad"), el.text


def set_text(drv, css: str, text: str) -> None:
    drv.execute_script("document.querySelector(arguments[0]).value = arguments[1];", css, text)


def test_pages_load_and_search_by_keys(browser, world):
    drv, url = browser, world.server.url
    drv.get(url + "/")  # the browser's Accept names text/html: the overview
    assert "explorer.test/log" in drv.title + drv.page_source and _by(drv, "#tree-size").text.isdigit()
    shot(drv, "overview")
    drv.get(url + "/explorer/entries")
    assert len(drv.find_elements("css selector", "table.entries tbody tr")) == world.server.svc.tree_size()
    shot(drv, "entries")
    searches = [("rid", "rid-wit-1", "", "wit"), ("iss_jti", "https://wit.explorer.test", "jti-1", "wit"),
                ("dn_serial", "CN=Explorer CA,O=Test", "a1b2", "x509"), ("sha256", world.wit_sha256, "", "wit"),
                ("iss_sub", ISS, "spiffe://explorer.test/db", "x509")]
    from selenium.webdriver.support.ui import Select

    for kind, a, b, expect in searches:
        drv.get(url + "/explorer/search")
        Select(_by(drv, "#kind")).select_by_value(kind)
        _by(drv, "#a").send_keys(a)
        if b:
            _by(drv, "#b").send_keys(b)
        _by(drv, "#a").submit()  # the form, as Enter would
        links = [e.get_attribute("href") for e in drv.find_elements("css selector", "table.entries a")]
        assert [x.rsplit("/", 1)[1] for x in links] == [world.ids[expect]], (kind, links)
        if kind == "rid":
            shot(drv, "search")
    # a pasted credential (a WIT): its provenance record
    drv.get(url + "/explorer/search")
    set_text(drv, "#credential", world.wit)
    _by(drv, "#credential").submit()
    links = [e.get_attribute("href") for e in drv.find_elements("css selector", "table.entries a")]
    assert [x.rsplit("/", 1)[1] for x in links] == [world.ids["wit"]], links
    shot(drv, "search-credential")
    size = world.server.svc.tree_size()
    drv.get(url + f"/explorer/consistency?from=2&to={size}")
    assert len(drv.find_elements("css selector", "ol.nodes li")) == len(world.server.svc.log.consistency_proof(2, size))
    shot(drv, "consistency")


def test_entry_verifies_in_the_page_and_refuses_tampering(browser, world):
    drv, url = browser, world.server.url
    eid = world.ids["wit"]
    drv.get(url + f"/explorer/entries/{eid}")
    drv.execute_script("localStorage.clear()")
    drv.get(url + f"/explorer/entries/{eid}")
    assert "pin the log's key" in _by(drv, "#verdict").text
    # the viewer takes the published key (after comparing its thumbprint out of band) and pins it
    _by(drv, "details summary").click()
    _by(drv, "button.use-key").click()
    _by(drv, "#pin-btn").click()
    state, text = verdict(drv)
    assert state == "good", text
    published = _by(drv, ".published-thumbprint").text
    assert _by(drv, "#pinned-thumbprint").text == published == world.server.svc.keys.receipt.kid.hex()
    # the path was recomputed in the page and reaches the signed root
    size = int(text.split("tree of size ")[1].split()[0])
    assert _by(drv, "#computed-root").text == world.server.svc.log.root(size).hex()
    shot(drv, "entry-verified")

    # the key is remembered: a new visit verifies by itself
    drv.get(url + f"/explorer/entries/{eid}")
    assert verdict(drv)[0] == "good"
    good_receipt = _by(drv, "#receipt-hex").get_attribute("value")
    good_stmt = _by(drv, "#statement-hex").get_attribute("value")

    def attempt(receipt=good_receipt, stmt=good_stmt):
        set_text(drv, "#receipt-hex", receipt)
        set_text(drv, "#statement-hex", stmt)
        drv.execute_script("document.getElementById('verdict').className = 'verdict pending';")
        _by(drv, "#verify-btn").click()
        return verdict(drv)

    def flip(h: str, at: int) -> str:
        return h[:at] + format(int(h[at:at + 2], 16) ^ 1, "02x") + h[at + 2:]

    # a tampered signature (last byte of the receipt)
    state, text = attempt(receipt=flip(good_receipt, len(good_receipt) - 2))
    assert state == "bad" and "signature does not verify" in text, text
    shot(drv, "entry-tampered-receipt")
    # a tampered proof node: the recomputed root differs, so the signature does not hold
    node = _by(drv, "ol.path li:nth-child(2) span.hex").text
    at = good_receipt.index(node)
    state, text = attempt(receipt=flip(good_receipt, at))
    assert state == "bad" and "signature does not verify" in text, text
    # a tampered statement: not the entry any more
    state, text = attempt(stmt=flip(good_stmt, len(good_stmt) - 2))
    assert state == "bad" and "not this entry" in text, text
    # a receipt cut short
    state, text = attempt(receipt=good_receipt[:-10])
    assert state == "bad", text
    # an attached payload that is not the recomputed root (the signature is over the root)
    good = bytes.fromhex(good_receipt)
    at = len(good) - 67
    assert good[at] == 0xF6  # nil payload, then the 64-byte signature (58 40 ...)
    root = world.server.svc.log.root(size)
    state, text = attempt(receipt=(good[:at] + b"\x58\x20" + bytes(32) + good[at + 1:]).hex())
    assert state == "bad" and "attached payload is not the recomputed root" in text, text
    assert attempt(receipt=(good[:at] + b"\x58\x20" + root + good[at + 1:]).hex())[0] == "good"
    # an inclusion path one node short, or one node long
    import cbor2

    prot, _unprot, _payload, sig = cbor2.loads(good).value
    size, index, path = cbor2.loads(cbor2.loads(good).value[1][396][-1][0])
    path = list(path)

    def with_proof(proof) -> str:
        return cbor2.dumps(cbor2.CBORTag(18, [prot, {396: {-1: [cbor2.dumps(proof)]}}, None, sig])).hex()

    assert with_proof([size, index, path]) == good_receipt  # the same bytes, rebuilt
    for bad_path, why in ((path[:-1], "shorter than the tree needs"), (path + [bytes(32)], "longer than the tree")):
        state, text = attempt(receipt=with_proof([size, index, bad_path]))
        assert state == "bad" and why in text, text
    # a leaf index outside the tree
    state, text = attempt(receipt=with_proof([size, size, path]))
    assert state == "bad" and "not below the tree size" in text, text
    # and the genuine bytes verify again
    assert attempt()[0] == "good"

    # a different pinned key: red, whatever the log publishes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    set_text(drv, "#pinned-key", other)
    _by(drv, "#pin-btn").click()
    drv.execute_script("document.getElementById('verdict').className = 'verdict pending';")
    _by(drv, "#verify-btn").click()
    state, text = verdict(drv)
    assert state == "bad" and "not the pinned key" in text, text
    shot(drv, "entry-wrong-key")
    # the same key as PEM verifies: the thumbprint, not the text, is what counts
    log_pem = world.server.svc.keys.receipt.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    set_text(drv, "#pinned-key", log_pem)
    drv.execute_script("document.getElementById('verdict').className = 'verdict pending';")
    _by(drv, "#pin-btn").click()
    assert verdict(drv)[0] == "good"
    assert json.loads(_by(drv, "button.use-key").get_attribute("data-jwk"))["crv"] == "P-256"


def test_keyboard_reaches_the_navigation_and_the_verify_button(browser, world):
    from selenium.webdriver.common.keys import Keys

    drv = browser
    drv.get(world.server.url + f"/explorer/entries/{world.ids['x509']}")
    body = _by(drv, "body")
    body.send_keys(Keys.TAB)
    assert drv.switch_to.active_element.text == "Skip to content"
    seen = []
    for _ in range(12):
        drv.switch_to.active_element.send_keys(Keys.TAB)
        seen.append(drv.switch_to.active_element.get_attribute("id") or drv.switch_to.active_element.text)
    assert "Entries" in seen and "pin-btn" in seen and "verify-btn" in seen, seen


def test_without_webcrypto_the_page_says_so_instead_of_verifying(browser, world):
    drv = browser
    port = world.server.url.rsplit(":", 1)[1]
    drv.get(f"http://{INSECURE_HOST}:{port}/explorer/entries/{world.ids['wit']}")
    assert drv.execute_script("return window.isSecureContext") is False
    assert drv.execute_script("return !!(window.crypto && window.crypto.subtle)") is False
    text = _by(drv, "#verdict").text
    assert "cannot verify here" in text and "TLS" in text, text
    assert "good" not in _by(drv, "#verdict").get_attribute("class")
    assert not _by(drv, "#verify-btn").is_enabled() and not _by(drv, "#pin-btn").is_enabled()
    shot(drv, "entry-no-webcrypto")
