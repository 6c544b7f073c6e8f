"""Intake killed mid-DATA: no 250 for what was not committed, and a retry
stores the job once.

A client sends submissions (a CSV list of a few thousand recipients, so
that parsing and the commit take a while) and hato-intake is SIGKILLed at a
random moment: either in the middle of the message, before the final dot,
or just after the final dot, before the client has read the reply. Intake
is restarted each time and the client retries the same bytes (same
Message-ID), as an MTA does after a lost connection.

Checked after every kill and retry:
  - a 250 the client saw names a job that is in the jobs table, with the
    submission's Message-ID and every recipient (never a 250 for what was
    not committed);
  - a kill before the final dot leaves no job for that Message-ID;
  - after the retry, exactly one job has that Message-ID: intake answers a
    retry of a mail it already stored (same submitter, same Message-ID,
    within a day) with the job it made the first time, so a lost 250 does
    not make a second job.

The delay of a kill after the dot starts at the time one submission takes
and then homes in on the moment between the commit and the reply: longer
after a kill that came before the commit, shorter after one that let the
reply out. HATO_INTAKE_KILLS sets the number of kills of each kind
(default 8)."""

import os
import random
import socket
import time

import hatotest as H
from hatotest import check, check_eq

KILLS = int(os.environ.get("HATO_INTAKE_KILLS", "8"))
RCPTS = 10000


def submission(env, k):
    rcpts = ["k%02d-%05d@example.com" % (k, i) for i in range(RCPTS)]
    csv = ("email\r\n" + "\r\n".join(rcpts) + "\r\n").encode()
    return H.make_submission(env.submitter, env.token, [], "kill %d" % k, "本文 %d\n" % k,
                             to=env.submit_address, attachments=[("list.csv", "text/csv", csv)],
                             control=["Token: %s" % env.token, "Subject: kill %d" % k])


def msgid_of(data):
    return H.parse_message(data)["Message-ID"].strip()


def jobs_with(env, msgid):
    return env.db.query("SELECT id, recipients FROM jobs WHERE source_msgid IN (%s, %s) ORDER BY id",
                        (msgid, msgid.strip("<>")))


def open_transaction(env):
    c = H.LMTPClient(("127.0.0.1", env.lmtp_port), timeout=20)
    check_eq(c.greeting.code, 220, "greeting")
    check(c.lhlo().ok, "LHLO refused")
    check(c.mail(env.submitter).ok, "MAIL refused")
    check(c.rcpt(env.submit_address).ok, "RCPT refused")
    r = c.command("DATA")
    check_eq(r.code, 354, "reply to DATA")
    return c


def read_reply(c):
    """The reply after the dot, or None when the connection died first."""
    try:
        return c.reply()
    except (H.LMTPError, OSError):
        return None


def kill_intake(env):
    env.intake.proc.kill()
    env.intake.proc.wait(10)
    env.intake.stop()  # reaps it and forgets its PID


def restart_intake(env):
    env.start_intake()


def retry(env, data, msgid, jobs_before):
    """Send the same mail again, as the MTA does; returns the job it names."""
    reply = env.submit(data).one()
    check_eq(reply.code, 250, "reply to the retry of %s" % msgid)
    job = H.job_id_of(reply)
    rows = jobs_with(env, msgid)
    check_eq(len(rows), 1, "jobs with Message-ID %s after the retry" % msgid)
    check_eq(int(rows[0]["id"]), job, "job named by the retry")
    if jobs_before:
        check_eq(job, int(jobs_before[0]["id"]), "the retry names the job stored before the kill")
        check("already" in reply.text, "the reply to a retry does not say it was stored before: %r", reply)
    return job


@H.timeout(280)
def test_intake_killed_mid_data():
    rng = random.Random(int(os.environ.get("HATO_INTAKE_KILL_SEED", "20261123")))
    env = H.Env("intakekill")
    env.start(gateway=False)
    # How long intake takes from the final dot to its reply, so that the
    # kills after the dot fall while the mail is parsed and stored.
    data = submission(env, 99)
    t0 = time.monotonic()
    check_eq(env.submit(data).one().code, 250, "the timing submission")
    took = time.monotonic() - t0
    H.log("one submission of %d recipients: %.3fs" % (RCPTS, took))
    delay = took
    stats = {"before_dot": 0, "after_dot": 0, "committed_unseen": 0, "seen_250": 0, "not_committed": 0}

    for k in range(2 * KILLS):
        data = submission(env, k)
        msgid = msgid_of(data)
        payload = H.dot_stuff(data)
        before_dot = k % 2 == 0
        c = open_transaction(env)
        try:
            if before_dot:
                cut = rng.randrange(1, len(payload) - 1)
                c.sock.sendall(payload[:cut])
                time.sleep(rng.uniform(0.0, 0.05))
                kill_intake(env)
                stats["before_dot"] += 1
                check(read_reply(c) is None, "a reply came before the final dot")
                check_eq(jobs_with(env, msgid), [], "jobs for a message cut at octet %d" % cut)
            else:
                c.sock.sendall(payload + b".\r\n")
                time.sleep(delay * rng.uniform(0.9, 1.1))
                kill_intake(env)
                stats["after_dot"] += 1
                reply = read_reply(c)
                rows = jobs_with(env, msgid)
                if reply is not None:
                    # The reply was on its way before the kill.
                    check_eq(reply.code, 250, "the reply seen after the dot")
                    stats["seen_250"] += 1
                    check_eq(len(rows), 1, "jobs behind the 250 %r" % reply.text)
                    check_eq(int(rows[0]["id"]), H.job_id_of(reply), "job named by the 250")
                    delay *= 0.8
                else:
                    check(len(rows) <= 1, "more than one job for one transaction: %r", rows)
                    stats["committed_unseen" if rows else "not_committed"] += 1
                    if not rows:
                        delay *= 1.25
                for r in rows:
                    check_eq(int(r["recipients"]), RCPTS, "recipients of job %s" % r["id"])
                    check_eq(int(env.db.scalar("SELECT COUNT(*) FROM deliveries WHERE job_id = %s", (r["id"],))),
                             RCPTS, "deliveries of job %s" % r["id"])
        finally:
            c.close()
        rows = jobs_with(env, msgid)
        restart_intake(env)
        retry(env, data, msgid, rows)

    # The reply lost without a kill: the client goes away right after the
    # dot, intake commits all the same, and the retry must not make a
    # second job (the same window as a kill between commit and reply,
    # which is too short to hit by timing).
    for k in range(3):
        data = submission(env, 50 + k)
        msgid = msgid_of(data)
        c = open_transaction(env)
        c.sock.sendall(H.dot_stuff(data) + b".\r\n")
        c.close()
        H.wait_until(lambda: jobs_with(env, msgid), 20, what="the job of a mail whose reply was lost")
        retry(env, data, msgid, jobs_with(env, msgid))
        stats["lost_reply"] = stats.get("lost_reply", 0) + 1
    H.log("kills", stats)
    check_eq(stats["before_dot"] + stats["after_dot"], 2 * KILLS, "kills")
    check_eq(int(env.db.scalar("SELECT COUNT(*) FROM jobs")), 2 * KILLS + 4, "jobs in all")
    check_eq(int(env.db.scalar("SELECT COUNT(*) FROM deliveries")), (2 * KILLS + 4) * RCPTS, "deliveries in all")
    env.intake.stop_clean()
    print("intake kills survived: %d (%d before the dot, %d after it: %d replies seen, "
          "%d committed with the reply lost, %d not committed); "
          "%d replies lost by the client, each retry named the first job" % (
              2 * KILLS, stats["before_dot"], stats["after_dot"], stats["seen_250"],
              stats["committed_unseen"], stats["not_committed"], stats["lost_reply"]))


@H.timeout(60)
def test_same_message_id_other_mail():
    """A retry is recognised by submitter and Message-ID; another mail with
    the same Message-ID from another submitter is not a retry, and a mail
    without a Message-ID is never taken for one."""
    env = H.Env("intakedup")
    env.config.section("submitter other").update({"address": ["other@example.co.jp"],
                                                  "token_sha256": H.token_sha256(env.token)})
    env.start(gateway=False)
    data = env.submission(["a@example.com"], "一通目", "本文\n")
    first = env.submit(data).one()
    check_eq(first.code, 250, "first submission")
    again = env.submit(data).one()
    check_eq(again.code, 250, "the same mail again")
    check_eq(H.job_id_of(again), H.job_id_of(first), "job named for the same mail")
    msgid = msgid_of(data)
    other = data.replace(env.submitter.encode(), b"other@example.co.jp")
    r = env.submit(other, mail_from="other@example.co.jp").one()
    check_eq(r.code, 250, "same Message-ID from another submitter")
    check(H.job_id_of(r) != H.job_id_of(first), "another submitter's mail was taken for a retry")
    check_eq(len(jobs_with(env, msgid)), 2, "jobs with Message-ID %s" % msgid)
    bare = env.submission(["b@example.com"], "IDなし", "本文\n", message_id=False)
    ids = {H.job_id_of(env.submit(bare).one()) for _ in range(2)}
    check_eq(len(ids), 2, "jobs from two mails without a Message-ID")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
