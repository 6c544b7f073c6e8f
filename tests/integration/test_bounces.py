"""Bounces back to intake: real DSN samples (tests/unit/data/dsn/) are
rewritten to name deliveries this test made (their recipient, and the
envelope sender the sink received, which is the delivery's bounce address)
and handed to intake by LMTP at that bounce address. Each is recorded
against its delivery; forged ones change nothing; an address that bounces
as unknown on two different days is suppressed."""

import base64
import hashlib
import hmac
import os
import re

import hatotest as H
from hatotest import check, check_eq

DSN_DIR = os.path.join(H.SOURCE, "tests", "unit", "data", "dsn")

# sample -> (its recipient, its VERP envelope sender), as written in the file
SAMPLES = {
    "postfix-failed.eml": ("nosuch@docomo.ne.jp", "bounce+1234.5f2a9c@bounce.hato.test"),
    "exim-failed.eml": ("gone@docomo.ne.jp", "bounce+2001.9a31c7@bounce.hato.test"),
    "jp-carrier-iso2022jp.eml": ("hanako@ezweb.ne.jp", "bounce+3101.5d0e7a@bounce.hato.test"),
    "postfix-delayed.eml": ("later@ezweb.ne.jp", "bounce+1235.77b01e@bounce.hato.test"),
}

# The deliveries: one address for each sample.
TARGET = {
    "postfix-failed.eml": "pf-nosuch@docomo.ne.jp",
    "exim-failed.eml": "ex-gone@docomo.ne.jp",
    "jp-carrier-iso2022jp.eml": "jp-hanako@ezweb.ne.jp",
    "postfix-delayed.eml": "pf-later@ezweb.ne.jp",
}


def bounce_env(name):
    env = H.Env(name)
    env.relay_sink("default")
    env.route("*", "relay:default")
    return env


def sample(name, rcpt, sender):
    with open(os.path.join(DSN_DIR, name), "rb") as f:
        data = f.read()
    old_rcpt, old_sender = SAMPLES[name]
    check(old_rcpt.encode() in data and old_sender.encode() in data, "sample %s changed", name)
    return data.replace(old_sender.encode(), sender.encode()).replace(old_rcpt.encode(), rcpt.encode())


def deliver(env, rcpts):
    """Submit a job to rcpts, wait until it is sent; returns {address:
    (delivery row, envelope sender the sink got)}."""
    data = env.submission(rcpts, "バウンスのテスト", "本文です。\n")
    reply = env.submit(data).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    job = H.job_id_of(reply)
    env.wait_job_done(job, 25)
    sink = env.sinks["default"]
    senders = {}
    for m in sink.messages():
        for r in m["rcpts"]:
            senders[H.addr_of(r)] = H.addr_of(m["mail_from"])
    out = {}
    for d in env.deliveries(job):
        check_eq(d["state"], "sent", "state of delivery to %s" % d["address"])
        check(d["address"] in senders, "no message for %s at the sink", d["address"])
        out[d["address"]] = (d, senders[d["address"]])
    return out


def bounce(env, rcpt, data):
    """One LMTP transaction from <> to rcpt; its final reply."""
    return env.submit(data, mail_from="", rcpts=[rcpt]).one()


def delivery(env, did):
    return env.db.query("SELECT * FROM deliveries WHERE id = %s", (did,))[0]


def snapshot(env):
    return (env.db.query("SELECT id, state, last_code, last_status, last_text FROM deliveries ORDER BY id"),
            env.db.query("SELECT * FROM delivery_log ORDER BY id"),
            env.db.query("SELECT * FROM address_failures ORDER BY id"),
            env.db.query("SELECT * FROM suppressions ORDER BY address"))


def verp_mac(env, delivery_id):
    """The MAC of mail/verp.c for a delivery id: HMAC-SHA256 under the site
    secret of b"b" and the id (8 bytes, big-endian), first 80 bits in
    lower-case base32. Used only for an id that no delivery has."""
    with open(env.secret_file, "rb") as f:
        key = f.read().rstrip(b"\r\n")
    md = hmac.new(key, b"b" + delivery_id.to_bytes(8, "big"), hashlib.sha256).digest()
    return base64.b32encode(md[:10]).decode().lower()


@H.timeout(120)
def test_dsn_samples_recorded():
    env = bounce_env("bounces")
    env.start()
    got = deliver(env, list(TARGET.values()))

    want = {
        # sample: (state after, log outcome, status, code, class)
        "postfix-failed.eml": ("failed", "bounced", "5.1.1", 550, "unknown-user"),
        "exim-failed.eml": ("failed", "bounced", "5.1.1", 550, "unknown-user"),
        "jp-carrier-iso2022jp.eml": ("failed", "bounced", None, 550, "unknown-user"),
        "postfix-delayed.eml": ("sent", "delayed", "4.2.2", 452, "mailbox-full"),
    }
    for name, addr in TARGET.items():
        d, sender = got[addr]
        check(re.match(r"^bounce\+%d\.[a-z2-7]{16}@%s$" % (d["id"], re.escape(H.BOUNCE_DOMAIN)), sender),
              "envelope sender %r of delivery %d", sender, d["id"])
        reply = bounce(env, sender, sample(name, addr, sender))
        check_eq(reply.code, 250, "reply to the bounce %s" % name)
        state, outcome, status, code, klass = want[name]
        row = delivery(env, d["id"])
        check_eq(row["state"], state, "state of delivery %d after %s" % (d["id"], name))
        log = env.delivery_log(d["id"])
        check_eq([r["outcome"] for r in log], ["sent", outcome], "delivery_log outcomes after %s" % name)
        b = log[-1]
        check_eq((b["status"] or None, b["code"], b["class"], b["stage"]), (status, code, klass, "dsn"),
                 "status, code, class, stage of the bounce row of %s" % name)
        check(addr in (b["text"] or ""), "bounce row text %r lacks the address" % b["text"])
        if state == "failed":
            check_eq((row["last_code"], row["last_status"] or None), (code, status),
                     "last_code, last_status after %s" % name)
            check(row["last_text"] == b["text"], "last_text %r" % row["last_text"])
    # A bounce fails a delivery: its job was done and stays done.
    jobs = {r["state"] for r in env.jobs()}
    check_eq(jobs, {"done"}, "job states after the bounces")
    # One day of failures: counted, nothing suppressed yet.
    n = env.db.scalar("SELECT COUNT(*) FROM address_failures WHERE source = 'dsn' AND day = UTC_DATE()")
    check_eq(int(n), 3, "address failures recorded from the bounces")
    check_eq(env.db.query("SELECT * FROM suppressions"), [], "suppressions after one day of bounces")
    env.stop_clean()


@H.timeout(120)
def test_forged_bounces_change_nothing():
    env = bounce_env("bounceforge")
    env.start()
    a, b = "forge-a@docomo.ne.jp", "forge-b@docomo.ne.jp"
    got = deliver(env, [a, b])
    (da, sa), (db, sb) = got[a], got[b]
    local_a = sa.split("@")[0]
    mac_a = local_a.split(".", 1)[1]
    before = snapshot(env)

    # A wrong MAC (one character changed).
    bad_mac = mac_a[:-1] + ("a" if mac_a[-1] != "a" else "b")
    forged = "bounce+%d.%s@%s" % (da["id"], bad_mac, H.BOUNCE_DOMAIN)
    check_eq(bounce(env, forged, sample("postfix-failed.eml", a, forged)).code, 250, "reply to a wrong MAC")
    # A's good MAC on B's delivery id.
    swapped = "bounce+%d.%s@%s" % (db["id"], mac_a, H.BOUNCE_DOMAIN)
    check_eq(bounce(env, swapped, sample("postfix-failed.eml", b, swapped)).code, 250, "reply to another id's MAC")
    # A good MAC of a delivery that does not exist.
    ghost_id = int(db["id"]) + 1000
    ghost = "bounce+%d.%s@%s" % (ghost_id, verp_mac(env, ghost_id), H.BOUNCE_DOMAIN)
    check_eq(bounce(env, ghost, sample("postfix-failed.eml", a, ghost)).code, 250, "reply for an unknown delivery")
    # A genuine address, but a mail that is no bounce.
    with open(os.path.join(DSN_DIR, "not-a-bounce.eml"), "rb") as f:
        check_eq(bounce(env, sa, f.read()).code, 250, "reply to a mail that is no bounce")
    check(snapshot(env) == before, "a forged or unreadable bounce changed the database")
    log = env.intake.log_text()
    check(log.count("status=discarded") >= 4, "the discarded bounces are not all logged:\n%s", log[-3000:])

    # Other addresses at the bounce domain are refused at RCPT; the bounce
    # domain is matched without regard to case.
    r = env.submit(b"Subject: x\r\n\r\nx\r\n", mail_from="", rcpts=["postmaster@" + H.BOUNCE_DOMAIN])
    check_eq(r.rcpt[0].code, 550, "RCPT of another address at the bounce domain")
    upper = sa.split("@")[0] + "@" + H.BOUNCE_DOMAIN.upper()
    check_eq(bounce(env, upper, sample("postfix-failed.eml", a, sa)).code, 250, "reply at the upper-case domain")
    check_eq(delivery(env, da["id"])["state"], "failed", "state after a genuine bounce at the upper-case domain")
    check_eq(delivery(env, db["id"])["state"], "sent", "the other delivery after it")
    env.stop_clean()


@H.timeout(120)
def test_unknown_user_two_days_suppresses():
    env = bounce_env("bounce2d")
    env.start()
    addr = "twice@docomo.ne.jp"
    d1, s1 = deliver(env, [addr])[addr]
    check_eq(bounce(env, s1, sample("exim-failed.eml", addr, s1)).code, 250, "reply to the first bounce")
    rows = env.db.query("SELECT * FROM address_failures WHERE address = %s", (addr,))
    check_eq([(r["class"], r["source"], int(r["delivery_id"])) for r in rows],
             [("unknown-user", "dsn", int(d1["id"]))], "address failures after the first bounce")
    check(rows[0]["reply"].startswith("550 5.1.1 <%s>" % addr) and rows[0]["reply"].count("550") == 1,
          "the failure's reply %r", rows[0]["reply"])
    check_eq(env.db.query("SELECT * FROM suppressions"), [], "suppressions after the first bounce")
    # That was "two days ago"; today it bounces again.
    env.db.query("UPDATE address_failures SET day = day - INTERVAL 2 DAY, at = at - INTERVAL 2 DAY")
    got = deliver(env, [addr])
    d2, s2 = got[addr]
    check(s2 != s1, "the second delivery has the same bounce address")
    check_eq(bounce(env, s2, sample("postfix-failed.eml", addr, s2)).code, 250, "reply to the second bounce")
    s = env.db.query("SELECT * FROM suppressions WHERE address = %s", (addr,))
    check(s, "%s not suppressed after unknown-user bounces on two days", addr)
    check_eq((s[0]["reason"], int(s[0]["delivery_id"])), ("unknown-user", int(d2["id"])), "suppression")
    env.intake.wait_log(r"bounce job=%d dlv=%d .*cleaning=suppressed" % (d2["job_id"], d2["id"]))
    reply = env.submit(env.submission([addr, "alive@docomo.ne.jp"], "次", "本文\n")).one()
    check(" 1 accepted, 0 rejected, 1 suppressed" in reply.text, "reply %r", reply.text)
    env.stop_clean()


@H.timeout(120)
def test_bounce_while_database_away():
    env = bounce_env("bouncedb")
    env.start()
    addr = "away@docomo.ne.jp"
    d, sender = deliver(env, [addr])[addr]
    data = sample("postfix-failed.eml", addr, sender)
    env.db.stop()
    reply = bounce(env, sender, data)
    check_eq((reply.code, reply.status), (451, "4.3.0"), "reply to a bounce while the database is away")
    env.db.start()
    # The intake's connection died with the server: the next bounce gets
    # a new one, and is recorded.
    reply = bounce(env, sender, data)
    check_eq(reply.code, 250, "reply to the bounce once the database is back")
    check_eq(delivery(env, d["id"])["state"], "failed", "state after the bounce")
    check_eq([r["outcome"] for r in env.delivery_log(d["id"])], ["sent", "bounced"], "delivery_log outcomes")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
