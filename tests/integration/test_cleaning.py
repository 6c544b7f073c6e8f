"""List cleaning: an address refused as an unknown user on two different
(UTC) days within the window is suppressed, its waiting deliveries are
cancelled, and later submissions skip it; policy blocks never count; and the
operators' view of it (hatoctl suppress, report cleaning).

The database's UTC_DATE() is the clock: a failure "two days ago" is a row
inserted into address_failures with an earlier day."""

import csv
import datetime
import io

import hatotest as H
from hatotest import check, check_eq

DEAD = "dead@example.com"
BLOCKED = "blocked@example.com"
FILTERED = "filtered@docomo.ne.jp"

SCRIPT = {"rules": [
    {"match": DEAD, "rcpt": ["550 5.1.1 <%s>: Recipient address rejected: User unknown" % DEAD]},
    {"match": BLOCKED, "rcpt": ["550 5.7.1 <%s>: Message rejected due to local policy" % BLOCKED]},
]}
# docomo's "550 Unknown user" after the end of DATA is the recipient's own
# filter (CARRIERS.md): the address is alive.
DOCOMO_SCRIPT = {"rules": [
    {"match": FILTERED, "dot": ["550 Unknown user %s" % FILTERED]},
]}


def cleaning_env(name):
    env = H.Env(name)
    env.relay_sink("default", script=SCRIPT)
    env.relay_sink("docomo", script=DOCOMO_SCRIPT)
    env.route("docomo.ne.jp", "relay:docomo")
    env.route("*", "relay:default")
    env.config.section("cleaning").update({"min_days": 2, "window": "7d"})
    return env


def submit(env, rcpts, extra=()):
    data = env.submission(rcpts, "クリーニングのテスト", "本文です。\n", extra_control=list(extra))
    return env.submit(data).one()


def submit_job(env, rcpts, extra=()):
    reply = submit(env, rcpts, extra)
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply)


def by_address(env, job_id):
    return {d["address"]: d for d in env.deliveries(job_id)}


def suppression(env, address):
    rows = env.db.query("SELECT * FROM suppressions WHERE address = %s", (address,))
    return rows[0] if rows else None


def failures(env, address):
    return env.db.query("SELECT *, day = UTC_DATE() AS today FROM address_failures"
                        " WHERE address = %s ORDER BY id", (address,))


def backdate_failure(env, address, days_ago, klass="unknown-user"):
    env.db.query("INSERT INTO address_failures (address, day, class, delivery_id, at, reply)"
                 " VALUES (%s, UTC_DATE() - INTERVAL %s DAY, %s, NULL, NOW(6) - INTERVAL %s DAY,"
                 " '550 5.1.1 an earlier refusal')", (address, days_ago, klass, days_ago))


def send_at_ahead(minutes):
    """Send-At as ISO 8601 with a +09:00 offset, some minutes ahead."""
    jst = datetime.timezone(datetime.timedelta(hours=9))
    t = datetime.datetime.now(jst) + datetime.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%S+09:00")


def mail_count(env):
    return sum(len(s.mail_times()) for s in env.sinks.values())


@H.timeout(90)
def test_two_days_suppress_and_skip():
    env = cleaning_env("clean2d")
    env.start()
    sink = env.sinks["default"]

    # Day one (today): refused as an unknown user once; not suppressed.
    job1 = submit_job(env, [DEAD, "ok1@example.com"])
    env.wait_job_done(job1, 25)
    d1 = by_address(env, job1)
    check_eq(d1[DEAD]["state"], "failed", "state of the refused delivery")
    check_eq(d1["ok1@example.com"]["state"], "sent", "state of the other delivery")
    rows = failures(env, DEAD)
    check_eq(len(rows), 1, "address_failures rows after the first refusal")
    check_eq((rows[0]["class"], int(rows[0]["today"]), int(rows[0]["delivery_id"])),
             ("unknown-user", 1, int(d1[DEAD]["id"])), "class, day and delivery of the failure")
    check("User unknown" in (rows[0]["reply"] or ""), "the failure keeps the reply: %r", rows[0]["reply"])
    log = env.delivery_log(d1[DEAD]["id"])
    check_eq(log[-1]["class"], "unknown-user", "delivery_log class of the refusal")
    check(suppression(env, DEAD) is None, "suppressed after failures on one day only")

    # A later job holds the address, scheduled ahead: it waits, queued.
    job2 = submit_job(env, [DEAD, "later@example.com"], ["Send-At: %s" % send_at_ahead(10)])
    d2 = by_address(env, job2)
    check_eq(sorted(d["state"] for d in d2.values()), ["queued", "queued"], "states of the scheduled job")

    # A refusal two days ago, and one more today: two days, suppressed.
    backdate_failure(env, DEAD, 2)
    job3 = submit_job(env, [DEAD])
    env.wait_job_done(job3, 25)
    s = H.wait_until(lambda: suppression(env, DEAD), 10, what="the suppression of %s" % DEAD)
    check_eq(s["reason"], "unknown-user", "suppression reason")
    d3 = by_address(env, job3)
    check_eq(int(s["delivery_id"]), int(d3[DEAD]["id"]), "suppression's source delivery")
    check("User unknown" in (s["last_reply"] or ""), "suppression's last reply: %r", s["last_reply"])

    # The scheduled delivery of the suppressed address is cancelled and
    # logged; the other one still waits.
    d2 = by_address(env, job2)
    check_eq(d2[DEAD]["state"], "cancelled", "state of the waiting delivery of the suppressed address")
    check(d2[DEAD]["next_attempt"] is None, "a cancelled delivery still has a next_attempt")
    check_eq([r["outcome"] for r in env.delivery_log(d2[DEAD]["id"])], ["cancelled"],
             "delivery_log of the cancelled delivery")
    check_eq(d2["later@example.com"]["state"], "queued", "state of the other scheduled delivery")

    # The next submission skips the address and says so.
    before = mail_count(env)
    reply = submit(env, [DEAD, "fresh@example.com"])
    check(reply.code == 250, "submission not accepted: %r", reply)
    check(" 1 accepted, 0 rejected, 1 suppressed" in reply.text,
          "reply does not say 1 accepted, 1 suppressed: %r", reply.text)
    job4 = H.job_id_of(reply)
    check_eq(sorted(by_address(env, job4)), ["fresh@example.com"], "deliveries of the job after suppression")
    env.wait_job_done(job4, 25)
    check(sink.wait_for(2, 10), "the message for fresh@example.com did not arrive")
    check_eq(mail_count(env) - before, 1, "MAIL commands the sinks saw for the job with a suppressed address")
    last = sink.messages()[-1]
    check_eq([H.addr_of(r) for r in last["rcpts"]], ["fresh@example.com"], "recipient of the last message")
    env.intake.wait_log(r"address=%s status=suppressed reason=unknown-user" % DEAD)

    # A submission of suppressed addresses only creates no job.
    jobs = len(env.jobs())
    reply = submit(env, [DEAD])
    check_eq(reply.code, 550, "reply code for a submission left with no recipient")
    check("1 suppressed" in reply.text, "reply %r does not say 1 suppressed", reply.text)
    check_eq(len(env.jobs()), jobs, "jobs after a submission of suppressed addresses only")
    env.stop_clean()


@H.timeout(90)
def test_policy_blocks_never_count():
    env = cleaning_env("cleanpol")
    env.start()
    # Policy refusals "on two earlier days" (rows of the class they would
    # have), then three more today: never suppressed.
    for addr in (BLOCKED, FILTERED):
        backdate_failure(env, addr, 1, "policy")
        backdate_failure(env, addr, 3, "policy")
    for _ in range(3):
        job = submit_job(env, [BLOCKED, FILTERED, "fine@example.com"])
        env.wait_job_done(job, 25)
        d = by_address(env, job)
        check_eq((d[BLOCKED]["state"], d[BLOCKED]["last_status"]), ("failed", "5.7.1"), "the policy refusal")
        check_eq((d[FILTERED]["state"], int(d[FILTERED]["last_code"])), ("failed", 550), "docomo's filter refusal")
        check_eq(env.delivery_log(d[BLOCKED]["id"])[-1]["class"], "policy", "class of the 5.7.1 refusal")
        check_eq(env.delivery_log(d[FILTERED]["id"])[-1]["class"], "policy", "class of docomo's 550 after DATA")
    for addr in (BLOCKED, FILTERED):
        check(suppression(env, addr) is None, "%s suppressed after policy blocks", addr)
        check_eq([r for r in failures(env, addr) if r["today"]], [], "failures recorded today for %s" % addr)
    out = env.ctl("report", "cleaning").stdout
    check(BLOCKED not in out and FILTERED not in out, "the cleaning report lists policy blocks:\n%s", out)
    # And they are still taken by the next job.
    reply = submit(env, [BLOCKED, FILTERED])
    check(reply.code == 250 and "2 accepted, 0 rejected, 0 suppressed" in reply.text, "reply %r", reply)
    env.stop_clean()


@H.timeout(90)
def test_hatoctl_suppress_and_report():
    env = cleaning_env("cleanctl")
    env.start()
    job = submit_job(env, [DEAD])
    env.wait_job_done(job, 25)
    backdate_failure(env, DEAD, 2)
    backdate_failure(env, "old@docomo.ne.jp", 10)
    backdate_failure(env, "older@docomo.ne.jp", 4)
    today = str(env.db.scalar("SELECT UTC_DATE()"))
    three_ago = str(env.db.scalar("SELECT UTC_DATE() - INTERVAL 3 DAY"))
    six_ago = str(env.db.scalar("SELECT UTC_DATE() - INTERVAL 6 DAY"))

    # The cleaning report: per address, carrier, failures, days, last reply.
    rows = list(csv.reader(io.StringIO(env.ctl("report", "cleaning", "--since", three_ago).stdout)))
    check_eq(rows[0], ["address", "carrier", "failures", "days", "last_reply"], "report header")
    check_eq([r[0] for r in rows[1:]], [DEAD], "addresses failed since %s" % three_ago)
    check_eq(rows[1][1:4], ["relay:default", "2", "2"], "carrier, failures, days of %s" % DEAD)
    check("User unknown" in rows[1][4], "last reply in the report: %r", rows[1][4])
    rows = list(csv.reader(io.StringIO(env.ctl("report", "cleaning", "--since=" + six_ago).stdout)))
    check_eq([r[0] for r in rows[1:]], [DEAD, "older@docomo.ne.jp"], "addresses failed since %s" % six_ago)
    check_eq(rows[2][1:4], ["relay:docomo", "1", "1"], "carrier, failures, days of older@docomo.ne.jp")
    rows = list(csv.reader(io.StringIO(env.ctl("report", "cleaning", "--since", today).stdout)))
    check_eq(rows[1][:4], [DEAD, "relay:default", "1", "1"], "the report since today")
    r = env.ctl("report", "cleaning", "--since", "2026-02-30", check_rc=False)
    check_eq(r.returncode, 2, "exit code of report cleaning with a day that does not exist")
    r = env.ctl("report", "nonsense", check_rc=False)
    check_eq(r.returncode, 2, "exit code of an unknown report")

    # suppress add / list / export / remove.
    r = env.ctl("suppress", "add", "Someone@Example.COM")
    check("suppressed (manual)" in r.stdout, "suppress add said %r", r.stdout)
    r = env.ctl("suppress", "add", "--reason", "unsubscribed", "gone@example.net")
    check_eq(suppression(env, "gone@example.net")["reason"], "unsubscribed", "reason given by --reason")
    r = env.ctl("suppress", "add", "Someone@example.com")
    check("already" in r.stdout, "a second suppress add said %r", r.stdout)
    check_eq(env.ctl("suppress", "add", "not an address", check_rc=False).returncode, 1,
             "exit code of suppress add with a bad address")
    check_eq(env.ctl("suppress", "add", "x@example.com", "--reason", "whim", check_rc=False).returncode, 2,
             "exit code of suppress add with an unknown reason")
    out = env.ctl("suppress", "list").stdout.splitlines()
    check(out[0].split()[:2] == ["ADDRESS", "REASON"], "suppress list header: %r", out[0])
    listed = {line.split()[0]: line.split()[1] for line in out[1:]}
    check_eq(listed, {"Someone@example.com": "manual", "gone@example.net": "unsubscribed"},
             "suppress list (the domain lower-cased, the local part kept)")
    rows = list(csv.reader(io.StringIO(env.ctl("suppress", "export").stdout)))
    check_eq(rows[0], ["address", "reason", "since", "delivery", "last_reply"], "export header")
    check_eq(sorted((r[0], r[1]) for r in rows[1:]),
             [("Someone@example.com", "manual"), ("gone@example.net", "unsubscribed")], "exported rows")
    check_eq(env.ctl("suppress", "remove", "gone@example.net").returncode, 0, "exit code of suppress remove")
    check_eq(env.ctl("suppress", "remove", "gone@example.net", check_rc=False).returncode, 1,
             "exit code of removing an address that is not suppressed")
    check(suppression(env, "gone@example.net") is None, "still suppressed after suppress remove")
    check_eq(env.ctl("suppress", "frobnicate", check_rc=False).returncode, 2, "exit code of a bad subcommand")

    # A manual suppression cancels what still waits, and intake skips it.
    job = submit_job(env, ["waiting@example.com", "other@example.com"], ["Send-At: %s" % send_at_ahead(10)])
    r = env.ctl("suppress", "add", "waiting@example.com")
    check("1 waiting deliveries cancelled" in r.stdout, "suppress add said %r", r.stdout)
    check_eq(by_address(env, job)["waiting@example.com"]["state"], "cancelled", "state after suppress add")
    reply = submit(env, ["waiting@example.com", "Someone@example.com", "new@example.com"])
    check(" 1 accepted, 0 rejected, 2 suppressed" in reply.text, "reply %r", reply.text)

    # The database away: 69.
    env.stop_clean()
    env.db.stop()
    check_eq(env.ctl("suppress", "list", check_rc=False).returncode, 69, "exit code with the database away")


if __name__ == "__main__":
    H.main(globals())
