"""The upstream side, end to end: a submission by LMTP goes through intake,
MariaDB and the gateway to SMTP sinks standing in for the carriers' relays.

- TLS to relays, with a test CA made here by openssl: STARTTLS and SMTPS
  with a verified certificate deliver (the sink saw TLS, the gateway's log
  names protocol and cipher); a certificate for another host name or from
  an untrusted CA defers the delivery, and not one MAIL command goes out
  in clear.
- AUTH over STARTTLS: the right password (a 0600 file) delivers as that
  user, a wrong one fails with the server's 535; a password file readable
  by others is refused by --check-config, naming the file.
- DKIM: rsa-sha256 and ed25519-sha256 signatures made by the gateway verify
  with dkimpy, and stop verifying when one body octet changes.
- Charsets: a relay with charset = iso-2022-jp gets 7bit ISO-2022-JP that
  decodes to the submitted text; a character ISO-2022-JP lacks falls back to
  UTF-8; a Subject whose encoded word hides CR LF "Bcc: ..." makes no Bcc
  header; a legacy address goes out quoted in RCPT TO and To.

MX delivery through c-ares is in test_mx.py.
"""

import base64
import os
import re
import shutil
import socket
import subprocess

import dkim

import hatotest as H
from hatotest import check, check_eq
from smtpsink import Sink

OPENSSL = shutil.which("openssl", path="/usr/bin:/bin") or "openssl"

SUBJECT = "週末限定セールのお知らせ"
BODY = ("いつもご利用ありがとうございます。\n"
        "本日より三日間、全品二割引のセールを開催します。\n"
        "\n"
        "詳しくは https://shop.example.jp/sale?id=42 をご覧ください。\n")


# --------------------------------------------------------------------------
# Certificates, made at run time.

class Certs:
    """A test CA, an untrusted second CA, and server certificates:

    server       CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (test CA)
    wrong        CN=wrong.example, SAN DNS:wrong.example (test CA)
    untrusted    CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (other CA)
    leaf(name)   CN=name, SAN DNS:name (test CA), made on request
    """

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)  # the gateway reads ca.crt after dropping root
        ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        for name, cn in (("ca", "Hato Test CA"), ("other-ca", "Hato Other CA")):
            self._openssl(["req", "-x509"] + self._ec() + ["-keyout", name + ".key", "-out", name + ".crt",
                                                            "-days", "2", "-subj", "/CN=" + cn] + ca_ext)
        self.ca = os.path.join(d, "ca.crt")
        self.other_ca = os.path.join(d, "other-ca.crt")
        self.server = self.leaf("localhost", "server", ["DNS:localhost", "IP:127.0.0.1"])
        self.wrong = self.leaf("wrong.example", "wrong", ["DNS:wrong.example"])
        self.untrusted = self.leaf("localhost", "untrusted", ["DNS:localhost", "IP:127.0.0.1"], ca="other-ca")

    @staticmethod
    def _ec():
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def _openssl(self, args):
        r = subprocess.run([OPENSSL] + args, cwd=self.dir, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise H.TestFailure("openssl %s failed:\n%s" % (" ".join(args), r.stdout.decode("utf-8", "replace")))

    def leaf(self, cn, base=None, sans=None, ca="ca"):
        """(certificate path, key path) of a server certificate for cn."""
        base = base or re.sub(r"[^A-Za-z0-9]", "_", cn)
        sans = sans or ["DNS:" + cn]
        with open(os.path.join(self.dir, base + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % ",".join(sans))
        self._openssl(["req", "-new"] + self._ec() + ["-keyout", base + ".key", "-out", base + ".csr",
                                                       "-subj", "/CN=" + cn])
        self._openssl(["x509", "-req", "-in", base + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                       "-CAcreateserial", "-days", "2", "-out", base + ".crt", "-extfile", base + ".ext"])
        return os.path.join(self.dir, base + ".crt"), os.path.join(self.dir, base + ".key")


def relay_host():
    """The relay host name the certificates are checked against: "localhost"
    when it resolves to 127.0.0.1 only (the gateway resolves it once at
    configuration load), else the address itself (the certificates carry an
    IP SAN too)."""
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo("localhost", 25, type=socket.SOCK_STREAM)}
    except OSError:
        addrs = set()
    return "localhost" if addrs == {"127.0.0.1"} else "127.0.0.1"


# --------------------------------------------------------------------------
# Small views of sinks, deliveries and the gateway's log.

def start_sink(env, name, host="127.0.0.1", port=0, **kw):
    sink = Sink(port=port, host=host, name=name, **kw)
    sink.start()
    H.defer(sink.stop)
    env.sinks[name] = sink
    return sink


def tls_relay(env, name, cert, mode, ca, host=None, script=None, users=None, **relay):
    """A sink with a certificate, declared as [relay NAME] with verification on."""
    sink = start_sink(env, name, tls_cert=cert[0], tls_key=cert[1], tls_mode=mode, script=script, users=users)
    values = {"host": host or relay_host(), "port": sink.port, "tls": mode, "verify": True, "ca_file": ca}
    values.update(relay)
    env.config.section("relay %s" % name).update(values)
    return sink


def plain(addr):
    """'"taro.."@docomo.ne.jp' -> 'taro..@docomo.ne.jp'."""
    local, _, domain = addr.rpartition("@")
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    return "%s@%s" % (local, domain.lower())


def submit(env, rcpts, subject=SUBJECT, body=BODY, **kw):
    data = env.submission(rcpts, subject, body, **kw)
    sub = env.submit(data)
    reply = sub.one()
    check(reply.code == 250, "submission not accepted: %r\n%s", reply, "\n".join(sub.transcript))
    return H.job_id_of(reply)


def deliveries_by_addr(env, job_id):
    return {plain(d["address"]): d for d in env.deliveries(job_id)}


def describe(d):
    return "delivery %s %s: state=%s attempts=%s last=%s %s %r" % (
        d["id"], d["address"], d["state"], d["attempts"], d["last_code"], d["last_status"], d["last_text"])


def wait_delivery(env, job_id, addr, pred, timeout, what):
    """Wait until pred(row) holds for the delivery of addr; the row."""
    last = {}

    def ok():
        for daemon in (env.gateway, env.intake):
            daemon.assert_running()
        d = deliveries_by_addr(env, job_id).get(addr)
        last["d"] = d
        return d if d is not None and pred(d) else None
    try:
        return H.wait_until(ok, timeout, interval=0.1, what=what)
    except H.TestFailure as e:
        raise H.TestFailure("%s; %s" % (e, describe(last["d"]) if last.get("d") else "no delivery row"))


FIELD_RX = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def delivery_lines(env, dlv_id):
    """The gateway's "delivery job=.. dlv=.. ..." log lines for one delivery,
    each as a dict of its fields (quoted values unquoted) and "line"."""
    out = []
    for line in env.gateway.log_text().splitlines():
        i = line.find(" delivery job=")
        if i < 0:
            continue
        fields = {k: (v[1:-1] if v.startswith('"') else v) for k, v in FIELD_RX.findall(line[i:])}
        if fields.get("dlv") == str(int(dlv_id)):
            fields["line"] = line[i + 1:]
            out.append(fields)
    return out


def connected_lines(env, dest):
    """(host, tls, peer) of the gateway's "connected" lines for a destination."""
    rx = re.compile(r'dest=%s host=(\S+) connected tls="([^"]*)" peer="([^"]*)"' % re.escape(dest))
    return [m.groups() for m in rx.finditer(env.gateway.log_text())]


def mail_commands(sink, dlv_id):
    """MAIL commands the sink saw for a delivery (its envelope sender names it)."""
    rx = re.compile(r"^<?bounce\+%d(?:[^0-9@][^@]*)?@" % int(dlv_id), re.I)
    return sum(1 for _, sender in sink.mail_times() if rx.match(sender or ""))


def arrived(sink, wire_rcpt):
    return [m for m in sink.messages() if [H.addr_of(r) for r in m["rcpts"]] == [wire_rcpt]]


def header_block(data):
    end = data.find(b"\r\n\r\n")
    check(end > 0, "no end of header in the outgoing message")
    return data[:end + 2]


def header_fields(data):
    """Names of the header fields, in order (continuation lines folded in)."""
    names = []
    for line in header_block(data).split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            check(bool(names), "the header starts with a continuation line")
            continue
        m = re.match(rb"([!-9;-~]+):", line)
        check(m is not None, "a header line that is neither a field nor a continuation: %r", line)
        names.append(m.group(1).decode("ascii").lower())
    return names


# --------------------------------------------------------------------------
# 1. TLS to relays.

@H.timeout(75)
def test_relay_tls_verified():
    env = H.Env("up_tls")
    certs = Certs(os.path.join(env.dir, "pki"))
    host = relay_host()
    good = {
        "starttls": tls_relay(env, "starttls", certs.server, "starttls", certs.ca),
        "smtps": tls_relay(env, "smtps", certs.server, "smtps", certs.ca),
    }
    bad = {
        # name: (sink, what the reason must say)
        "wrongname": (tls_relay(env, "wrongname", certs.wrong, "starttls", certs.ca), "host name mismatch"),
        "untrusted": (tls_relay(env, "untrusted", certs.untrusted, "starttls", certs.ca), "certificate verify failed"),
        "untrustedsmtps": (tls_relay(env, "untrustedsmtps", certs.untrusted, "smtps", certs.ca),
                           "certificate verify failed"),
    }
    names = list(good) + list(bad)
    for name in names:
        env.route("%s.example" % name, "relay:%s" % name)
    # A refused certificate is retried, but not within this test.
    env.config.section("retry").update({"intervals": "5m", "max_attempts": 5})
    env.start()
    rcpts = ["user@%s.example" % n for n in names]
    job_id = submit(env, rcpts)

    for name, sink in good.items():
        check(sink.wait_for(1, 20), "sink %s: no message within 20s; %s", name,
              describe(deliveries_by_addr(env, job_id)["user@%s.example" % name]))
    for name in bad:
        wait_delivery(env, job_id, "user@%s.example" % name, lambda d: int(d["attempts"]) >= 1, 20,
                      "the delivery through %s to be tried" % name)
    by = deliveries_by_addr(env, job_id)

    for name, sink in good.items():
        addr = "user@%s.example" % name
        d = wait_delivery(env, job_id, addr, lambda d: d["state"] == "sent", 10, "%s to be sent" % addr)
        check_eq(int(d["attempts"]), 1, "attempts through %s" % name)
        msgs = sink.messages()
        check_eq(len(msgs), 1, "messages at sink %s" % name)
        m = msgs[0]
        check_eq([H.addr_of(r) for r in m["rcpts"]], [addr], "recipients at sink %s" % name)
        check(m["tls"] in ("TLSv1.2", "TLSv1.3"), "sink %s: the message came over %r, not TLS", name, m["tls"])
        check(m["tls_cipher"], "sink %s: no cipher recorded", name)
        conns = connected_lines(env, "relay:%s" % name)
        check(conns, "the gateway logged no 'connected' line for relay:%s:\n%s", name, H.tail(env.gateway.log_path, 30))
        c_host, c_tls, c_peer = conns[0]
        check_eq(c_host, host, "host in the connected line of relay:%s" % name)
        check_eq(c_tls, "%s %s verified" % (m["tls"], m["tls_cipher"]),
                 "tls in the connected line of relay:%s (protocol, cipher, verification)" % name)
        check_eq(c_peer, "CN=localhost", "peer in the connected line of relay:%s" % name)
        lines = delivery_lines(env, d["id"])
        check(lines and lines[-1]["status"] == "sent", "no 'status=sent' log line for %s: %r", addr,
              [l["line"] for l in lines])
        # Nothing in clear: with STARTTLS, one EHLO and STARTTLS before TLS.
        check_eq(mail_commands(sink, d["id"]), 1, "MAIL commands at sink %s" % name)

    mismatch_line = ""
    for name, (sink, reason) in bad.items():
        addr = "user@%s.example" % name
        d = by[addr]
        check(d["state"] == "deferred", "%s: a refused certificate must defer, not %s (%s)",
              addr, d["state"], describe(d))
        check_eq(int(d["attempts"]), 1, "attempts through %s" % name)
        check(reason in (d["last_text"] or ""), "%s: last_text does not say %r: %s", addr, reason, describe(d))
        lines = delivery_lines(env, d["id"])
        check(len(lines) == 1, "%s: want one delivery log line, got %r", addr, [l["line"] for l in lines])
        line = lines[0]
        check_eq(line["status"], "deferred", "status in the log line of %s" % addr)
        check(reason in line["reply"], "%s: the log line does not name %r: %s", addr, reason, line["line"])
        if name == "wrongname":
            check("expected localhost" in line["reply"], "the mismatch line does not name the expected host: %s",
                  line["line"])
            mismatch_line = line["line"]
        st = sink.stats()
        check_eq(sink.mail_times(), [], "MAIL commands at sink %s (after a refused certificate)" % name)
        check_eq(sink.messages(), [], "messages at sink %s" % name)
        if name in ("wrongname", "untrusted"):
            # (An SMTPS sink counts only connections whose handshake passed.)
            check(st["connections"] >= 1, "sink %s: the gateway never connected", name)
            # EHLO and STARTTLS per connection; nothing else in clear.
            check(st["commands"] <= 2 * st["connections"],
                  "sink %s: %d commands on %d connections: more than EHLO and STARTTLS in clear",
                  name, st["commands"], st["connections"])
        check(not connected_lines(env, "relay:%s" % name), "the gateway logged relay:%s as connected", name)

    check(env.job(job_id)["state"] != "done", "job done while three deliveries wait for a retry")
    env.stop_clean()
    # Last, so that it hides nothing above: the mismatch names the
    # certificate's own name too, not only the one expected.
    check("wrong.example" in mismatch_line, "the host name mismatch does not say what the certificate is for: %s",
          mismatch_line)


# --------------------------------------------------------------------------
# 2. AUTH.

def secret_file(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


@H.timeout(60)
def test_relay_auth():
    env = H.Env("up_auth")
    certs = Certs(os.path.join(env.dir, "pki"))
    user, password = "hato-gw", "c0rrect horse battery"
    users = {user: password}
    no_clear_auth = {"auth_without_tls": False}
    ok_pw = secret_file(os.path.join(env.dir, "auth-ok.secret"), password)
    bad_pw = secret_file(os.path.join(env.dir, "auth-bad.secret"), "wrong horse battery")
    ok_sink = tls_relay(env, "authok", certs.server, "starttls", certs.ca, script=no_clear_auth, users=users,
                        auth_user=user, auth_password_file=ok_pw)
    bad_sink = tls_relay(env, "authbad", certs.server, "starttls", certs.ca, script=no_clear_auth, users=users,
                         auth_user=user, auth_password_file=bad_pw)
    env.route("authok.example", "relay:authok")
    env.route("authbad.example", "relay:authbad")
    env.start()

    # A password file readable by others is refused, by name.
    r = H.run([H.GATEWAY, "--check-config", "--config", env.config.path], check_rc=False, timeout=15)
    check(r.returncode == 0, "--check-config refused the good configuration (%d):\n%s%s", r.returncode, r.stdout, r.stderr)
    open_pw = secret_file(os.path.join(env.dir, "auth-open.secret"), password, mode=0o644)
    bad_ini = os.path.join(env.dir, "open-secret.ini")
    with open(env.config.path, encoding="utf-8") as f:
        text = f.read()
    check(ok_pw in text, "the configuration does not name %s", ok_pw)
    with open(bad_ini, "w", encoding="utf-8") as f:
        f.write(text.replace(ok_pw, open_pw))
    r = H.run([H.GATEWAY, "--check-config", "--config", bad_ini], check_rc=False, timeout=15)
    out = r.stdout + r.stderr
    check(r.returncode != 0, "--check-config accepted a password file of mode 0644:\n%s", out)
    check(open_pw in out, "the refusal does not name the password file %s:\n%s", open_pw, out)

    job_id = submit(env, ["user@authok.example", "user@authbad.example"])
    env.wait_job_done(job_id, 20)
    by = deliveries_by_addr(env, job_id)

    d = by["user@authok.example"]
    check(d["state"] == "sent", "with the right password: %s", describe(d))
    msgs = ok_sink.messages()
    check_eq(len(msgs), 1, "messages at the AUTH relay")
    check_eq(msgs[0]["auth_user"], user, "the user the relay recorded")
    check(msgs[0]["tls"], "AUTH relay: the message came in clear")

    d = by["user@authbad.example"]
    check(d["state"] == "failed", "with a wrong password the delivery must fail: %s", describe(d))
    check_eq(int(d["attempts"]), 1, "attempts with a wrong password")
    check_eq(d["last_code"], 535, "last_code with a wrong password")
    check_eq(d["last_status"], "5.7.8", "last_status with a wrong password")
    check("authentication failed" in (d["last_text"] or ""), "last_text lacks the server's reply: %s", describe(d))
    check_eq(bad_sink.mail_times(), [], "MAIL commands after a refused AUTH")
    check_eq(bad_sink.messages(), [], "messages after a refused AUTH")
    lines = delivery_lines(env, d["id"])
    check(lines and lines[-1]["status"] == "failed" and lines[-1]["code"] == "535",
          "log line of the refused AUTH: %r", [l["line"] for l in lines])
    env.stop_clean()


# --------------------------------------------------------------------------
# 4. DKIM through the gateway.

class DkimKey:
    """A key made by openssl genpkey (mode 0600) and its DNS record."""

    def __init__(self, d, kind, domain, selector):
        self.kind, self.domain, self.selector = kind, domain, selector
        self.path = os.path.join(d, "%s-%s.pem" % (kind, domain))
        args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "rsa" else ["-algorithm", "ed25519"]
        old = os.umask(0o077)
        try:
            H.run([OPENSSL, "genpkey"] + args + ["-out", self.path], timeout=60)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        der = subprocess.run([OPENSSL, "pkey", "-in", self.path, "-pubout", "-outform", "DER"],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, check=True, timeout=30).stdout
        # RFC 8463: an Ed25519 p= is the bare 32-octet key.
        pub = der[-32:] if kind == "ed25519" else der
        self.record = ("v=DKIM1; k=%s; p=%s" % (kind, base64.b64encode(pub).decode())).encode()
        self.name = ("%s._domainkey.%s." % (selector, domain)).encode()


def flip_body_octet(data):
    i = data.index(b"\r\n\r\n") + 4
    m = re.search(rb"[A-Za-z0-9]", data[i:])
    check(m is not None, "no letter or digit in the body")
    j = i + m.start()
    return data[:j] + (b"B" if data[j:j + 1] == b"A" else b"A") + data[j + 1:]


@H.timeout(75)
def test_dkim_through_gateway():
    env = H.Env("up_dkim")
    keydir = os.path.join(env.dir, "dkim")
    os.mkdir(keydir, 0o700)
    keys = [DkimKey(keydir, "rsa", "example.co.jp", "hato2026"),
            DkimKey(keydir, "ed25519", "example.jp", "ed2026")]
    for k in keys:
        env.config.section("dkim %s" % ("example" if k.kind == "rsa" else "example-ed25519")).update({"domain": k.domain, "selector": k.selector, "key_file": k.path})
    senders = {"rsa": env.submitter, "ed25519": "dm@example.jp"}
    env.config.section("submitter marketing")["address"] = list(senders.values())
    utf8 = env.relay_sink("plain")
    jis = env.relay_sink("jis")
    env.config.section("relay jis")["charset"] = "iso-2022-jp"
    env.route("docomo.ne.jp", "relay:jis")
    env.route("*", "relay:plain")
    env.start()

    records = {k.name: k.record for k in keys}

    def dnsfunc(name, timeout=5):
        return records.get(name)

    jobs = {}
    for k in keys:
        rcpts = ["%s@docomo.ne.jp" % k.kind, "%s@example.com" % k.kind]
        jobs[k.kind] = submit(env, rcpts, from_addr=senders[k.kind])
    for job_id in jobs.values():
        env.wait_job_done(job_id, 25)
    check(utf8.wait_for(2, 5) and jis.wait_for(2, 5), "messages at the sinks: %d utf-8, %d iso-2022-jp",
          len(utf8.messages()), len(jis.messages()))

    for k in keys:
        algo = b"rsa-sha256" if k.kind == "rsa" else b"ed25519-sha256"
        for sink, rcpt in ((jis, "%s@docomo.ne.jp" % k.kind), (utf8, "%s@example.com" % k.kind)):
            got = arrived(sink, rcpt)
            check_eq(len(got), 1, "copies of %s" % rcpt)
            data = got[0]["data"]
            head = header_block(data).replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
            sig = re.search(rb"(?im)^DKIM-Signature:(.*)$", head)
            check(sig is not None, "%s: no DKIM-Signature:\n%s", rcpt, head.decode("ascii", "replace"))
            tags = dict((t.split(b"=", 1)[0].strip(), t.split(b"=", 1)[1].strip())
                        for t in sig.group(1).split(b";") if b"=" in t)
            check_eq(tags.get(b"a"), algo, "%s: a=" % rcpt)
            check_eq(tags.get(b"d"), k.domain.encode(), "%s: d=" % rcpt)
            check_eq(tags.get(b"s"), k.selector.encode(), "%s: s=" % rcpt)
            check_eq(tags.get(b"c"), b"relaxed/relaxed", "%s: c=" % rcpt)
            check(dkim.verify(data, dnsfunc=dnsfunc), "%s: the %s signature does not verify:\n%s",
                  rcpt, k.kind, data.decode("ascii", "replace")[:3000])
            check(not dkim.verify(flip_body_octet(data), dnsfunc=dnsfunc),
                  "%s: the %s signature still verifies with a body octet changed", rcpt, k.kind)
            msg = H.parse_message(data)
            check_eq(str(msg["Subject"]), SUBJECT, "%s: Subject" % rcpt)
            check_eq(H.text_body(msg).rstrip("\n"), BODY.rstrip("\n"), "%s: body" % rcpt)
    env.stop_clean()


# --------------------------------------------------------------------------
# 5 and 6. Charsets, header injection, the legacy address.

def encoded_word(text):
    return "=?UTF-8?B?%s?=" % base64.b64encode(text.encode("utf-8")).decode("ascii")


@H.timeout(75)
def test_charsets_and_headers():
    env = H.Env("up_charset")
    sink = env.relay_sink("jis")
    env.config.section("relay jis")["charset"] = "iso-2022-jp"
    env.route("docomo.ne.jp", "relay:jis")
    env.start()

    # ISO-2022-JP, 7bit, and a legacy address.
    jis_job = submit(env, ["taro@docomo.ne.jp", "taro..@docomo.ne.jp"])
    # ① is not in ISO-2022-JP: the message goes out in UTF-8.
    fb_subject = "丸数字のお知らせ"
    fb_body = "番号は①です。\nそのほかはいつもどおりです。\n"
    fb_job = submit(env, ["hanako@docomo.ne.jp"], fb_subject, fb_body)
    # Encoded words that decode to CR LF "Bcc: x@y": ASCII and Japanese.
    inject = {
        "jiro@docomo.ne.jp": "Sale\r\nBcc: x@y",
        "saburo@docomo.ne.jp": "お知らせ\r\nBcc: x@y",
    }
    inject_jobs = {}
    for rcpt, text in inject.items():
        inject_jobs[rcpt] = submit(env, [rcpt], None, BODY, mail_subject=encoded_word(text))

    for job_id in [jis_job, fb_job] + list(inject_jobs.values()):
        env.wait_job_done(job_id, 25)
    for job_id in [jis_job, fb_job] + list(inject_jobs.values()):
        for d in env.deliveries(job_id):
            check(d["state"] == "sent", "%s", describe(d))

    # ISO-2022-JP.
    for wire in ("taro@docomo.ne.jp", '"taro.."@docomo.ne.jp'):
        got = arrived(sink, wire)
        check_eq(len(got), 1, "copies arriving as RCPT TO:<%s>" % wire)
        data = got[0]["data"]
        check(all(b < 0x80 for b in data), "%s: an 8-bit octet in a 7bit ISO-2022-JP message", wire)
        msg = H.parse_message(data)
        check_eq(msg.get_content_type(), "text/plain", "%s: content type" % wire)
        check_eq(msg.get_content_charset(), "iso-2022-jp", "%s: charset" % wire)
        check_eq((msg["Content-Transfer-Encoding"] or "").lower(), "7bit", "%s: transfer encoding" % wire)
        check(re.search(rb"(?im)^Content-Type:\s*text/plain;\s*charset=\"?ISO-2022-JP\"?", header_block(data)),
              "%s: Content-Type does not say charset=ISO-2022-JP:\n%s", wire, header_block(data).decode("ascii"))
        check_eq(str(msg["Subject"]), SUBJECT, "%s: decoded Subject" % wire)
        check_eq(H.text_body(msg).rstrip("\n"), BODY.rstrip("\n"), "%s: decoded body" % wire)

    # The legacy address: quoted in RCPT TO (above) and in To.
    data = arrived(sink, '"taro.."@docomo.ne.jp')[0]["data"]
    to = re.search(rb"(?im)^To:[ \t]*(.*(?:\r\n[ \t].*)*)", header_block(data))
    check(to is not None, "no To header in the copy for taro..@docomo.ne.jp")
    check(b'"taro.."@docomo.ne.jp' in to.group(1), "To header %r does not show the quoted form", to.group(1))
    check_eq([(a.username, a.domain) for a in H.parse_message(data)["To"].addresses], [("taro..", "docomo.ne.jp")],
             "To addresses as parsed")

    # The fallback to UTF-8.
    got = arrived(sink, "hanako@docomo.ne.jp")
    check_eq(len(got), 1, "copies of the message with ①")
    data = got[0]["data"]
    msg = H.parse_message(data)
    check_eq(msg.get_content_charset(), "utf-8", "charset of the message with ① (want the fallback to UTF-8)")
    check(re.search(rb"(?im)^Content-Type:\s*text/plain;\s*charset=\"?UTF-8\"?", header_block(data)),
          "Content-Type of the message with ①:\n%s", header_block(data).decode("ascii", "replace"))
    check_eq(str(msg["Subject"]), fb_subject, "decoded Subject of the message with ①")
    check_eq(H.text_body(msg).rstrip("\n"), fb_body.rstrip("\n"), "decoded body of the message with ①")
    check(re.search(r"job=%d charset=iso-2022-jp fallback=utf-8" % fb_job, env.gateway.log_text()),
          "the gateway did not log the fallback of job %d:\n%s", fb_job, H.tail(env.gateway.log_path, 30))

    # No header from a submitter's CR LF.
    for rcpt, text in inject.items():
        job = env.job(inject_jobs[rcpt])
        check("Bcc: x@y" in (job["subject"] or ""), "the stored Subject %r is not the decoded word %r",
              job["subject"], text)
        got = arrived(sink, rcpt)
        check_eq(len(got), 1, "copies for %s" % rcpt)
        data = got[0]["data"]
        names = header_fields(data)
        check("bcc" not in names, "a Bcc header came out of the Subject %r:\n%s", text,
              header_block(data).decode("ascii", "replace"))
        check(all(b < 0x80 for b in header_block(data)), "non-ASCII octets in the header")
        msg = H.parse_message(data)
        check(msg["Bcc"] is None, "the parsed message has a Bcc header")
        subj = str(msg["Subject"])
        check("\r" not in subj and "\n" not in subj, "the decoded Subject %r holds CR or LF", subj)
        check_eq(names.count("subject"), 1, "Subject fields")
    everyone = [H.addr_of(r) for m in sink.messages() for r in m["rcpts"]]
    check("x@y" not in everyone, "x@y received a copy: %r", everyone)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
