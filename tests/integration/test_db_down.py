"""Intake's answers: 4xx while MariaDB is away (and nothing half-stored), 250
again once it is back; no job for an unknown sender, a bad token or a
malformed submission, each with its own answer."""

import hatotest as H
from hatotest import check, check_eq

RCPTS = ["taro@docomo.ne.jp", "hanako@ezweb.ne.jp"]
BODY = "データベース停止中のテストです。\n"


def count_jobs(env):
    return env.db.scalar("SELECT COUNT(*) FROM jobs")


def count_deliveries(env):
    return env.db.scalar("SELECT COUNT(*) FROM deliveries")


def intake_env(name):
    env = H.Env(name)
    env.route("*", "mx")
    env.start(gateway=False)
    return env


def expect_temporary_while_down(env, data):
    env.db.stop()
    sub = env.submit(data)
    r = sub.one()
    check(r.temporary, "MariaDB down: got %r, want 4xx\n%s", r, "\n".join(sub.transcript))
    if r.status is not None:
        check(r.status.startswith("4."), "MariaDB down: enhanced status %s of %r", r.status, r)
    env.intake.assert_running()
    env.db.start()


def test_db_down_before_first_submission():
    env = intake_env("dbdown_first")
    data = env.submission(RCPTS, "停止テスト", BODY)
    expect_temporary_while_down(env, data)
    check_eq(count_jobs(env), 0, "jobs after the refused submission")
    check_eq(count_deliveries(env), 0, "deliveries after the refused submission")

    r = env.submit(data).one()
    check(r.code == 250, "after MariaDB came back: got %r, want 250", r)
    job_id = H.job_id_of(r)
    check_eq(count_jobs(env), 1, "jobs after the accepted submission")
    check_eq(len(env.deliveries(job_id)), len(RCPTS), "deliveries of job %d" % job_id)
    env.stop_clean()


def test_db_lost_between_submissions():
    env = intake_env("dbdown_lost")
    first = env.submission(["first@example.com"], "一通目", BODY)
    r = env.submit(first).one()
    check(r.code == 250, "first submission: %r", r)
    first_id = H.job_id_of(r)

    data = env.submission(RCPTS, "停止テスト", BODY)
    expect_temporary_while_down(env, data)
    check_eq([j["id"] for j in env.jobs()], [first_id], "jobs after the refused submission")
    check_eq(count_deliveries(env), 1, "deliveries after the refused submission")

    r = env.submit(data).one()
    if r.code != 250:
        # Find out whether intake recovers on a later try, to say which bug it is.
        later = [env.submit(data).one() for _ in range(3)]
        ok = [x for x in later if x.code == 250]
        raise H.TestFailure(
            "after MariaDB came back: first re-submission got %r, want 250 (a lost connection must be "
            "retried, not answered 4xx); later tries: %r; jobs now: %d"
            % (r, later, count_jobs(env)) + (" (it recovers on its own)" if ok else " (it does not recover)"))
    job_id = H.job_id_of(r)
    check_eq(count_jobs(env), 2, "jobs after the accepted submission")
    check_eq(sorted(d["address"] for d in env.deliveries(job_id)), sorted(RCPTS), "deliveries of job %d" % job_id)
    env.stop_clean()


def test_gateway_rides_out_db_restart():
    env = H.Env("dbdown_gw")
    sink = env.relay_sink("default")
    env.route("*", "relay:default")
    env.start()
    r = env.submit(env.submission(["before@example.com"], "再起動前", BODY)).one()
    check(r.code == 250, "first submission: %r", r)
    env.wait_job_done(H.job_id_of(r), 20)

    seen = len(env.gateway.log_text())
    env.db.stop()

    def noticed():
        new = env.gateway.log_text()[seen:].lower()
        return any(w in new for w in ("warn", "error", "fail", "unavailable", "gone away", "lost connection"))
    H.wait_until(noticed, 5, what="the gateway to log that MariaDB is away")
    env.gateway.assert_running()
    env.db.start()

    data = env.submission(["after@example.com"], "再起動後", BODY)
    r = env.submit(data).one()
    if r.code != 250:  # intake's stale connection is test_db_lost_between_submissions' business
        r = env.submit(data).one()
    check(r.code == 250, "submission after the restart: %r", r)
    env.wait_job_done(H.job_id_of(r), 20)
    got = sorted(H.addr_of(m["rcpts"][0]) for m in sink.messages())
    check_eq(got, ["after@example.com", "before@example.com"], "recipients that arrived")
    env.stop_clean()


def test_unknown_sender():
    env = intake_env("unknown")
    stranger = "stranger@example.net"
    data = H.make_submission(stranger, env.token, RCPTS, "知らない人", BODY, to=env.submit_address)
    r = env.submit(data, mail_from=stranger).one()
    check(r.code == 250, "unknown sender: got %r, want 250 (no backscatter)", r)
    check_eq(count_jobs(env), 0, "jobs after an unknown sender's mail")
    check_eq(count_deliveries(env), 0, "deliveries after an unknown sender's mail")
    env.intake.wait_log(r"stranger@example\.net", 5)
    env.stop_clean()


def test_bad_token():
    env = intake_env("badtoken")
    data = env.submission(RCPTS, "偽物", BODY, token="not-the-token")
    r = env.submit(data).one()
    check(r.permanent, "bad token: got %r, want 5xx", r)
    check(r.status is not None and r.status.startswith("5.7."), "bad token: enhanced status %s, want 5.7.x (%r)", r.status, r)
    check_eq(count_jobs(env), 0, "jobs after a bad token")

    data = env.submission(RCPTS, "トークンなし", BODY, token=None)
    r = env.submit(data).one()
    check(r.permanent, "no token: got %r, want 5xx", r)
    check_eq(count_jobs(env), 0, "jobs after a submission without a token")
    env.stop_clean()


def test_malformed_submissions():
    env = intake_env("malformed")
    cases = [
        ("no control block", dict(control=False, body="こんにちは。\n本文だけのメールです。\n"), "control"),
        ("unknown control key", dict(extra_control=["Bcc: boss@example.co.jp"]), None),
        ("no recipients", dict(rcpts=[]), None),
        ("bad Dry-Run value", dict(extra_control=["Dry-Run: perhaps"]), None),
    ]
    for what, kw, word in cases:
        rcpts = kw.pop("rcpts", RCPTS)
        body = kw.pop("body", BODY)
        data = env.submission(rcpts, "不正な依頼", body, **kw)
        r = env.submit(data).one()
        check(r.permanent, "%s: got %r, want 5xx", what, r)
        check_eq(r.status, "5.6.0", "%s: enhanced status of %r" % (what, r))
        reason = r.text.split("5.6.0", 1)[-1].strip()
        check(len(reason) >= 8, "%s: no specific reason in %r", what, r)
        if word:
            check(word in r.text.lower(), "%s: reply %r does not mention %r", what, r, word)
        check_eq(count_jobs(env), 0, "jobs after %s" % what)
    env.intake.assert_running()
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
