"""Retries and failures: 4xx defers and retries after [retry] intervals,
5xx fails at once with the code and text recorded, and the job is done when
nothing is left queued or deferred."""

import re

import hatotest as H
from hatotest import check, check_eq


def relay_env(name, script):
    env = H.Env(name)
    env.relay_sink("default", script=script)
    env.route("*", "relay:default")
    env.config.section("retry").update({"intervals": "1s", "max_attempts": 5})
    return env


def by_address(env, job_id):
    return {d["address"]: d for d in env.deliveries(job_id)}


def arrived(sink, addr):
    return [m for m in sink.messages() if [H.addr_of(r) for r in m["rcpts"]] == [addr]]


def mail_attempts(sink, delivery_id):
    """MAIL commands the sink saw for a delivery (its envelope sender names it)."""
    rx = re.compile(r"^<?bounce\+%d(?:[^0-9@][^@]*)?@" % delivery_id, re.I)
    return sum(1 for _, sender in sink.mail_times() if rx.match(sender or ""))


def submit(env, rcpts):
    data = env.submission(rcpts, "再送のテスト", "再送テストの本文です。\n")
    sub = env.submit(data)
    reply = sub.one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply)


def test_rcpt_4xx_then_5xx():
    script = {"rules": [
        {"match": "*@fail.example", "rcpt": ["550 5.1.1 User unknown"]},
        {"match": "retry@*", "rcpt": ["451 4.3.0 Try again", "250 2.1.5 Ok"]},
    ]}
    env = relay_env("retry_rcpt", script)
    env.start()
    job_id = submit(env, ["retry@example.com", "dead@fail.example", "ok@example.com"])
    sink = env.sinks["default"]
    env.wait_job_done(job_id, 25)
    d = by_address(env, job_id)
    check_eq(sorted(d), ["dead@fail.example", "ok@example.com", "retry@example.com"], "delivery addresses")

    ok = d["ok@example.com"]
    check_eq((ok["state"], int(ok["attempts"])), ("sent", 1), "ok@example.com state, attempts")
    check_eq(len(arrived(sink, "ok@example.com")), 1, "copies of ok@example.com")

    r = d["retry@example.com"]
    check_eq(r["state"], "sent", "retry@example.com state")
    check_eq(int(r["attempts"]), 2, "retry@example.com attempts")
    check_eq(len(arrived(sink, "retry@example.com")), 1, "copies of retry@example.com")
    log = env.delivery_log(r["id"])
    check_eq([row["outcome"] for row in log], ["deferred", "sent"], "delivery_log outcomes of retry@example.com")
    check_eq(int(log[0]["code"]), 451, "code of the deferred attempt")
    check_eq([int(row["attempt"]) for row in log], [1, 2], "attempt numbers in delivery_log")
    waited = (log[1]["at"] - log[0]["at"]).total_seconds()
    check(waited >= 0.9, "retry after %.3fs, before the 1s retry interval", waited)
    check_eq(mail_attempts(sink, r["id"]), 2, "MAIL commands the sink saw for retry@example.com")

    f = d["dead@fail.example"]
    check_eq(f["state"], "failed", "dead@fail.example state")
    check_eq(int(f["attempts"]), 1, "dead@fail.example attempts")
    check_eq(f["last_code"], 550, "dead@fail.example last_code")
    check_eq(f["last_status"], "5.1.1", "dead@fail.example last_status")
    check("User unknown" in (f["last_text"] or ""), "dead@fail.example last_text %r lacks the reply text", f["last_text"])
    check_eq(len(arrived(sink, "dead@fail.example")), 0, "copies of dead@fail.example")
    check_eq(mail_attempts(sink, f["id"]), 1, "MAIL commands the sink saw for dead@fail.example (no retry after 5xx)")
    log = env.delivery_log(f["id"])
    check_eq([row["outcome"] for row in log], ["failed"], "delivery_log outcomes of dead@fail.example")
    check_eq(int(log[0]["code"]), 550, "delivery_log code of dead@fail.example")

    job = env.job(job_id)
    check(job["finished_at"] is not None, "job %d is done but has no finished_at", job_id)
    out = env.ctl("job", "show", job_id).stdout
    check("failed" in out and "dead@fail.example" in out, "`hatoctl job show` does not show the failure:\n%s", out)
    env.stop_clean()


def test_data_stage_4xx_then_5xx():
    script = {"rules": [
        {"match": "later@*", "dot": ["452 4.3.1 Insufficient system storage", "250 2.0.0 Ok"]},
        {"match": "spam@*", "dot": ["554 5.7.1 Message rejected as spam"]},
    ]}
    env = relay_env("retry_dot", script)
    env.start()
    job_id = submit(env, ["later@example.com", "spam@example.com"])
    env.wait_job_done(job_id, 25)
    d = by_address(env, job_id)

    r = d["later@example.com"]
    check_eq((r["state"], int(r["attempts"])), ("sent", 2), "later@example.com state, attempts")
    log = env.delivery_log(r["id"])
    check_eq([row["outcome"] for row in log], ["deferred", "sent"], "delivery_log outcomes of later@example.com")
    check_eq(int(log[0]["code"]), 452, "code of the deferred attempt")

    f = d["spam@example.com"]
    check_eq((f["state"], int(f["attempts"])), ("failed", 1), "spam@example.com state, attempts")
    check_eq(f["last_code"], 554, "spam@example.com last_code")
    check_eq(f["last_status"], "5.7.1", "spam@example.com last_status")
    check("rejected as spam" in (f["last_text"] or ""), "spam@example.com last_text %r", f["last_text"])
    env.stop_clean()


@H.timeout(60)
def test_schedule_and_expiry_per_relay():
    """451 three times, then 250: sent on the fourth attempt, each retry after
    the relay's own schedule (1s 2s, the last repeating); a delivery that stays
    4xx past the relay's max_age expires as failed with its last reply."""
    env = H.Env("retry_sched")
    env.relay_sink("default", script={"rules": [
        {"match": "thrice@*", "rcpt": ["451 4.3.0 one", "451 4.3.0 two", "451 4.3.0 three", "250 2.1.5 Ok"]},
        {"match": "never@*", "rcpt": ["451 4.7.1 Greylisted, try again"]},
    ]})
    env.relay_sink("stale", script={"rules": [{"match": "*", "rcpt": ["451 4.7.1 Greylisted, try again"]}]})
    env.route("stale.example", "relay:stale")
    env.route("*", "relay:default")
    env.config.section("retry").update({"intervals": "5m", "max_attempts": 10, "max_age": "1h"})
    env.config.section("relay default").update({"retry_intervals": "1s 2s", "max_attempts": 8})
    env.config.section("relay stale").update({"retry_intervals": "1s", "max_age": "3s"})
    env.start()
    job = submit(env, ["thrice@example.com", "old@stale.example"])
    env.wait_job_done(job, 40)
    d = by_address(env, job)
    r = d["thrice@example.com"]
    check_eq((r["state"], int(r["attempts"])), ("sent", 4), "thrice@example.com state, attempts")
    log = env.delivery_log(r["id"])
    check_eq([row["outcome"] for row in log], ["deferred", "deferred", "deferred", "sent"], "outcomes")
    waits = [(b["at"] - a["at"]).total_seconds() for a, b in zip(log, log[1:])]
    H.log("waits between attempts: %r" % waits)
    for got, want in zip(waits, [1, 2, 2]):
        check(want - 0.05 <= got < want + 2, "a retry after %.2fs, scheduled after %ds (waits %r)", got, want, waits)
    x = d["old@stale.example"]
    check_eq(x["state"], "failed", "old@stale.example state after its max_age")
    check("expired" in (x["last_text"] or "") and "Greylisted" in (x["last_text"] or ""),
          "the expiry does not keep the last reply: %r", x["last_text"])
    check_eq(x["last_code"], 451, "last code of the expired delivery")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
