"""A submission as a submitter's mail program sends it, through a real
Postfix on loopback: 3 To: lines and a 1,000-line Shift_JIS CSV become one
job with exactly those recipients, and the receipt, sent by the gateway,
reaches the submitter's mailbox (a sink). Once with Postfix delivering to
intake by LMTP, once through the pipe transport (hato-intake --pipe).

The Postfix instance and the pipe user's files are those of
test_postfix.py. The Postfix tests need root (Postfix's master does);
without it they say so and pass."""

import email
import email.policy
import os
import re
import sys

import hatotest as H
from hatotest import check, check_eq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_postfix as P  # noqa: E402  (the Postfix instance of those tests)

TO_LINES = ["taro@docomo.ne.jp", "taro..@docomo.ne.jp", "hanako@ezweb.ne.jp"]
CSV_LINES = 1000
SUBJECT = "週末限定セールのお知らせ"


def csv_list():
    """A header row, then 1,000 rows "address,name" in Shift_JIS, CRLF."""
    rows = ["メールアドレス,お名前"]
    addrs = ["member%04d@example.org" % i for i in range(CSV_LINES)]
    rows += ["%s,会員%d様" % (a, i) for i, a in enumerate(addrs)]
    return ("\r\n".join(rows) + "\r\n").encode("shift_jis"), addrs


def receipts_env(name):
    env = H.Env(name)
    env.relay_sink("mailbox")
    env.route("*", "relay:mailbox")
    env.config.section("intake")["receipts"] = "yes"
    return env


def submission(env):
    data, addrs = csv_list()
    mail = env.submission(TO_LINES, SUBJECT, "本文です。\n", per_line=1,
                          attachments=[("会員リスト.csv", "text/csv", data)])
    check(mail.count(b"\r\nTo: ") >= 1, "the control block lost its To lines")
    return mail, TO_LINES + addrs


def check_receipt(env, job_id, want):
    """The job's recipients, and its receipt in the submitter's mailbox."""
    got = sorted(d["address"] for d in env.deliveries(job_id))
    check_eq(len(got), len(want), "recipients of job %d" % job_id)
    check(got == sorted(want), "recipients of job %d differ from the submission", job_id)
    check_eq(len([j for j in env.jobs() if j["kind"] == "dm"]), 1, "DM jobs")
    sink = env.sinks["mailbox"]

    def receipt():
        for m in sink.messages():
            if [H.addr_of(r) for r in m["rcpts"]] == [env.submitter] and m["mail_from"] == "":
                return email.message_from_bytes(m["data"], policy=email.policy.default)
        return None
    msg = H.wait_until(receipt, 30, what="the receipt in the submitter's mailbox")
    check_eq(str(msg["Subject"]), "[Hato] job %d accepted: %d recipients" % (job_id, len(want)), "receipt subject")
    text = msg.get_body(preferencelist=("plain",)).get_content()
    check("Your submission is job %d." % job_id in text, "receipt text:\n%s", text)
    check(re.search(r"relay:mailbox\s+accepted %d" % len(want), text), "per-route counts:\n%s", text)
    check_eq(msg["Auto-Submitted"], "auto-replied", "Auto-Submitted of the receipt")


@H.timeout(120)
def test_postfix_lmtp_receipt():
    if P.skip_without_postfix():
        return
    env = receipts_env("pf_rcpt_lmtp")
    env.start()
    pf = P.Postfix(env, ["%s lmtp:inet:127.0.0.1:%d" % (P.DOMAIN, env.lmtp_port)]).start()
    data, want = submission(env)
    qid = pf.send(data, env.submitter)
    line = pf.wait_status(qid, "sent", timeout=60)
    m = re.search(r"\(250 2\.0\.0 job (\d+) ", line)
    check(m is not None, "Postfix's log does not carry intake's reply: %r", line)
    check_receipt(env, int(m.group(1)), want)
    pf.wait_gone(qid)
    pf.check_no_bounce()
    pf.stop()
    env.stop_clean()


@H.timeout(120)
def test_postfix_pipe_receipt():
    if P.skip_without_postfix():
        return
    env = receipts_env("pf_rcpt_pipe")
    env.write_config()
    env.init_db()
    P.give_to_pipe_user(env)
    env.start_gateway()
    pf = P.Postfix(env, ["%s hato:" % H.SUBMIT_ADDRESS], services=P.pipe_service(env)).start()
    data, want = submission(env)
    qid = pf.send(data, env.submitter)
    line = pf.wait_status(qid, "sent", timeout=60)
    check("relay=hato" in line, "not delivered by the pipe: %r", line)
    pf.wait_gone(qid)
    jobs = [j for j in env.jobs() if j["kind"] == "dm"]
    check_eq(len(jobs), 1, "DM jobs after one submission through the pipe")
    check_receipt(env, jobs[0]["id"], want)
    pf.check_no_bounce()
    pf.stop()
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
