// Log explorer: verifies an entry in the browser, without trusting the server's word.
// 1. leaf input = SHA-256(statement bytes); leaf hash = SHA-256(0x00 || leaf input)      (RFC 9162)
// 2. root from the receipt's inclusion path (RFC 9162 2.1.3.2), node = SHA-256(0x01 || l || r)
// 3. the receipt (COSE_Sign1, RFC 9942) must be ES256 over Sig_structure
//    ["Signature1", protected, h'', root] with the key the viewer pinned (raw r || s signature).
"use strict";
(function () {
  const STORE = "tlog-explorer.pinned-key";
  const $ = (id) => document.getElementById(id);

  class Fail extends Error {}

  function hexToBytes(h) {
    h = h.replace(/\s+/g, "");
    if (h.length % 2 || /[^0-9a-fA-F]/.test(h)) throw new Fail("the bytes are not valid hex");
    const out = new Uint8Array(h.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
    return out;
  }
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

  // --- a small CBOR decoder (RFC 8949): ints, byte/text strings, arrays, maps, tags, simple ---
  function decodeCbor(bytes) {
    let p = 0;
    const need = (n) => { if (p + n > bytes.length) throw new Fail("CBOR truncated"); };
    function arg(ai) {
      if (ai < 24) return ai;
      const n = { 24: 1, 25: 2, 26: 4, 27: 8 }[ai];
      if (!n) throw new Fail("CBOR: indefinite lengths are not accepted");
      need(n);
      let v = 0;
      for (let i = 0; i < n; i++) v = v * 256 + bytes[p++];
      if (v > Number.MAX_SAFE_INTEGER) throw new Fail("CBOR: integer too large");
      return v;
    }
    function item(depth) {
      if (depth > 16) throw new Fail("CBOR nested too deeply");
      need(1);
      const ib = bytes[p++], mt = ib >> 5, ai = ib & 31;
      if (mt === 7) {
        if (ai === 20) return false;
        if (ai === 21) return true;
        if (ai === 22) return null;
        throw new Fail("CBOR: unsupported simple value");
      }
      const v = arg(ai);
      switch (mt) {
        case 0: return v;
        case 1: return -1 - v;
        case 2: need(v); p += v; return bytes.slice(p - v, p);
        case 3: need(v); p += v; return new TextDecoder("utf-8", { fatal: true }).decode(bytes.slice(p - v, p));
        case 4: { const a = []; for (let i = 0; i < v; i++) a.push(item(depth + 1)); return a; }
        case 5: {
          const m = new Map();
          for (let i = 0; i < v; i++) { const k = item(depth + 1); m.set(k, item(depth + 1)); }
          return m;
        }
        case 6: return { tag: v, value: item(depth + 1) };
      }
    }
    const out = item(0);
    if (p !== bytes.length) throw new Fail("CBOR: trailing bytes");
    return out;
  }

  function cborBstrHead(n) {
    if (n < 24) return Uint8Array.of(0x40 + n);
    if (n < 256) return Uint8Array.of(0x58, n);
    if (n < 65536) return Uint8Array.of(0x59, n >> 8, n & 255);
    return Uint8Array.of(0x5a, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
  }
  const bstr = (b) => concat(cborBstrHead(b.length), b);

  // --- the pinned key ---------------------------------------------------------------------
  function b64urlToBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(s + "=".repeat((4 - (s.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }

  async function importPinned(text) {
    text = text.trim();
    if (!text) throw new Fail("no log key is pinned: paste the log's public key (JWK or PEM) and pin it");
    let key;
    try {
      if (text.startsWith("{")) {
        const j = JSON.parse(text);
        if (j.kty !== "EC" || j.crv !== "P-256") throw new Fail("the pinned key is not an EC P-256 key (ES256)");
        key = await crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: j.x, y: j.y, ext: true },
          { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
      } else {
        const m = text.match(/-----BEGIN PUBLIC KEY-----([\s\S]+?)-----END PUBLIC KEY-----/);
        if (!m) throw new Fail("the pinned key is neither a JWK nor a PEM public key");
        const der = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
        key = await crypto.subtle.importKey("spki", der, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
      }
    } catch (e) {
      if (e instanceof Fail) throw e;
      throw new Fail("the pinned key could not be read: " + e.message);
    }
    const jwk = await crypto.subtle.exportKey("jwk", key);
    // RFC 9679: SHA-256 of the deterministic COSE_Key {1: 2, -1: 1, -2: x, -3: y}
    const x = b64urlToBytes(jwk.x), y = b64urlToBytes(jwk.y);
    const ck = concat(Uint8Array.of(0xa4, 0x01, 0x02, 0x20, 0x01, 0x21), bstr(x), Uint8Array.of(0x22), bstr(y));
    return { key, thumbprint: await sha256(ck) };
  }

  // --- RFC 9162 2.1.3.2 -------------------------------------------------------------------
  async function rootFromPath(index, size, leafHash, path, steps) {
    if (!(index < size)) throw new Fail(`leaf index ${index} is not below the tree size ${size}`);
    let fn = index, sn = size - 1, r = leafHash;
    for (const node of path) {
      if (!(node instanceof Uint8Array) || node.length !== 32) throw new Fail("a proof node is not 32 bytes");
      if (sn === 0) throw new Fail("the inclusion path is longer than the tree allows");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), node, r));
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, node));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
      steps.push(r);
    }
    if (sn !== 0) throw new Fail("the inclusion path is shorter than the tree needs");
    return r;
  }

  function parseReceipt(bytes) {
    let msg = decodeCbor(bytes);
    if (msg && msg.tag === 18) msg = msg.value;
    if (!Array.isArray(msg) || msg.length !== 4) throw new Fail("the receipt is not a COSE_Sign1");
    const [prot, unprot, payload, sig] = msg;
    if (!(prot instanceof Uint8Array) || !(sig instanceof Uint8Array) || !(unprot instanceof Map))
      throw new Fail("the receipt is not a COSE_Sign1");
    const hdr = decodeCbor(prot);
    if (!(hdr instanceof Map)) throw new Fail("the receipt's protected header is not a map");
    if (hdr.get(1) !== -7) throw new Fail("the receipt is not signed with ES256 (alg -7)");
    if (hdr.get(395) !== 1) throw new Fail("the receipt is not an RFC9162_SHA256 receipt (vds 1)");
    const vdp = unprot.get(396);
    const incl = vdp instanceof Map ? vdp.get(-1) : null;
    if (!Array.isArray(incl) || incl.length < 1 || !(incl[0] instanceof Uint8Array))
      throw new Fail("the receipt carries no inclusion proof");
    const proof = decodeCbor(incl[0]);
    if (!Array.isArray(proof) || proof.length !== 3 || !Array.isArray(proof[2]))
      throw new Fail("the inclusion proof is malformed");
    return { prot, kid: hdr.get(4), payload, sig, size: proof[0], index: proof[1], path: proof[2] };
  }

  function show(state, text) {
    const v = $("verdict");
    v.className = "verdict " + state;
    v.textContent = text;
  }

  async function verify() {
    const steps = [];
    document.querySelectorAll(".computed").forEach((s) => { s.textContent = "…"; });
    $("computed-root").textContent = "…";
    try {
      const pinned = await importPinned($("pinned-key").value);
      $("pinned-thumbprint").textContent = hex(pinned.thumbprint);
      const statement = hexToBytes($("statement-hex").value);
      const rc = parseReceipt(hexToBytes($("receipt-hex").value));
      const leafInput = await sha256(statement);
      if (hex(leafInput) !== $("entry-id").textContent.trim())
        throw new Fail("the statement's SHA-256 is not this entry's id");
      const leafHash = await sha256(concat(Uint8Array.of(0), leafInput));
      steps.push(leafHash);
      const root = await rootFromPath(rc.index, rc.size, leafHash, rc.path, steps);
      steps.forEach((h, i) => {
        const el = document.querySelector(`.computed[data-step="${i}"]`);
        if (el) el.textContent = hex(h);
      });
      $("computed-root").textContent = hex(root);
      if (rc.payload !== null && !(rc.payload instanceof Uint8Array && equal(rc.payload, root)))
        throw new Fail("the receipt's attached payload is not the recomputed root");
      if (rc.kid instanceof Uint8Array && !equal(rc.kid, pinned.thumbprint))
        throw new Fail("the receipt names key " + hex(rc.kid) + ", not the pinned key");
      const tbs = concat(Uint8Array.of(0x84, 0x6a), new TextEncoder().encode("Signature1"),
        bstr(rc.prot), Uint8Array.of(0x40), bstr(root));
      if (rc.sig.length !== 64) throw new Fail("the receipt signature is not a 64-byte ES256 signature");
      const ok = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pinned.key, rc.sig, tbs);
      if (!ok) throw new Fail("the receipt signature does not verify with the pinned key over the recomputed root");
      show("good", `Verified: entry ${rc.index} is included in the tree of size ${rc.size} whose root ` +
        `${hex(root).slice(0, 16)}… is signed by the pinned key.`);
    } catch (e) {
      show("bad", "Not verified: " + (e instanceof Fail ? e.message : "error: " + e));
    }
  }

  async function pin() {
    try {
      const p = await importPinned($("pinned-key").value);
      localStorage.setItem(STORE, $("pinned-key").value.trim());
      $("pinned-thumbprint").textContent = hex(p.thumbprint);
      await verify();
    } catch (e) {
      show("bad", "Not verified: " + (e instanceof Fail ? e.message : "error: " + e));
    }
  }

  function init() {
    if (!$("verdict")) return;
    if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
      show("unknown", "This page cannot verify here: the browser offers WebCrypto only to secure " +
        "contexts (HTTPS, or a local address). Serve the log over TLS, or verify with twi-verify.");
      ["verify-btn", "pin-btn"].forEach((id) => { $(id).disabled = true; });
      return;
    }
    const saved = localStorage.getItem(STORE);
    if (saved) $("pinned-key").value = saved;
    $("verify-btn").addEventListener("click", verify);
    $("pin-btn").addEventListener("click", pin);
    $("forget-btn").addEventListener("click", () => {
      localStorage.removeItem(STORE);
      $("pinned-key").value = "";
      $("pinned-thumbprint").textContent = "none";
      show("unknown", "No key pinned.");
    });
    document.querySelectorAll(".use-key").forEach((b) => b.addEventListener("click", () => {
      $("pinned-key").value = b.dataset.jwk;
      $("pinned-key").focus();
    }));
    if (saved) verify();
    else show("unknown", "Not verified: pin the log's key (below) to verify this entry in your browser.");
  }
  document.addEventListener("DOMContentLoaded", init);
})();
