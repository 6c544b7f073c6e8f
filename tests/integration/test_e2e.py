"""End to end: a submission by LMTP reaches the right relay for each carrier.

One mail to intake with recipients at docomo.ne.jp (one of them a legacy
address), i.softbank.jp, ezweb.ne.jp and example.com; three SMTP sinks stand in
for the docomo relay, the SoftBank relay and the default relay (au mail goes
through the default relay by [pace au] relay = default)."""

import os
import re

import hatotest as H
from hatotest import check, check_eq

SUBJECT = "週末限定セールのお知らせ"

# address -> (sink name, address as it must appear in RCPT TO)
RECIPIENTS = {
    "taro@docomo.ne.jp": ("docomo", "taro@docomo.ne.jp"),
    "taro..@docomo.ne.jp": ("docomo", '"taro.."@docomo.ne.jp'),
    "jiro@i.softbank.jp": ("softbank", "jiro@i.softbank.jp"),
    "hanako@ezweb.ne.jp": ("default", "hanako@ezweb.ne.jp"),
    "user@example.com": ("default", "user@example.com"),
}

BOUNCE_RX = re.compile(r"^bounce\+(\d+)(?:[.=+-][A-Za-z0-9_=-]+)?@" + re.escape(H.BOUNCE_DOMAIN) + r"$", re.I)


def carrier_env(name):
    env = H.Env(name)
    env.relay_sink("docomo")
    env.relay_sink("softbank")
    env.relay_sink("default")
    env.pace("au", relay="default")
    env.route("docomo.ne.jp", "relay:docomo")
    env.route("i.softbank.jp", "relay:softbank")
    env.route("ezweb.ne.jp", "pace:au")
    env.route("*", "relay:default")
    return env


def plain(addr):
    """'"taro.."@docomo.ne.jp' -> 'taro..@docomo.ne.jp'."""
    local, _, domain = addr.rpartition("@")
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    return "%s@%s" % (local, domain.lower())


def header_block(data):
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    check(end > 0, "no end of header in outgoing message")
    return data[:end]


def submit_and_check(env, data, subject, body):
    sub = env.submit(data)
    reply = sub.one()
    check(reply.code == 250, "submission not accepted: %r\n%s", reply, "\n".join(sub.transcript))
    job_id = H.job_id_of(reply)

    job = env.job(job_id)
    check(job is not None, "reply names job %d, which is not in the database", job_id)
    check_eq(len(env.jobs()), 1, "number of jobs")
    check_eq(job["subject"], subject, "jobs.subject")
    check_eq(job["body"].replace("\r\n", "\n").rstrip("\n"), body.rstrip("\n"), "jobs.body")
    check_eq(job["from_addr"].lower(), env.submitter, "jobs.from_addr")
    check_eq(int(job["recipients"]), len(RECIPIENTS), "jobs.recipients")

    total = len(RECIPIENTS)
    for name, sink in env.sinks.items():
        want = sum(1 for s, _ in RECIPIENTS.values() if s == name)
        check(sink.wait_for(want, 20), "sink %s: %d of %d messages arrived", name, len(sink.messages()), want)
    env.wait_job_done(job_id, 20)

    deliveries = env.deliveries(job_id)
    check_eq(len(deliveries), total, "number of deliveries")
    by_addr = {}
    for d in deliveries:
        by_addr[plain(d["address"])] = d
    check_eq(sorted(by_addr), sorted(RECIPIENTS), "delivery addresses")
    for addr, d in by_addr.items():
        check(d["state"] == "sent", "delivery %s (%s): state %r, want sent (last %s %s %s)",
              d["id"], addr, d["state"], d["last_code"], d["last_status"], d["last_text"])
        check_eq(int(d["attempts"]), 1, "attempts of %s" % addr)
        check(d["last_code"] is None or 200 <= int(d["last_code"]) < 300, "last_code of %s: %r", addr, d["last_code"])
        log = env.delivery_log(d["id"])
        check(len(log) >= 1 and log[-1]["outcome"] == "sent", "delivery_log of %s: %r", addr, log)

    seen = {}
    msgids = set()
    for name, sink in env.sinks.items():
        for m in sink.messages():
            rcpts = [H.addr_of(r) for r in m["rcpts"]]
            check(len(rcpts) == 1, "sink %s: a transaction with %d recipients %r (want one each)", name, len(rcpts), rcpts)
            rcpt = rcpts[0]
            key = plain(rcpt)
            check(key in RECIPIENTS, "sink %s: unexpected recipient %r", name, rcpt)
            want_sink, want_wire = RECIPIENTS[key]
            check(name == want_sink, "%s arrived at sink %s, want %s", rcpt, name, want_sink)
            check(rcpt == want_wire, "RCPT TO:<%s>, want RCPT TO:<%s>", rcpt, want_wire)
            check(key not in seen, "%s arrived twice (sinks %s and %s)", rcpt, seen.get(key), name)
            seen[key] = name

            mail_from = H.addr_of(m["mail_from"])
            mm = BOUNCE_RX.match(mail_from)
            check(mm is not None, "envelope sender %r is not bounce+<delivery>@%s", mail_from, H.BOUNCE_DOMAIN)
            check_eq(int(mm.group(1)), int(by_addr[key]["id"]), "delivery id in envelope sender of %s" % rcpt)
            if m.get("helo") is not None:
                check(H.GATEWAY_HOSTNAME in m["helo"], "EHLO %r, want %s", m["helo"], H.GATEWAY_HOSTNAME)

            data = m["data"]
            head = header_block(data)
            check(all(b < 128 for b in head), "non-ASCII bytes in the header of the copy for %s:\n%s",
                  rcpt, head.decode("utf-8", "replace"))
            check(re.search(rb"(?im)^subject:[ \t]*=\?", head) is not None,
                  "Subject of the copy for %s is not RFC 2047 encoded:\n%s", rcpt, head.decode("ascii", "replace"))
            for line in data.split(b"\n"):
                check(len(line.rstrip(b"\r")) <= 998, "a line over 998 octets in the copy for %s", rcpt)
            msg = H.parse_message(data)
            check_eq(str(msg["Subject"]), subject, "decoded Subject for %s" % rcpt)
            check_eq(H.text_body(msg).rstrip("\n"), body.rstrip("\n"), "decoded body for %s" % rcpt)
            check(msg["Message-ID"] is not None, "no Message-ID in the copy for %s", rcpt)
            check(msg["Message-ID"] not in msgids, "Message-ID %s used twice", msg["Message-ID"])
            msgids.add(msg["Message-ID"])
            froms = [a.addr_spec.lower() for a in msg["From"].addresses] if msg["From"] else []
            check_eq(froms, [env.submitter], "From of the copy for %s" % rcpt)
            check(msg["Date"] is not None, "no Date in the copy for %s", rcpt)
    check_eq(sorted(seen), sorted(RECIPIENTS), "recipients that arrived")

    out = env.ctl("jobs").stdout
    check(re.search(r"(?<![0-9])%d(?![0-9])" % job_id, out), "`hatoctl jobs` does not list job %d:\n%s", job_id, out)
    out = env.ctl("job", "show", job_id).stdout
    for addr in RECIPIENTS:
        local = addr.split("@")[0]
        check(local in out and addr.split("@")[1] in out, "`hatoctl job show %d` does not mention %s:\n%s", job_id, addr, out)
    check("sent" in out, "`hatoctl job show %d` does not say sent:\n%s", job_id, out)
    env.stop_clean()
    return job_id


def test_check_config():
    env = carrier_env("checkconf")
    path = env.write_config()
    r = H.run([H.INTAKE, "--check-config", "--config", path], check_rc=False, timeout=15)
    check(r.returncode == 0, "hato-intake --check-config refused a good file (%d):\n%s%s", r.returncode, r.stdout, r.stderr)
    r = H.run([H.GATEWAY, "--check-config", "--config", path], check_rc=False, timeout=15)
    check(r.returncode == 0, "hato-gateway --check-config refused a good file (%d):\n%s%s", r.returncode, r.stdout, r.stderr)

    # An unknown key: refused with file and line.
    bad = os.path.join(env.dir, "bad.ini")
    text = open(path, encoding="utf-8").read().replace("[gateway]\n", "[gateway]\nno_such_key = 1\n", 1)
    with open(bad, "w", encoding="utf-8") as f:
        f.write(text)
    lineno = text.splitlines().index("no_such_key = 1") + 1
    for binary in (H.INTAKE, H.GATEWAY):
        r = H.run([binary, "--check-config", "--config", bad], check_rc=False, timeout=15)
        out = r.stdout + r.stderr
        check(r.returncode != 0, "%s --check-config accepted an unknown key:\n%s", os.path.basename(binary), out)
        check("bad.ini" in out and str(lineno) in out, "%s: the error names no file and line (want bad.ini:%d):\n%s",
              os.path.basename(binary), lineno, out)

    # A bad route table line: refused by the gateway with file and line.
    with open(env.config.routes_path, "a", encoding="utf-8") as f:
        f.write("softbank.ne.jp   teleport:nowhere\n")
    nlines = len(open(env.config.routes_path, encoding="utf-8").read().splitlines())
    r = H.run([H.GATEWAY, "--check-config", "--config", path], check_rc=False, timeout=15)
    out = r.stdout + r.stderr
    check(r.returncode != 0, "hato-gateway --check-config accepted a bad route:\n%s", out)
    check("carriers.routes" in out and str(nlines) in out,
          "the route error names no file and line (want carriers.routes:%d):\n%s", nlines, out)


def test_db_init_and_routes():
    env = carrier_env("dbinit")
    env.write_config()
    env.init_db()
    for t in ("jobs", "deliveries", "delivery_log"):
        check(env.db.table_exists(t), "table %s missing after db init", t)
    env.init_db()  # idempotent
    env.ctl("db", "migrate")
    check_eq(env.db.scalar("SELECT COUNT(*) FROM jobs"), 0, "jobs after init")

    want = {
        "taro@docomo.ne.jp": "docomo",
        "taro..@docomo.ne.jp": "docomo",
        "jiro@i.softbank.jp": "softbank",
        "hanako@ezweb.ne.jp": "au",
        "user@example.com": "default",
    }
    for addr, dest in want.items():
        out = env.ctl("routes", "test", addr).stdout
        check(re.search(r"\b%s\b" % dest, out), "`hatoctl routes test %s` does not name %s:\n%s", addr, dest, out)


def test_iso2022jp_submission():
    env = carrier_env("e2e_jis")
    env.start()
    body = ("いつもご利用ありがとうございます。\n"
            "本日より三日間、全品二割引のセールを開催します。\n"
            "\n"
            ".から始まる行もそのまま届きます。\n"
            "詳しくは https://shop.example.jp/sale?id=42 をご覧ください。\n")
    data = env.submission(list(RECIPIENTS), SUBJECT, body, charset="iso-2022-jp", mail_subject="配信依頼")
    submit_and_check(env, data, SUBJECT, body)


def test_utf8_qp_alternative_submission():
    env = carrier_env("e2e_qp")
    env.start()
    subject = "鳩からのお知らせ🕊 〜 秋の感謝祭"
    body = ("秋の感謝祭のご案内です。\n"
            "割引率 = 30%、期間は十一月末まで。\n"
            + "とても長い行です。" * 30 + "\n"
            ".から始まる行\n"
            "髙橋さん、﨑本さんにもお届けします。\n")
    data = env.submission(list(RECIPIENTS), subject, body, charset="utf-8", encoding="quoted-printable",
                          alternative=True, mail_subject="DM request")
    submit_and_check(env, data, subject, body)


if __name__ == "__main__":
    H.main(globals())
