"""Approval: a submitter with approval = yes gets held jobs (deliveries held,
never due) with a confirmation code; nothing is sent until `hatoctl job
approve N` or a reply mail carrying the code releases them, keeping their
Rate spread; a held job nobody approves expires ([intake] approval_expiry)
and sends nothing."""

import re
import time

import hatotest as H
from hatotest import check, check_eq

RCPTS = ["a@example.com", "b@example.com", "c@example.com"]


def approval_env(name, expiry=None):
    env = H.Env(name)
    env.relay_sink("default")
    env.route("*", "relay:default")
    env.config.section("submitter marketing")["approval"] = True
    # Receipts are another test's business: only the DM's mail at the sink.
    env.config.section("intake")["receipts"] = False
    if expiry:
        env.config.section("intake")["approval_expiry"] = expiry
    return env.start()


def submit_held(env, extra=()):
    r = env.submit(env.submission(RCPTS, "承認待ち", "本文\n", extra_control=list(extra))).one()
    check(r.code == 250, "submission refused: %r", r)
    check("held for approval" in r.text, "reply does not say the job is held: %r", r)
    job_id = H.job_id_of(r)
    job = env.job(job_id)
    check_eq(job["state"], "held", "jobs.state")
    check(re.fullmatch(r"[A-Z2-7]{8}", job["confirm_code"] or ""), "confirm_code %r", job["confirm_code"])
    check(r.text.find(job["confirm_code"]) < 0, "the LMTP reply shows the confirmation code: %r", r)
    for d in env.deliveries(job_id):
        check(d["state"] == "held" and d["next_attempt"] is None,
              "delivery %s of a held job: state %s next_attempt %s", d["id"], d["state"], d["next_attempt"])
    return job_id, job


def check_nothing_sent(env, seconds):
    time.sleep(seconds)
    check_eq(len(env.sinks["default"].messages()), 0, "messages sent for a held job")


@H.timeout(90)
def test_approve_by_hatoctl():
    env = approval_env("approve")
    job_id, job = submit_held(env, ["Rate: 60/min"])
    expires = env.db.scalar("SELECT TIMESTAMPDIFF(SECOND, NOW(6), hold_expires) FROM jobs WHERE id = %s", (job_id,))
    check(23 * 3600 < int(expires) <= 24 * 3600, "hold_expires %s s ahead, want the default 24h", expires)
    check_nothing_sent(env, 2.5)
    r = env.ctl("job", "approve", job_id)
    check(re.fullmatch(r"job %d approved: 3 deliveries queued, 0 in flight, starting .*\n" % job_id, r.stdout),
          "`job approve` said %r", r.stdout)
    job = env.job(job_id)
    check(job["state"] in ("queued", "sending"), "jobs.state after approval: %s", job["state"])
    check(job["approved_by"] and job["approved_by"].startswith("hatoctl:"), "approved_by %r", job["approved_by"])
    check(job["approved_at"] is not None, "approved_at not set")
    # The Rate spread is kept: one a second from the approval. The first
    # is due at once, and the gateway may have leased it already (its
    # next_attempt is then the lease's end): the others are compared.
    rows = env.deliveries(job_id)
    due = [d["next_attempt"] for d in rows if d["lease_owner"] is None]
    check(len(due) >= 2, "deliveries not leased after approval: %s", rows)
    gaps = [(due[i + 1] - due[i]).total_seconds() for i in range(len(due) - 1)]
    check(all(abs(g - 1.0) < 0.01 for g in gaps), "due times after approval %s: gaps %s, want 1s", due, gaps)
    env.wait_job_done(job_id, 20)
    check_eq(sorted(H.addr_of(m["rcpts"][0]) for m in env.sinks["default"].messages()), RCPTS, "recipients")
    r = env.ctl("job", "approve", job_id, check_rc=False)
    check_eq(r.returncode, 1, "exit code of approving a job that is not held")
    check_eq(r.stderr.strip(), "hatoctl: job %d is done" % job_id, "approving a done job")
    r = env.ctl("job", "approve", "999", check_rc=False)
    check(r.returncode == 1 and "no job 999" in r.stderr, "approving no job: %d %r", r.returncode, r.stderr)
    env.stop_clean()


def reply_mail(env, subject, first_line, token=None):
    return H.make_submission(env.submitter, None, (), None, "", to=env.submit_address,
                             mail_subject=subject,
                             control=["Token: %s" % (token or env.token), "", first_line])


@H.timeout(90)
def test_approve_by_reply():
    env = approval_env("approvereply")
    job_id, job = submit_held(env)
    code = job["confirm_code"]
    other = "B" * 4 + "2345" if code != "BBBB2345" else "CCCC2345"
    # A wrong code and a wrong token change nothing.
    r = env.submit(reply_mail(env, "Re: job %d held: approve with %s" % (job_id, other), "ok")).one()
    check(r.code == 550 and "confirmation code" in r.text, "a wrong code got %r", r)
    r = env.submit(reply_mail(env, "Re: approve %s" % code, "ok", token="not-the-token")).one()
    check(r.code == 550 and r.status == "5.7.8", "a reply with a bad token got %r", r)
    check_eq(env.job(job_id)["state"], "held", "state after a wrong code and a bad token")
    check_nothing_sent(env, 1.5)
    # The code in the first text line (after the Token line) approves.
    r = env.submit(reply_mail(env, "Re: your DM", "approve %s please" % code)).one()
    check(r.code == 250 and ("job %d approved" % job_id) in r.text, "the reply with the code got %r", r)
    check_eq(len(env.jobs()), 1, "jobs after the reply (a reply creates no job)")
    job = env.job(job_id)
    check_eq(job["approved_by"], env.submitter, "approved_by")
    env.wait_job_done(job_id, 20)
    check_eq(len(env.sinks["default"].messages()), 3, "messages after approval by reply")
    # A second reply: the job is not held any more.
    r = env.submit(reply_mail(env, "Re: approve %s" % code, "again")).one()
    check(r.code == 550 and re.search(r"job %d is (queued|sending|done)" % job_id, r.text), "a second reply got %r", r)
    check(env.intake.log_text().count("approval=reply status=approved") == 1, "approval not logged once")
    env.stop_clean()


@H.timeout(90)
def test_reply_to_the_receipt_approves():
    # With receipts on: the receipt tells the code, and a reply to it, as a
    # mail program writes one ("Re: " + its Subject), releases the job.
    env = H.Env("approvereceipt")
    env.relay_sink("default")
    mailbox = env.relay_sink("submitter")
    env.route("example.co.jp", "relay:submitter")
    env.route("*", "relay:default")
    env.config.section("submitter marketing")["approval"] = True
    env.config.section("intake")["receipts"] = True
    env.start()
    r = env.submit(env.submission(RCPTS, "承認待ち", "本文\n")).one()
    check(r.code == 250, "submission refused: %r", r)
    job_id = H.job_id_of(r)
    check(mailbox.wait_for(1, 20), "no receipt reached the submitter")
    receipt = H.parse_message(mailbox.messages()[0]["data"])
    subject = str(receipt["Subject"])
    code = env.job(job_id)["confirm_code"]
    check(code in subject, "the receipt's Subject %r does not carry the code", subject)
    check_nothing_sent(env, 1.0)
    reply = H.make_submission(env.submitter, None, (), None, "", to=env.submit_address,
                              mail_subject="Re: " + subject,
                              control=["Token: %s" % env.token, "", "OK to send.", "",
                                       "> " + subject])
    r = env.submit(reply).one()
    check(r.code == 250 and ("job %d approved" % job_id) in r.text, "the reply to the receipt got %r", r)
    env.wait_job_done(job_id, 20)
    check_eq(sorted(H.addr_of(m["rcpts"][0]) for m in env.sinks["default"].messages()), RCPTS, "recipients")
    check_eq([j["id"] for j in env.jobs() if j["kind"] == "dm"], [job_id], "DM jobs (the reply made none)")
    env.stop_clean()


@H.timeout(90)
def test_held_job_expires():
    env = approval_env("expire", expiry="2s")
    job_id, job = submit_held(env)
    H.wait_until(lambda: env.job(job_id)["state"] == "expired", 10, what="the held job to expire")
    job = env.job(job_id)
    check(job["finished_at"] is not None, "an expired job has no finished_at")
    for d in env.deliveries(job_id):
        check(d["state"] == "cancelled" and d["next_attempt"] is None,
              "delivery %s of an expired job: %s %s", d["id"], d["state"], d["next_attempt"])
    r = env.ctl("job", "approve", job_id, check_rc=False)
    check_eq(r.returncode, 1, "exit code of approving an expired job")
    check("expired" in r.stderr, "approving an expired job said %r", r.stderr)
    # By reply too: expired, nothing released.
    r = env.submit(reply_mail(env, "Re: approve %s" % job["confirm_code"], "ok")).one()
    check(r.code == 550 and "expired" in r.text, "a reply after expiry got %r", r)
    check_nothing_sent(env, 1.5)
    check(re.search(r"job=%d .*status=expired" % job_id, env.gateway.log_text()), "expiry not logged by the gateway")
    env.stop_clean()


@H.timeout(90)
def test_expired_job_is_reported():
    # The submitter learns that nobody approved it: the completion report
    # of an expired job says so, and that nothing was sent.
    env = H.Env("expirereport")
    env.relay_sink("default")
    mailbox = env.relay_sink("submitter")
    env.route("example.co.jp", "relay:submitter")
    env.route("*", "relay:default")
    env.config.section("submitter marketing")["approval"] = True
    env.config.section("intake").update({"receipts": True, "approval_expiry": "2s"})
    env.start()
    r = env.submit(env.submission(RCPTS, "承認待ち", "本文\n")).one()
    check(r.code == 250, "submission refused: %r", r)
    job_id = H.job_id_of(r)
    check(mailbox.wait_for(2, 20), "the receipt and the report did not both reach the submitter")
    report = H.parse_message(mailbox.messages()[1]["data"])
    check_eq(str(report["Subject"]), "[Hato] job %d expired: 0 sent, 0 failed" % job_id, "report Subject")
    text = H.text_body(report)
    check("nobody approved it" in text and "nothing was sent" in text, "report text: %r", text)
    check_eq(env.job(job_id)["state"], "expired", "jobs.state")
    check_eq(len(env.sinks["default"].messages()), 0, "DMs sent for an expired job")
    time.sleep(1.5)
    check_eq(len(mailbox.messages()), 2, "mails to the submitter (one report only)")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
