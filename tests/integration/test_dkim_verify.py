"""DKIM signatures of composed messages, checked by an independent verifier.

The messages come from tests/tools/compose_tool (gateway/compose and
gateway/dkim, as the gateway writes them); the verifier is dkimpy
(python3-dkim, /usr/bin/python3), given the public key through its dnsfunc
as the TXT record v=DKIM1; k=rsa|ed25519; p=... would carry it. Keys are
made here by `openssl genpkey`, RSA 2048 and Ed25519, mode 0600.

For each key type and each charset (utf-8 in base64, iso-2022-jp in 7bit)
a message must verify, and stop verifying when one octet of its body or its
Subject changes; it must parse with Python's email package with Subject,
From and body back to the exact Japanese originals. Text ISO-2022-JP cannot
carry falls back to UTF-8 and is signed the same way.

Environment: HATO_BUILD (the CMake build tree; compose_tool is in
tests/tools), HATO_SOURCE. Prints one line per test, then
"N passed, M failed"; exits non-zero on a failure.
"""

import base64
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import dkim

SOURCE = os.environ.get("HATO_SOURCE") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HATO_BUILD") or os.path.join(SOURCE, "build")
TOOL = os.path.join(BUILD, "tests", "tools", "compose_tool")
OPENSSL = shutil.which("openssl", path="/usr/bin:/bin") or "openssl"

DOMAIN = "example.jp"
SELECTOR = "hato2026"

SUBJECT = "【重要】週末限定セールのお知らせ：最大50%オフ、¥1,000クーポン付き。お見逃しなく！"
FROM_NAME = "ハト配信センター"
BODY = ("いつもご利用ありがとうございます。\n"
        "\n"
        "週末限定のセールを開催します。  詳しくは下記をご覧ください。\t\n"
        "Price: ¥500 〜 ¥9,800 (税込)\n"
        "https://example.jp/sale?id=123&ref=mail\n"
        "\n"
        "配信停止はこちら\n"
        "\n\n")


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def check_eq(got, want, what):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


def run(args, check_rc=True):
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if check_rc and r.returncode != 0:
        raise Failure("%s exited %d: %s" % (" ".join(args), r.returncode,
                                           r.stderr.decode("utf-8", "replace")))
    return r


class Keys:
    """An RSA 2048 and an Ed25519 key in a 0600 file each, with the DNS
    record that publishes each one."""

    def __init__(self, d):
        self.path = {}
        self.record = {}
        for kind, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("ed25519", ["-algorithm", "ed25519"])):
            path = os.path.join(d, kind + ".pem")
            old = os.umask(0o077)
            try:
                run([OPENSSL, "genpkey"] + args + ["-out", path])
            finally:
                os.umask(old)
            check(os.stat(path).st_mode & 0o077 == 0, "key file readable by others")
            der = run([OPENSSL, "pkey", "-in", path, "-pubout", "-outform", "DER"]).stdout
            # RFC 8463 4: an Ed25519 p= is the bare 32-octet key, not the
            # SubjectPublicKeyInfo an RSA p= holds.
            pub = der[-32:] if kind == "ed25519" else der
            self.path[kind] = path
            self.record[kind] = ("v=DKIM1; k=%s; p=%s" % (
                kind, base64.b64encode(pub).decode())).encode()

    def dnsfunc(self, kind):
        want = ("%s._domainkey.%s." % (SELECTOR, DOMAIN)).encode()

        def lookup(name, timeout=5):
            return self.record[kind] if name == want else None
        return lookup


def compose(d, keys=None, kind=None, charset="utf-8", subject=SUBJECT, body=BODY,
            from_addr=None, extra_args=()):
    """(message bytes, what the tool said about the charset)."""
    body_path = os.path.join(d, "body.txt")
    with open(body_path, "wb") as f:
        f.write(body.encode("utf-8"))
    args = [TOOL, "--from", from_addr or ("%s <dm@%s>" % (FROM_NAME, DOMAIN)),
            "--to", "\"taro..\"@docomo.ne.jp", "--subject", subject, "--body", body_path,
            "--charset", charset, "--reply-to", "返信先 <reply@%s>" % DOMAIN,
            "--unsubscribe", "mailto:unsub+abc@%s" % DOMAIN, "--domain", DOMAIN]
    if keys is not None:
        args += ["--key", keys.path[kind], "--selector", SELECTOR]
    r = run(args + list(extra_args))
    info = dict(re.findall(r"(\w+)=(\S*)", r.stderr.decode("utf-8", "replace")))
    return r.stdout, info


def verify(msg, keys, kind):
    return dkim.verify(msg, dnsfunc=keys.dnsfunc(kind))


def split(msg):
    i = msg.index(b"\r\n\r\n")
    return msg[:i + 4], msg[i + 4:]


def flip_body_octet(msg):
    """One octet of the body changed, to another letter or digit."""
    head, body = split(msg)
    m = re.search(rb"[A-Za-z0-9]", body)
    check(m is not None, "no letter in the body")
    c = body[m.start():m.start() + 1]
    body = body[:m.start()] + (b"B" if c == b"A" else b"A") + body[m.end():]
    return head + body


def change_subject(msg):
    """One letter of the Subject's first encoded word changed."""
    m = re.search(rb"\r\nSubject: =\?[^?]+\?B\?([A-Za-z0-9+/])", msg)
    check(m is not None, "no encoded Subject")
    i = m.start(1)
    c = msg[i:i + 1]
    return msg[:i] + (b"B" if c == b"A" else b"A") + msg[i + 1:]


def lines_ok(msg):
    for line in msg.split(b"\r\n"):
        check(len(line) <= 998, "line of %d octets" % len(line))
        check(b"\n" not in line and b"\r" not in line, "bare CR or LF")


def parse(msg):
    return email.message_from_bytes(msg, policy=email.policy.default)


def text_of(s):
    """Text with its line ends as LF, and ending in one."""
    s = s.replace("\r\n", "\n")
    return s if s.endswith("\n") else s + "\n"


# --------------------------------------------------------------------------

def signed_and_tampered(kind, charset):
    d = tempfile.mkdtemp(prefix="hato-dkim-")
    try:
        keys = Keys(d)
        msg, info = compose(d, keys, kind, charset)
        check_eq(info.get("charset"), charset.upper(), "charset written")
        check_eq(info.get("fell_back"), "0", "fell_back")
        lines_ok(msg)
        check(msg.replace(b"\r\n ", b" ").startswith(
                  b"DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;"
                  % (b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256",
                     DOMAIN.encode(), SELECTOR.encode())),
              "signature header: %r" % msg[:120])
        check(verify(msg, keys, kind), "signature does not verify:\n%s" % msg.decode("ascii", "replace"))
        check(not verify(flip_body_octet(msg), keys, kind), "verifies with a body octet changed")
        check(not verify(change_subject(msg), keys, kind), "verifies with the Subject changed")
        # Signed too: the unsubscribe line a receiver would act on.
        check(not verify(msg.replace(b"unsub+abc@", b"unsub+abd@"), keys, kind),
              "verifies with List-Unsubscribe changed")
        # Relaxed: a field added above, refolding and trailing white space
        # in the body are no change.
        head, body = split(msg)
        refolded = (b"Received: from relay.example by mx.example; Tue, 1 Dec 2026 09:00:00 +0900\r\n"
                    + head.replace(b"\r\nTo: ", b"\r\nTo:   \r\n\t ") + body.replace(b"\r\n", b" \r\n"))
        check(verify(refolded, keys, kind), "relaxed refolding breaks the signature")
        # Another key of the same type published under the selector does
        # not verify it.
        os.mkdir(os.path.join(d, "other"))
        other = Keys(os.path.join(d, "other"))
        check(not verify(msg, other, kind), "verifies with another key")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_rsa_utf8():
    signed_and_tampered("rsa", "utf-8")


def test_rsa_iso2022jp():
    signed_and_tampered("rsa", "iso-2022-jp")


def test_ed25519_utf8():
    signed_and_tampered("ed25519", "utf-8")


def test_ed25519_iso2022jp():
    signed_and_tampered("ed25519", "iso-2022-jp")


def round_trip(charset, cte):
    d = tempfile.mkdtemp(prefix="hato-dkim-")
    try:
        keys = Keys(d)
        msg, _ = compose(d, keys, "ed25519", charset)
        check(verify(msg, keys, "ed25519"), "does not verify")
        m = parse(msg)
        check_eq(m.get_content_type(), "text/plain", "content type")
        check_eq(m.get_content_charset(), charset, "charset")
        check_eq(m["Content-Transfer-Encoding"], cte, "transfer encoding")
        check_eq(str(m["Subject"]), SUBJECT, "Subject")
        check_eq(m["From"].addresses[0].display_name, FROM_NAME, "From display name")
        check_eq(m["From"].addresses[0].addr_spec, "dm@" + DOMAIN, "From address")
        check_eq(m["Reply-To"].addresses[0].display_name, "返信先", "Reply-To display name")
        check_eq(text_of(m.get_content()), text_of(BODY), "body")
        if cte == "7bit":
            check(all(b < 0x80 for b in msg), "8-bit octet in a 7bit message")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_round_trip_utf8():
    round_trip("utf-8", "base64")


def test_round_trip_iso2022jp():
    round_trip("iso-2022-jp", "7bit")


def test_fallback_to_utf8():
    """① is not ISO-2022-JP: the message goes out in UTF-8, signed."""
    d = tempfile.mkdtemp(prefix="hato-dkim-")
    try:
        keys = Keys(d)
        subject = "丸数字①と㈱のお知らせ"
        body = "株式会社は㈱、番号は①②③。😀\n"
        msg, info = compose(d, keys, "rsa", "iso-2022-jp", subject=subject, body=body)
        check_eq(info.get("charset"), "UTF-8", "charset written")
        check_eq(info.get("fell_back"), "1", "fell_back")
        check(verify(msg, keys, "rsa"), "does not verify")
        m = parse(msg)
        check_eq(m.get_content_charset(), "utf-8", "charset")
        check_eq(str(m["Subject"]), subject, "Subject")
        check_eq(text_of(m.get_content()), text_of(body), "body")
        check(b"?" not in split(msg)[1], "a '?' in the body")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_long_lines_and_empty_body():
    d = tempfile.mkdtemp(prefix="hato-dkim-")
    try:
        keys = Keys(d)
        long_body = "x" * 3 + "長い行" * 700 + "\n" + "ascii" * 500 + "\n"
        for kind in ("rsa", "ed25519"):
            msg, _ = compose(d, keys, kind, "iso-2022-jp", body=long_body)
            lines_ok(msg)
            check(verify(msg, keys, kind), "long lines: does not verify")
            got = parse(msg).get_content().replace("\r\n", "")
            check_eq(got, long_body.replace("\n", ""), "long lines read back without the breaks")
            # An empty body: relaxed makes it empty, and both sides agree.
            for charset in ("utf-8", "iso-2022-jp"):
                msg, _ = compose(d, keys, kind, charset, body="")
                check(verify(msg, keys, kind), "empty body (%s): does not verify" % charset)
                check(not verify(msg + b"x\r\n", keys, kind), "empty body: verifies with text added")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_key_readable_by_others_refused():
    d = tempfile.mkdtemp(prefix="hato-dkim-")
    try:
        keys = Keys(d)
        os.chmod(keys.path["rsa"], 0o644)
        body_path = os.path.join(d, "body.txt")
        with open(body_path, "w") as f:
            f.write("body\n")
        r = run([TOOL, "--from", "dm@" + DOMAIN, "--to", "a@docomo.ne.jp", "--subject", "s",
                 "--body", body_path, "--key", keys.path["rsa"], "--selector", SELECTOR,
                 "--domain", DOMAIN], check_rc=False)
        check_eq(r.returncode, 1, "exit code")
        check(b"readable by others" in r.stderr, "reason: %r" % r.stderr)
        check_eq(r.stdout, b"", "output")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    if not os.access(TOOL, os.X_OK):
        print("%s: not built (cmake --build ... --target compose_tool)" % TOOL)
        print("0 passed, 1 failed")
        return 1
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    if len(sys.argv) > 1:
        tests = [t for t in tests if any(a in t[0] for a in sys.argv[1:])]
    passed = failed = 0
    for name, fn in tests:
        print("%s ..." % name, end=" ", flush=True)
        try:
            fn()
            passed += 1
            print("ok", flush=True)
        except Exception:
            failed += 1
            print("FAIL", flush=True)
            print(traceback.format_exc().rstrip(), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
