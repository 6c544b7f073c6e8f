"""Hostile input: each case has a defined outcome, and nothing is lost.

Submissions are written here byte by byte (not by Python's email package,
which would repair them) and sent through raw LMTP. Two relays stand in for
the carriers: one takes UTF-8 (base64 bodies), one ISO-2022-JP (7bit
bodies, where dot-stuffing and line lengths matter most). The sinks end
DATA at a bare "\\n.\\n" as well as at CRLF.CRLF, as a lenient server would:
if the gateway ever let a submitter's text end its DATA, the sink would see
a message cut short and commands in what followed."""

import base64
import email
import email.header
import email.policy
import os
import re
import time

import hatotest as H
from hatotest import check, check_eq

U8 = "utf8.example"
JIS = "jis.example"
TAIL = "本文の終わり END-OF-DM"


def hostile_env(name):
    env = H.Env(name)
    env.relay_sink("u8")
    env.relay_sink("jis")
    env.config.section("relay jis")["charset"] = "iso-2022-jp"
    env.route(U8, "relay:u8")
    env.route(JIS, "relay:jis")
    env.route("*", "relay:u8")
    return env


def raw_mail(env, control, body, subject="hostile", extra_headers=(), msgid=None, ctype=None, cte="8bit"):
    """A submission as raw bytes: headers and a text/plain part of body
    (bytes, exactly as given: bare LFs, NULs and long lines stay)."""
    msgid = msgid or "<%s@submitter.test>" % os.urandom(8).hex()
    head = [b"From: " + env.submitter.encode(), b"To: " + env.submit_address.encode(),
            b"Subject: " + (subject if isinstance(subject, bytes) else subject.encode()),
            b"Date: Sun, 22 Nov 2026 12:00:00 +0900", b"Message-ID: " + msgid.encode(),
            b"MIME-Version: 1.0"]
    head += [h if isinstance(h, bytes) else h.encode() for h in extra_headers]
    if ctype is not False:
        head.append(ctype or b"Content-Type: text/plain; charset=utf-8")
        head.append(b"Content-Transfer-Encoding: " + cte.encode())
    ctl = "".join(line + "\r\n" for line in control).encode()
    return b"\r\n".join(head) + b"\r\n\r\n" + ctl + b"\r\n" + body, msgid


def control(env, rcpts, *extra):
    return ["Token: %s" % env.token, "To: %s" % ", ".join(rcpts)] + list(extra)


class Raw:
    """One LMTP session that sends DATA content as raw bytes."""

    def __init__(self, env):
        self.c = H.LMTPClient(("127.0.0.1", env.lmtp_port), timeout=60)
        check(self.c.lhlo().ok, "LHLO")
        self.env = env

    def send(self, raw, mail_from=None):
        """raw must end the DATA itself; returns the reply after it."""
        c = self.c
        check(c.mail(mail_from or self.env.submitter).ok, "MAIL")
        check(c.rcpt(self.env.submit_address).ok, "RCPT")
        r = c.command("DATA")
        check_eq(r.code, 354, "reply to DATA")
        c.sock.sendall(raw)
        return c.reply()

    def still_in_step(self):
        """NOOP answers with its own reply: nothing the message carried was
        taken for a command."""
        r = self.c.command("NOOP")
        check(r.code == 250 and r.text == "2.0.0 ok", "reply to NOOP after the message: %r "
              "(a reply to something smuggled in the DATA?)", r)
        check_eq(self.c.buf, b"", "unread replies after NOOP")

    def close(self):
        self.c.quit()
        self.c.close()


def stuff(data):
    """Dot-stuff lines that start with '.' after CRLF only (what a client
    that follows RFC 5321 to the letter does), and add the end."""
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", data)
    return out + (b"" if out.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def jobs_with(env, msgid):
    return env.db.query("SELECT * FROM jobs WHERE source_msgid = %s", (msgid.strip("<>"),))


def sink_messages(env, addr):
    name = "jis" if addr.endswith("@" + JIS) else "u8"
    return [m for m in env.sinks[name].messages() if any(H.addr_of(r) == addr for r in m["rcpts"])]


def check_wire(data, who):
    """What the gateway wrote: CRLF line ends only, no line over 998
    octets (RFC 5322 2.1.1), headers 7-bit."""
    lines = data.split(b"\r\n")
    for i, line in enumerate(lines):
        check(b"\n" not in line and b"\r" not in line, "%s: bare CR or LF in line %d: %r", who, i + 1, line[:80])
        check(len(line) <= 998, "%s: line %d is %d octets", who, i + 1, len(line))
    head = data.split(b"\r\n\r\n", 1)[0]
    check(all(b < 0x80 for b in head), "%s: 8-bit octets in the header:\n%r", who, head[:2000])


def body_of(data):
    msg = email.message_from_bytes(data, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    return msg, part.get_content()


def delivered(env, addrs, timeout=30):
    for a in addrs:
        H.wait_until(lambda: sink_messages(env, a), timeout, what="a message to %s" % a)
    time.sleep(0.3)  # anything more (a split message) would be right behind
    out = {}
    for a in addrs:
        got = sink_messages(env, a)
        check_eq(len(got), 1, "messages at the sink for %s" % a)
        check_wire(got[0]["data"], a)
        out[a] = got[0]
    return out


SMUGGLED = (b"MAIL FROM:<evil@evil.example>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            b"From: dm-team@example.co.jp\r\nSubject: smuggled\r\n\r\n"
            b"Token: x\r\nTo: victim@evil.example\r\n")


@H.timeout(150)
def test_smuggling_long_lines_and_headers():
    env = hostile_env("hostile")
    env.start()
    raw = Raw(env)
    cases = []

    # 1. SMTP smuggling: a fake end of data with bare LFs, then commands.
    for i, fake_end in enumerate((b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n")):
        rcpts = ["smuggle%d@%s" % (i, U8), "smuggle%d@%s" % (i, JIS)]
        body = (b"first line" + fake_end + SMUGGLED % env.submit_address.encode() +
                b"\r\n.\n..\n.hidden\r\n" + TAIL.encode() + b"\r\n")
        data, msgid = raw_mail(env, control(env, rcpts), body,
                               subject="密輸 8-bit subject".encode())  # raw UTF-8 in a header
        r = raw.send(stuff(data))
        check_eq(r.code, 250, "reply to the mail with %r inside" % fake_end)
        raw.still_in_step()
        rows = jobs_with(env, msgid)
        check_eq(len(rows), 1, "jobs for the mail with %r inside" % fake_end)
        check("MAIL FROM:<evil@evil.example>" in rows[0]["body"] and TAIL in rows[0]["body"],
              "the smuggled lines are not kept as text of the DM: %r", rows[0]["body"][:300])
        cases.append((rcpts, "MAIL FROM:<evil@evil.example>"))

    # 2. A line of 15,000 octets (5,000 kana) straight in the DATA.
    long_text = "あいうえお" * 1000
    rcpts = ["long@" + U8, "long@" + JIS]
    data, msgid = raw_mail(env, control(env, rcpts, "Subject: 長い行"), long_text.encode() + b"\r\n" +
                           TAIL.encode() + b"\r\n")
    r = raw.send(stuff(data))
    check_eq(r.code, 250, "reply to the mail with a 15,000-octet line")
    cases.append((rcpts, long_text))

    # 3. RFC 2047 words that decode to CR LF and a header of their own, in
    # the mail's Subject (used when the control block has none).
    evil = "件名\r\nBcc: victim@evil.example\r\nX-Injected: yes"
    word = "=?UTF-8?B?%s?=" % base64.b64encode(evil.encode()).decode()
    word2 = "=?ISO-2022-JP?Q?=1B$B7oL>=1B(B=0D=0AReply-To:_evil@evil.example?="
    rcpts = ["inject@" + U8, "inject@" + JIS]
    data, msgid = raw_mail(env, control(env, rcpts), TAIL.encode() + b"\r\n", subject=word + " " + word2)
    r = raw.send(stuff(data))
    check_eq(r.code, 250, "reply to the mail with CR LF in an encoded word")
    cases.append((rcpts, TAIL))
    inject_rcpts = rcpts

    # 4. Bare LF line ends throughout, and octets 0x80-0xff in a header
    # that are not UTF-8 (Shift_JIS): the header is decoded or replaced,
    # never passed on raw.
    rcpts = ["lf@" + U8, "lf@" + JIS]
    data, msgid = raw_mail(env, control(env, rcpts), b"line one\nline two\n" + TAIL.encode() + b"\n",
                           subject="シフトJIS".encode("shift_jis"), extra_headers=[b"X-Mailer: \xff\xfe\x80"])
    r = raw.send(stuff(data.replace(b"\r\n", b"\n")))
    check_eq(r.code, 250, "reply to the mail with bare LF line ends and Shift_JIS in a header")
    cases.append((rcpts, "line two"))
    raw.still_in_step()
    raw.close()

    # What reached the carriers: one message per recipient, whole, clean.
    for rcpts, want in cases:
        got = delivered(env, rcpts)
        for a, m in got.items():
            msg, text = body_of(m["data"])
            flat = text.replace("\r\n", "").replace("\n", "")
            check(want.replace("\r\n", "").replace("\n", "") in flat, "%s: %r is not in the body:\n%s",
                  a, want[:40], text[:500])
            check(TAIL in text, "%s: the end of the DM is missing (message cut short?):\n%s", a, text[-300:])
            check_eq(m["rcpts"], [m["rcpts"][0]], "recipients of the message to %s" % a)
    for a, m in delivered(env, inject_rcpts).items():
        head = m["data"].split(b"\r\n\r\n", 1)[0]
        names = [l.split(b":", 1)[0].lower() for l in head.split(b"\r\n") if l and l[:1] not in (b" ", b"\t")]
        for bad in (b"bcc", b"x-injected", b"reply-to"):
            check(bad not in names, "%s: a header %r was injected:\n%s", a, bad, head.decode("latin-1"))
        check_eq(names.count(b"subject"), 1, "Subject headers in the message to %s" % a)
    # Nothing went to an address the smuggled commands named.
    for s in env.sinks.values():
        for m in s.messages():
            check(not any("evil.example" in r for r in m["rcpts"]), "a message went to %r", m["rcpts"])
    env.stop_clean()


@H.timeout(120)
def test_refused_inputs_change_nothing():
    """Control blocks that try to set headers, broken MIME, NULs and
    unknown charsets: each gets its own answer, and the session and the
    daemon go on."""
    env = hostile_env("refused")
    env.start(gateway=False)
    raw = Raw(env)
    results = []

    def one(what, data, msgid, want_code, want_text=None):
        r = raw.send(stuff(data))
        results.append((what, r.code, r.text))
        check_eq(r.code, want_code, "reply to %s (%s)" % (what, r.text))
        if want_text:
            check(re.search(want_text, r.text), "reply to %s does not say why: %r", what, r.text)
        raw.still_in_step()
        if want_code != 250:
            check_eq(jobs_with(env, msgid), [], "jobs for %s" % what)
        return r

    for key in ("Bcc: victim@evil.example", "Reply-To: evil@evil.example", "X-Anything: 1",
                "Cc: victim@evil.example", "Content-Type: text/html", "Message-ID: <x@y>"):
        name = key.split(":")[0]
        data, msgid = raw_mail(env, control(env, ["a@" + U8], key), b"text\r\n")
        one("a control block with %s" % name, data, msgid, 550, r"5\.6\.0 .*line 3: unknown key '%s'" % re.escape(name))

    # NUL octets in the text are dropped and the text goes on after them
    # (the DM used to end at the first NUL, the rest lost without a word).
    data, msgid = raw_mail(env, ["Token: %s" % env.token, "To: nul@%s\x00, kept@%s" % (U8, U8)],
                           b"before\x00after\r\n" + TAIL.encode() + b"\r\n")
    r = one("NUL octets in the text", data, msgid, 250)
    job = jobs_with(env, msgid)[0]
    check_eq(job["body"].replace("\r\n", "\n"), "beforeafter\n" + TAIL + "\n", "body of the mail with NULs")
    check_eq(sorted(d["address"] for d in env.deliveries(job["id"])), ["kept@" + U8, "nul@" + U8],
             "recipients of the To: line with a NUL")

    # An unknown charset, and octets that are not valid in the declared
    # one: read as the charset guess finds them (mime.c), octets nothing
    # reads become U+FFFD; the mail is never refused or cut for it.
    data, msgid = raw_mail(env, control(env, ["cs@" + U8]), "テキスト\r\n".encode("shift_jis"),
                           ctype=b"Content-Type: text/plain; charset=x-no-such-charset")
    one("charset=x-no-such-charset", data, msgid, 250)
    check_eq(jobs_with(env, msgid)[0]["body"].strip(), "テキスト", "body in an unknown charset (Shift_JIS)")
    data, msgid = raw_mail(env, control(env, ["badutf8@" + U8]), b"caf\xe9 \xff " + TAIL.encode() + b"\r\n")
    one("invalid UTF-8 in a utf-8 part", data, msgid, 250)
    body = jobs_with(env, msgid)[0]["body"]
    check(body.startswith("caf") and body.rstrip().endswith(TAIL), "text around invalid octets lost: %r", body)

    # Multiparts nested 100 deep, the control block in the innermost.
    depth = 100
    ctl = "".join(l + "\r\n" for l in control(env, ["deep@" + U8])).encode() + b"\r\ndeep text\r\n"
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + ctl
    for d in range(depth):
        b = b"b%03d" % d
        inner = (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n--" + b + b"\r\n" + inner +
                 b"\r\n--" + b + b"--\r\n")
    msgid = "<deep-%s@submitter.test>" % os.urandom(4).hex()
    data = (b"From: " + env.submitter.encode() + b"\r\nTo: " + env.submit_address.encode() +
            b"\r\nSubject: deep\r\nMessage-ID: " + msgid.encode() + b"\r\nMIME-Version: 1.0\r\n" + inner)
    one("multipart nested %d deep" % depth, data, msgid, 250)
    check_eq(jobs_with(env, msgid)[0]["body"].strip(), "deep text", "body of the nested mail")
    raw.close()
    for what, code, text in results:
        print("  %-40s %d %s" % (what, code, text))
    env.intake.assert_log_clean()
    env.stop_clean()


# Addresses with quotes, display names, comments: (as written, the address
# stored, RCPT TO at the relay), or (as written, None) for a rejection.
ADDRESSES = [
    ('"john doe"@utf8.example', "john doe@utf8.example", '"john doe"@utf8.example'),
    ("Taro Yamada <taro@utf8.example>", "taro@utf8.example", "taro@utf8.example"),
    ('"Yamada, Taro" <yamada@utf8.example>', "yamada@utf8.example", "yamada@utf8.example"),
    ('"a\\"b"@utf8.example', 'a"b@utf8.example', '"a\\"b"@utf8.example'),
    # An address inside the quotes stays a local part: it goes to utf8.example.
    ('"evil@evil.example"@utf8.example', "evil@evil.example@utf8.example", '"evil@evil.example"@utf8.example'),
    ("evil@evil.example <good@utf8.example>", "good@utf8.example", "good@utf8.example"),
    ("<z@utf8.example>", "z@utf8.example", "z@utf8.example"),
    ("v@utf8.example.", "v@utf8.example", "v@utf8.example"),
    ('"v2"@UTF8.Example', "v2@utf8.example", "v2@utf8.example"),
    ("x@utf8.example (comment)", None, None),
    ("(comment)y@utf8.example", None, None),
    ("w@[127.0.0.1]", None, None),
]


@H.timeout(90)
def test_addresses_with_quotes_and_comments():
    env = H.Env("addresses")
    env.relay_sink("u8")
    env.route("*", "relay:u8")
    env.start()
    data = H.make_submission(env.submitter, env.token, [], "宛先", "本文\n", to=env.submit_address,
                             control=["Token: %s" % env.token] + ["To: %s" % a for a, _, _ in ADDRESSES])
    r = env.submit(data).one()
    good = [x for x in ADDRESSES if x[1]]
    check_eq(r.code, 250, "reply to the list (%s)" % r.text)
    check(re.search(r"\b%d accepted, %d rejected" % (len(good), len(ADDRESSES) - len(good)), r.text),
          "reply does not count them: %r", r)
    job = H.job_id_of(r)
    check_eq(sorted(d["address"] for d in env.deliveries(job)), sorted(x[1] for x in good), "addresses stored")
    env.wait_job_done(job, 20)
    got = sorted(rc for m in env.sinks["u8"].messages() for rc in m["rcpts"])
    check_eq(got, sorted(x[2] for x in good), "RCPT TO at the relay")
    env.stop_clean()


@H.timeout(90)
def test_relay_says_250_before_the_data():
    """A relay that answers 250 as soon as DATA is under way, then reads the
    message and answers again. The early 250 is not taken as the reply to
    the dot: the delivery is not counted as sent (deferred, with the reason
    in the log), and the relay's other recipients are not disturbed."""
    env = H.Env("early250")
    env.relay_sink("default", script={"rules": [
        {"match": "early@*", "content": ["early 250 2.0.0 Ok: taken before the data"]}]})
    env.route("*", "relay:default")
    env.config.section("retry").update({"intervals": "1s", "max_attempts": 3})
    env.start()
    reply = env.submit(env.submission(["early@example.com"], "早すぎる返事", "本文\n" * 2000)).one()
    check_eq(reply.code, 250, "the submission")
    job = H.job_id_of(reply)
    ok = env.submit(env.submission(["fine@example.com"], "普通", "本文\n")).one()
    check_eq(ok.code, 250, "the second submission")
    env.wait_job_done(H.job_id_of(ok), 20)

    def attempts():
        d = env.deliveries(job)[0]
        return d if int(d["attempts"]) >= 2 or d["state"] == "sent" else None
    d = H.wait_until(attempts, 30, what="two attempts at early@example.com, or its end")
    check(d["state"] != "sent", "the delivery was counted as sent on a 250 that came before the data: %r", d)
    log = env.delivery_log(d["id"])
    check(log and all(r["outcome"] != "sent" for r in log), "a send log row says sent: %r", log)
    env.gateway.wait_log(r"dlv=%s .*reply before the end of the message data: 250" % d["id"], 10)
    sent = [H.addr_of(r) for m in env.sinks["default"].messages() for r in m["rcpts"]]
    check_eq(sent, ["fine@example.com"], "messages the relay recorded")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
