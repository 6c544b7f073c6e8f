"""Receipts, error receipts and completion reports, end to end: intake
writes them in the job's transaction, the gateway sends them as they were
stored with an empty envelope sender, and nothing answers them. Also who
may submit: tokens, trusted Authentication-Results (and forged ones),
allowed From addresses, quotas, unknown senders, and the loop guard."""

import base64
import email
import email.policy
import os
import re
import subprocess
import time

import hatotest as H
from hatotest import check, check_eq

AUTHSERV = "mx.hato.test"


def receipt_env(name, script=None, **submitter):
    env = H.Env(name)
    env.relay_sink("default", script=script)
    env.route("*", "relay:default")
    env.config.section("intake").update({"receipts": "yes", "authserv_id": AUTHSERV,
                                         "receipt_from": "hato-receipts@hato.test"})
    env.config.section("submitter marketing").update(submitter)
    return env


def mails_to(env, addr):
    """Parsed messages the sink got for addr, in order, with their envelope."""
    out = []
    for m in env.sinks["default"].messages():
        if [H.addr_of(r) for r in m["rcpts"]] == [addr]:
            msg = email.message_from_bytes(m["data"], policy=email.policy.default)
            out.append((m["mail_from"], msg))
    return out


def text_of(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


def attachment(msg, name):
    for part in msg.iter_attachments():
        if part.get_filename() == name:
            return part.get_content()
    return None


def wait_mails(env, addr, n, timeout=15):
    H.wait_until(lambda: len(mails_to(env, addr)) >= n, timeout, what="%d mail(s) to %s" % (n, addr))
    return mails_to(env, addr)


def dm_jobs(env):
    return env.db.query("SELECT * FROM jobs WHERE kind = 'dm' ORDER BY id")


def notices(env):
    return env.db.query("SELECT * FROM jobs WHERE kind = 'notice' ORDER BY id")


@H.timeout(120)
def test_receipt_then_report():
    script = {"rules": [{"match": "dead@example.net", "rcpt": ["550 5.1.1 User unknown"]}]}
    env = receipt_env("receipts", script)
    env.start()
    rcpts = ["ok1@example.org", "ok2@example.org", "dead@example.net", "bad@@x", "ok1@example.org"]
    data = env.submission(rcpts, "お知らせ", "本文です。\n")
    msgid = email.message_from_bytes(data)["Message-ID"].strip("<>")
    reply = env.submit(data).one()
    check(reply.code == 250, "submission: %r", reply)
    job = H.job_id_of(reply)

    # The receipt is committed with the job: it is there at once.
    n = notices(env)
    check_eq(len(n), 1, "notices right after the 250")
    check_eq(n[0]["parent_id"], job, "the receipt's parent")
    check(n[0]["reported_at"] is not None, "a notice is never reported on")

    env.wait_job_done(job, 30)
    got = wait_mails(env, env.submitter, 2, 20)
    (env_from, receipt), (env_from2, report) = got[0], got[1]
    check_eq(env_from, "", "envelope sender of the receipt")
    check_eq(env_from2, "", "envelope sender of the report")
    check_eq(str(receipt["Subject"]), "[Hato] job %d accepted: 3 recipients" % job, "receipt subject")
    check_eq(receipt["Auto-Submitted"], "auto-replied", "Auto-Submitted")
    check_eq(receipt["In-Reply-To"], "<%s>" % msgid, "In-Reply-To")
    check_eq(receipt["References"], "<%s>" % msgid, "References")
    check_eq(receipt["From"].addresses[0].addr_spec, "hato-receipts@hato.test", "receipt From")
    check(receipt["List-Unsubscribe"] is None, "a receipt has no List-Unsubscribe")
    body = text_of(receipt)
    check("Your submission is job %d." % job in body, "job number in the receipt:\n%s", body)
    check(re.search(r"relay:default\s+accepted 3", body), "per-route counts:\n%s", body)
    check("bad@@x: invalid" in body, "the invalid address and its reason:\n%s", body)
    check("ok1@example.org: duplicate" in body, "the duplicate:\n%s", body)
    check("Sending starts now." in body, "the schedule:\n%s", body)

    check_eq(str(report["Subject"]), "[Hato] job %d finished: 2 sent, 1 failed" % job, "report subject")
    check_eq(report["In-Reply-To"], "<%s>" % msgid, "report In-Reply-To")
    rbody = text_of(report)
    check(re.search(r"relay:default\s+sent 2, failed 1, suppressed 0, cancelled 0", rbody), "report:\n%s", rbody)
    csv = attachment(report, "failures.csv")
    check(csv is not None, "the report has no failures.csv")
    check("dead@example.net,550,5.1.1,User unknown" in csv, "failures.csv:\n%s", csv)
    check(env.job(job)["reported_at"] is not None, "reported_at not set")

    # Once: a later look finds nothing more to report.
    time.sleep(2.5)
    check_eq(len(mails_to(env, env.submitter)), 2, "mails to the submitter")
    check_eq(len(notices(env)), 2, "notices")
    env.stop_clean()


@H.timeout(120)
def test_refusals_get_error_receipts():
    env = receipt_env("refusals")
    env.start()
    sink = env.sinks["default"]

    # Unknown sender: 250, nothing stored, nothing sent, one log line.
    data = H.make_submission("stranger@example.org", env.token, ["x@example.org"], "s", "b",
                             to=env.submit_address)
    reply = env.submit(data, mail_from="stranger@example.org").one()
    check_eq(reply.code, 250, "unknown sender's reply code")
    env.intake.wait_log(r'status=discarded reason="unknown sender" from="stranger@example.org"')

    cases = [
        ("wrong token", env.submission(["x@example.org"], "s", "b", token="not-the-token"),
         "authentication failed: wrong or missing Token"),
        ("no control block", env.submission([], body="just text", control=False),
         "control block"),
        ("no valid recipient", env.submission(["nobody", "a@@b"], "s", "b"),
         "no valid recipient among 2 given"),
        ("From not allowed", env.submission(["x@example.org"], "s", "b", extra_control=["From: boss@evil.example"]),
         "is not one of the From addresses allowed"),
    ]
    for i, (what, data, reason) in enumerate(cases):
        reply = env.submit(data).one()
        check_eq(reply.code, 250, "%s: reply code (no bounce by the MTA)" % what)
        check(reason in reply.text, "%s: reply %r", what, reply)
        got = wait_mails(env, env.submitter, i + 1, 15)
        env_from, msg = got[i]
        check_eq(env_from, "", "%s: envelope sender" % what)
        check(str(msg["Subject"]).startswith("[Hato] submission refused: "), "%s: subject %r", what, msg["Subject"])
        check(reason in text_of(msg), "%s: receipt text:\n%s", what, text_of(msg))
    time.sleep(1.5)
    check_eq(dm_jobs(env), [], "DM jobs")
    check_eq(len(notices(env)), len(cases), "error receipts")
    check_eq(len(sink.messages()), len(cases), "mails out (the error receipts only)")
    env.intake.assert_running()
    env.stop_clean()


def authres(value):
    return ("Authentication-Results: %s\r\n" % value).encode()


@H.timeout(120)
def test_authentication_results():
    env = receipt_env("authres", auth="authres")
    env.start()
    # Trusted id, DKIM pass aligned (a subdomain of the From domain): a job, no token needed.
    data = authres(AUTHSERV + "; dkim=pass header.d=mail.example.co.jp header.s=s1") + \
        env.submission(["a@example.org"], "s", "b", token=None)
    reply = env.submit(data).one()
    check(reply.code == 250 and "queued" in reply.text, "authres pass: %r", reply)
    job = H.job_id_of(reply)
    # SPF pass with smtp.mailfrom in the domain.
    data = authres(AUTHSERV + "; spf=pass smtp.mailfrom=dm-team@example.co.jp") + \
        env.submission(["b@example.org"], "s", "b", token=None)
    reply = env.submit(data).one()
    check(reply.code == 250 and "queued" in reply.text, "spf pass: %r", reply)
    # Forged: the same words from another authserv-id are ignored.
    data = authres("evil.example; dkim=pass header.d=example.co.jp") + \
        env.submission(["c@example.org"], "s", "b", token=None)
    reply = env.submit(data).one()
    check(reply.code == 250 and "error receipt sent" in reply.text, "forged A-R: %r", reply)
    check("none" in reply.text or "no dkim or spf pass" in reply.text, "forged A-R reason: %r", reply)
    # Pass, but for another domain: not aligned.
    data = authres(AUTHSERV + "; dkim=pass header.d=other.example") + \
        env.submission(["d@example.org"], "s", "b", token=None)
    reply = env.submit(data).one()
    check("error receipt sent" in reply.text, "unaligned A-R: %r", reply)
    check_eq([j["id"] for j in dm_jobs(env)], [job, job + 2], "DM jobs (the two authenticated ones)")
    env.wait_job_done(job, 20)
    check(env.sinks["default"].wait_for(2 + 4, 20), "2 DMs and 4 receipts")
    env.stop_clean()


@H.timeout(120)
def test_from_and_quotas():
    env = receipt_env("quota", **{"from": "news@example.co.jp, dm-team@example.co.jp",
                                  "max_recipients": 2, "max_per_day": 3})
    env.start()
    reply = env.submit(env.submission(["q1@example.org", "q2@example.org", "q3@example.org"], "s", "b",
                                      extra_control=["From: news@example.co.jp"])).one()
    check(reply.code == 250 and "queued" in reply.text, "first: %r", reply)
    job1 = H.job_id_of(reply)
    check_eq(env.job(job1)["from_addr"], "news@example.co.jp", "From of the DM")
    check_eq([d["address"] for d in env.deliveries(job1)], ["q1@example.org", "q2@example.org"], "job 1")
    reply = env.submit(env.submission(["q4@example.org", "q5@example.org"], "s", "b")).one()
    job2 = H.job_id_of(reply)
    check_eq([d["address"] for d in env.deliveries(job2)], ["q4@example.org"], "job 2: the day's third")
    reply = env.submit(env.submission(["q6@example.org"], "s", "b")).one()
    check("error receipt sent" in reply.text and "over quota" in reply.text, "third: %r", reply)
    env.wait_job_done(job2, 20)
    got = wait_mails(env, env.submitter, 3, 20)
    texts = {str(m["Subject"]): text_of(m) for _, m in got}
    t1 = texts["[Hato] job %d accepted: 2 recipients" % job1]
    check("q3@example.org: over quota (past the limit of one job (max_recipients))" in t1, "receipt 1:\n%s", t1)
    check("From:    news@example.co.jp" in t1, "receipt 1 From:\n%s", t1)
    t2 = texts["[Hato] job %d accepted: 1 recipient" % job2]
    check("q5@example.org: over quota (past the limit of the day (max_per_day))" in t2, "receipt 2:\n%s", t2)
    sent_from = {H.addr_of(m["rcpts"][0]): email.message_from_bytes(m["data"])["From"]
                 for m in env.sinks["default"].messages()}
    check_eq(sent_from["q1@example.org"], "news@example.co.jp", "From of a sent DM")
    env.stop_clean()


@H.timeout(120)
def test_held_job_receipt_and_reply():
    """A held job's receipt says how to approve it; replying to it as a mail
    program does (Re: subject, quoted text, the Token) releases the job."""
    env = receipt_env("held", approval="yes")
    env.start()
    reply = env.submit(env.submission(["held1@example.org", "held2@example.org"], "s", "b")).one()
    check(reply.code == 250 and "held" in reply.text, "submission: %r", reply)
    job = H.job_id_of(reply)
    code = env.job(job)["confirm_code"]
    check(code, "no confirmation code on job %d", job)
    (env_from, receipt), = wait_mails(env, env.submitter, 1, 15)
    check_eq(str(receipt["Subject"]), "[Hato] job %d held for approval (code %s): 2 recipients" % (job, code),
             "receipt subject")
    body = text_of(receipt)
    check("hatoctl job approve %d" % job in body and "keeping the code %s in the subject" % code in body,
          "approval instructions:\n%s", body)
    time.sleep(1)
    check_eq(len(env.sinks["default"].messages()), 1, "mails out while held (the receipt only)")

    answer = ("From: %s\r\nTo: %s\r\nSubject: Re: %s\r\nIn-Reply-To: %s\r\n"
              "Message-ID: <approve.1@example.co.jp>\r\n\r\nToken: %s\r\n\r\n> %s\r\n" % (
                  env.submitter, env.submit_address, receipt["Subject"], receipt["Message-ID"],
                  env.token, body.splitlines()[0])).encode()
    r = H.lmtp_submit(("127.0.0.1", env.lmtp_port), env.submitter, [env.submit_address], answer).one()
    check_eq(r.code, 250, "reply to the receipt: %r" % r)
    env.wait_job_done(job, 30)
    rcpts = sorted(H.addr_of(m["rcpts"][0]) for m in env.sinks["default"].messages())
    check("held1@example.org" in rcpts and "held2@example.org" in rcpts, "DMs after the approval: %r", rcpts)
    check_eq(len(dm_jobs(env)), 1, "DM jobs (the reply made none)")
    env.stop_clean()


def send_back(port, env_from, msg_bytes, rcpt):
    """The auto-responder: hands its answer to intake by LMTP."""
    return H.lmtp_submit(("127.0.0.1", port), env_from, [rcpt], msg_bytes).one()


@H.timeout(120)
def test_auto_reply_does_not_loop():
    env = receipt_env("loop")
    env.start()
    reply = env.submit(env.submission(["loop@example.org"], "s", "b")).one()
    check(reply.code == 250, "submission: %r", reply)
    (_, receipt), = wait_mails(env, env.submitter, 1, 15)
    # The submitter's mailbox auto-replies to where the receipt came from,
    # twice: as RFC 3834 asks, and as a careless responder would (no
    # Auto-Submitted, but an empty envelope sender like a bounce).
    for hdr, env_from in (("Auto-Submitted: auto-replied\r\n", env.submitter), ("", "")):
        answer = ("From: %s\r\nTo: %s\r\nSubject: Out of office: %s\r\nIn-Reply-To: %s\r\n%s"
                  "Message-ID: <ooo.%d@example.co.jp>\r\n\r\nToken: %s\r\nTo: victim@example.org\r\n\r\n"
                  "I am away.\r\n" % (env.submitter, env.submit_address, receipt["Subject"],
                                      receipt["Message-ID"], hdr, len(env_from), env.token)).encode()
        r = send_back(env.lmtp_port, env_from, answer, env.submit_address)
        check_eq(r.code, 250, "auto-reply's reply code")
    time.sleep(3)
    # What the submitter got: its receipt, and the report of the job (sent
    # by then); no answer to either auto-reply.
    subjects = sorted(str(m["Subject"]) for _, m in mails_to(env, env.submitter))
    check_eq(subjects, ["[Hato] job 1 accepted: 1 recipient", "[Hato] job 1 finished: 1 sent, 0 failed"],
             "mails to the submitter")
    check_eq([n["subject"] for n in notices(env)], ["[Hato] receipt", "[Hato] report"], "notices")
    check_eq(len(dm_jobs(env)), 1, "DM jobs (the auto-replies made none)")
    log = env.intake.log_text()
    check(log.count("(never answered)") == 2, "log lines of the discarded auto-replies:\n%s", log[-3000:])
    env.stop_clean()


def dkim_key(env):
    """An RSA key for the receipts' domain (mode 600) and its DNS record."""
    path = os.path.join(env.dir, "receipts.pem")
    old = os.umask(0o077)
    try:
        H.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path])
    finally:
        os.umask(old)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return path, ("v=DKIM1; k=rsa; p=%s" % base64.b64encode(der).decode()).encode()


@H.timeout(120)
def test_notices_signed_and_sent_to_suppressed():
    """Receipts and reports are DKIM-signed with the key of their From
    domain (checked by dkimpy), and reach a submitter address that is
    suppressed, with a log line."""
    import dkim
    env = receipt_env("signed")
    key, record = dkim_key(env)
    env.config.section("dkim receipts").update({"domain": "hato.test", "selector": "s1", "key_file": key})
    env.start()
    env.ctl("suppress", "add", env.submitter)
    reply = env.submit(env.submission(["signed@example.org"], "s", "b")).one()
    job = H.job_id_of(reply)
    env.intake.wait_log(r"address=%s status=receipt-to-suppressed" % re.escape(env.submitter))
    env.wait_job_done(job, 20)
    H.wait_until(lambda: len(mails_to(env, env.submitter)) == 2, 15, what="the receipt and the report")

    def lookup(name, timeout=5):
        return record if name == b"s1._domainkey.hato.test." else None
    for m in env.sinks["default"].messages():
        if [H.addr_of(r) for r in m["rcpts"]] != [env.submitter]:
            continue
        check("DKIM-Signature:" in m["data"].decode("ascii", "replace").split("\r\n\r\n")[0],
              "notice without a signature")
        check(dkim.verify(m["data"], dnsfunc=lookup), "the notice's DKIM signature does not verify:\n%s",
              m["data"][:1500].decode("utf-8", "replace"))
    env.stop_clean()


@H.timeout(120)
def test_one_report_from_two_gateways():
    """Two gateways look for ended jobs at the same time: one report."""
    env = receipt_env("tworeports")
    env.start(gateway=False)
    for i in range(2):
        env.config.section("hato")["node"] = "gw%d" % i
        env.config.section("gateway")["http_listen"] = "127.0.0.1:%d" % H.free_port()
        path = env.config.path.replace(".ini", "-gw%d.ini" % i)
        with open(path, "w") as f:
            f.write(env.config.text())
        H.defer(H.Daemon(H.GATEWAY, path, env.dir, "hato-gateway-%d" % i).start().stop)
    jobs = []
    for n in range(3):
        reply = env.submit(env.submission(["two%d-%d@example.org" % (n, i) for i in range(20)], "s", "b")).one()
        jobs.append(H.job_id_of(reply))
    for job in jobs:
        env.wait_job_done(job, 30)
    H.wait_until(lambda: all(env.job(j)["reported_at"] for j in jobs), 10, what="the reports")
    time.sleep(2.5)	# both gateways have looked again since
    reports = [n["parent_id"] for n in notices(env) if n["subject"] == "[Hato] report"]
    check_eq(sorted(reports), jobs, "jobs reported on (once each)")
    check_eq(sorted(str(m["Subject"]) for _, m in mails_to(env, env.submitter) if "finished" in str(m["Subject"])),
             sorted("[Hato] job %d finished: 20 sent, 0 failed" % j for j in jobs), "reports received")


def test_submitter_config_errors():
    """Each bad submitter or receipt value is refused with file and line."""
    env = receipt_env("subconf")
    path = env.write_config()
    r = H.run([H.INTAKE, "--check-config", "--config", path], check_rc=False, timeout=15)
    check(r.returncode == 0, "a good file refused:\n%s%s", r.stdout, r.stderr)
    cases = [
        ("auth = sometimes", "'sometimes' is not token, authres or token-or-authres"),
        ("from = news-at-example.co.jp", "'news-at-example.co.jp' is not an address"),
        ("rehearsal = a@b@c", "'a@b@c' is not an address"),
        ("max_recipients = lots", "not a whole number"),
        ("max_per_day = -1", "not a whole number"),
        ("approval = perhaps", "'perhaps' is not yes or no"),
    ]
    good = open(path, encoding="utf-8").read()
    for line, why in cases:
        text = good.replace("[submitter marketing]\n", "[submitter marketing]\n%s\n" % line, 1)
        bad = os.path.join(env.dir, "bad.ini")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(text)
        lineno = text.splitlines().index(line) + 1
        r = H.run([H.INTAKE, "--check-config", "--config", bad], check_rc=False, timeout=15)
        out = r.stdout + r.stderr
        check(r.returncode != 0, "%r accepted:\n%s", line, out)
        check("bad.ini:%d: [submitter marketing] %s: " % (lineno, line.split(" =")[0]) in out and why in out,
              "%r: want file:line and %r in:\n%s", line, why, out)
    # authres without a trusted id: refused, naming the missing key.
    text = good.replace("authserv_id = %s\n" % AUTHSERV, "").replace(
        "[submitter marketing]\n", "[submitter marketing]\nauth = authres\n", 1)
    with open(bad, "w", encoding="utf-8") as f:
        f.write(text)
    r = H.run([H.INTAKE, "--check-config", "--config", bad], check_rc=False, timeout=15)
    check(r.returncode != 0 and "needs [intake] authserv_id" in r.stdout + r.stderr,
          "auth = authres without authserv_id:\n%s%s", r.stdout, r.stderr)


if __name__ == "__main__":
    H.main(globals())
