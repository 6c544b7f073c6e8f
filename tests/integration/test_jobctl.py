"""Job control with hatoctl: pause holds back the waiting deliveries (those
in flight finish) and resume gives them their due times back; cancel ends
the job with its waiting deliveries cancelled; reschedule moves a job's
start and its not-yet-attempted deliveries, keeping their spread. Each
command prints one line saying what it did, and exits 1 with the reason
when the job's state does not allow it, 2 on bad usage, 69 without a
database."""

import datetime
import json
import re
import time

import hatotest as H
from hatotest import check, check_eq

TZ = datetime.timezone(datetime.timedelta(hours=9))  # [intake] timezone = Asia/Tokyo


def ctl_env(name):
    env = H.Env(name)
    env.relay_sink("default")
    env.route("*", "relay:default")
    # Mail back to the submitter (receipts) goes to a sink of its own.
    env.relay_sink("submitter")
    env.route("example.co.jp", "relay:submitter")
    return env.start()


def submit(env, rcpts, extra=()):
    r = env.submit(env.submission(rcpts, "操作のテスト", "本文\n", extra_control=list(extra))).one()
    check(r.code == 250, "submission refused: %r", r)
    return H.job_id_of(r)


def ctl_fails(env, want_rc, *args):
    r = env.ctl(*args, check_rc=False)
    check(r.returncode == want_rc, "`hatoctl %s` exit %d (want %d): %s%s", " ".join(map(str, args)),
          r.returncode, want_rc, r.stdout, r.stderr)
    check_eq(r.stdout, "", "stdout of a refused `hatoctl %s`" % " ".join(map(str, args)))
    return r.stderr.strip()


def arrived(env):
    return sorted(H.addr_of(m["rcpts"][0]) for m in env.sinks["default"].messages())


def later(seconds):
    return (datetime.datetime.now(TZ) + datetime.timedelta(seconds=seconds)).isoformat(timespec="seconds")


@H.timeout(120)
def test_pause_and_resume():
    env = ctl_env("pause")
    rcpts = ["p%d@example.com" % i for i in range(8)]
    job_id = submit(env, rcpts, ["Rate: 2/s"])
    H.wait_until(lambda: len(env.sinks["default"].messages()) >= 2, 15, what="the first messages")
    r = env.ctl("job", "pause", job_id)
    m = re.fullmatch(r"job %d paused: (\d+) deliveries held back, (\d+) in flight\n" % job_id, r.stdout)
    check(m, "`job pause` said %r", r.stdout)
    held, flying = int(m.group(1)), int(m.group(2))
    check(held >= 3, "only %d deliveries held back of 8 at 2/s", held)
    check_eq(env.job(job_id)["state"], "paused", "jobs.state")
    time.sleep(3)
    sent_while_paused = len(env.sinks["default"].messages())
    check(sent_while_paused <= 8 - held, "%d sent while paused with %d held back", sent_while_paused, held)
    for d in env.deliveries(job_id):
        check(d["state"] in ("paused", "sent"), "delivery %s of a paused job is %s", d["id"], d["state"])
        if d["state"] == "paused":
            check(d["next_attempt"] is None, "paused delivery %s has next_attempt %s", d["id"], d["next_attempt"])
    check_eq(ctl_fails(env, 1, "job", "pause", job_id), "hatoctl: job %d is paused" % job_id, "pausing twice")
    time.sleep(1)
    check_eq(len(env.sinks["default"].messages()), sent_while_paused, "messages sent while paused")
    r = env.ctl("job", "resume", job_id)
    check(re.fullmatch(r"job %d resumed: %d deliveries queued, \d+ in flight\n" % (job_id, held), r.stdout),
          "`job resume` said %r", r.stdout)
    env.wait_job_done(job_id, 30)
    check_eq(arrived(env), sorted(rcpts), "recipients after resume")
    check_eq(ctl_fails(env, 1, "job", "resume", job_id), "hatoctl: job %d is done" % job_id, "resuming a done job")
    check_eq(ctl_fails(env, 1, "job", "pause", job_id), "hatoctl: job %d is done" % job_id, "pausing a done job")
    H.log("pause: %d held back, %d in flight" % (held, flying))
    env.stop_clean()


@H.timeout(90)
def test_pause_holds_back_what_comes_back_deferred():
    # slow@ is in flight when the job is paused: its 451 comes 3 s later, and
    # the retry it would get is held back with the rest (the gateway's upkeep).
    env = H.Env("pausedefer")
    env.relay_sink("default", script={"rules": [
        {"match": "slow@*", "dot": ["sleep 3 451 4.3.0 Try again later", "250 2.0.0 Ok"]}]})
    env.route("*", "relay:default")
    env.relay_sink("submitter")
    env.route("example.co.jp", "relay:submitter")
    env.start()
    sink = env.sinks["default"]
    rcpts = ["slow@example.com", "a@example.com", "b@example.com"]
    job_id = submit(env, rcpts, ["Rate: 12/min"])
    H.wait_until(lambda: len(sink.mail_times()) >= 1, 10, what="the first MAIL")
    r = env.ctl("job", "pause", job_id)
    check_eq(r.stdout, "job %d paused: 2 deliveries held back, 1 in flight\n" % job_id, "`job pause` output")
    slow = lambda: [d for d in env.deliveries(job_id) if d["address"] == "slow@example.com"][0]
    H.wait_until(lambda: slow()["state"] == "paused", 10, what="the deferred in-flight delivery to be held back")
    d = slow()
    check(d["next_attempt"] is None and int(d["attempts"]) == 1, "slow@ after its 451: %s %s attempts %s",
          d["state"], d["next_attempt"], d["attempts"])
    time.sleep(2)
    check_eq(len(sink.mail_times()), 1, "MAIL commands while paused (a retry went out)")
    r = env.ctl("job", "resume", job_id)
    check_eq(r.stdout, "job %d resumed: 3 deliveries queued, 0 in flight\n" % job_id, "`job resume` output")
    env.wait_job_done(job_id, 30)
    check_eq(arrived(env), sorted(rcpts), "recipients after resume")
    check_eq(int(slow()["attempts"]), 2, "attempts of slow@")
    env.stop_clean()


@H.timeout(90)
def test_cancel():
    env = ctl_env("cancel")
    job_id = submit(env, ["x%d@example.com" % i for i in range(4)], ["Send-At: %s" % later(3600)])
    r = env.ctl("job", "cancel", job_id)
    check_eq(r.stdout, "job %d cancelled: 4 deliveries cancelled, 0 in flight\n" % job_id, "`job cancel` output")
    job = env.job(job_id)
    check(job["state"] == "cancelled" and job["finished_at"] is not None, "job after cancel: %s %s",
          job["state"], job["finished_at"])
    for d in env.deliveries(job_id):
        check(d["state"] == "cancelled" and d["next_attempt"] is None, "delivery %s: %s %s",
              d["id"], d["state"], d["next_attempt"])
        log = env.delivery_log(d["id"])
        check(log and log[-1]["outcome"] == "cancelled", "delivery_log of %s: %r", d["id"], log)
    check_eq(ctl_fails(env, 1, "job", "cancel", job_id), "hatoctl: job %d is cancelled" % job_id, "cancelling twice")
    check_eq(ctl_fails(env, 1, "job", "resume", job_id), "hatoctl: job %d is cancelled" % job_id, "resuming cancelled")
    check_eq(ctl_fails(env, 1, "job", "reschedule", job_id, later(5)), "hatoctl: job %d is cancelled" % job_id,
             "rescheduling cancelled")
    # A running job: what waits is cancelled, the job ends, nothing more is sent.
    job2 = submit(env, ["y%d@example.com" % i for i in range(6)], ["Rate: 2/s"])
    H.wait_until(lambda: len(env.sinks["default"].messages()) >= 1, 15, what="the first message")
    r = env.ctl("job", "cancel", job2)
    m = re.fullmatch(r"job %d cancelled: (\d+) deliveries cancelled, (\d+) in flight\n" % job2, r.stdout)
    check(m, "`job cancel` of a running job said %r", r.stdout)
    time.sleep(2.5)
    sent = len(env.sinks["default"].messages())
    check(sent <= 6 - int(m.group(1)), "%d sent after %s were cancelled", sent, m.group(1))
    check_eq(env.job(job2)["state"], "cancelled", "state of the cancelled running job")
    env.stop_clean()


@H.timeout(90)
def test_reschedule():
    env = ctl_env("resched")
    rcpts = ["r%d@example.com" % i for i in range(3)]
    job_id = submit(env, rcpts, ["Send-At: %s" % later(3600), "Rate: 1/s"])
    when = datetime.datetime.now(TZ).replace(microsecond=0) + datetime.timedelta(seconds=5)
    r = env.ctl("job", "reschedule", job_id, when.strftime("%Y-%m-%d %H:%M:%S"))
    check(re.fullmatch(r"job %d rescheduled: 3 deliveries moved, 0 in flight, starting %s \+0900\n"
                       % (job_id, re.escape(when.strftime("%Y-%m-%d %H:%M:%S"))), r.stdout),
          "`job reschedule` said %r", r.stdout)
    due = [d["next_attempt"].replace(tzinfo=datetime.timezone.utc) for d in env.deliveries(job_id)]
    check(abs((due[0] - when).total_seconds()) < 0.01, "first due %s, want %s", due[0], when)
    gaps = [(due[i + 1] - due[i]).total_seconds() for i in range(2)]
    check(all(abs(g - 1) < 0.01 for g in gaps), "gaps after reschedule %s, want 1s", gaps)
    send_at = env.job(job_id)["send_at"].replace(tzinfo=datetime.timezone.utc)
    check(abs((send_at - when).total_seconds()) < 0.01, "jobs.send_at %s, want %s", send_at, when)
    time.sleep(max(0, when.timestamp() - time.time() - 1))
    check_eq(len(env.sinks["default"].messages()), 0, "messages before the new time")
    env.wait_job_done(job_id, 20)
    first = min(m["t"] for m in env.sinks["default"].messages())
    check(when.timestamp() - 0.05 <= first <= when.timestamp() + 2, "first arrival %.2fs from the new time",
          first - when.timestamp())
    check_eq(arrived(env), rcpts, "recipients after reschedule")
    # Usage and state errors.
    check(re.search(r"Send-At", ctl_fails(env, 2, "job", "reschedule", job_id, "tomorrow")), "a bad time's message")
    ctl_fails(env, 2, "job", "reschedule", job_id)
    ctl_fails(env, 2, "job", "pause", "twelve")
    check_eq(ctl_fails(env, 1, "job", "pause", "999"), "hatoctl: no job 999", "pausing no job")
    check_eq(ctl_fails(env, 1, "job", "reschedule", job_id, later(60)), "hatoctl: job %d is done" % job_id,
             "rescheduling a done job")
    env.stop_clean()


@H.timeout(90)
def test_held_job_rescheduled_then_approved():
    # A held job moved to later stays held; approved, it starts at the new time.
    env = H.Env("reschedheld")
    env.relay_sink("default")
    env.route("*", "relay:default")
    env.config.section("submitter marketing")["approval"] = True
    env.start()
    job_id = submit(env, ["h%d@example.com" % i for i in range(2)], ["Rate: 1/s"])
    when = datetime.datetime.now(TZ).replace(microsecond=0) + datetime.timedelta(seconds=4)
    r = env.ctl("--json", "job", "reschedule", job_id, when.isoformat())
    out = json.loads(r.stdout)
    check_eq((out["job"], out["command"], out["result"], out["state_before"], out["deliveries"]),
             (job_id, "reschedule", "done", "held", 2), "`--json job reschedule` of a held job")
    check(all(d["state"] == "held" and d["next_attempt"] is None for d in env.deliveries(job_id)),
          "a rescheduled held job's deliveries are not held")
    env.ctl("job", "approve", job_id)
    due = [d["next_attempt"].replace(tzinfo=datetime.timezone.utc) for d in env.deliveries(job_id)]
    offsets = [(t - when).total_seconds() for t in due]
    check(abs(offsets[0]) < 0.01 and abs(offsets[1] - 1) < 0.01, "due times after approval: %s from the new start",
          offsets)
    env.wait_job_done(job_id, 20)
    first = min(m["t"] for m in env.sinks["default"].messages())
    check(when.timestamp() - 0.05 <= first <= when.timestamp() + 2, "first arrival %.2fs from the new time",
          first - when.timestamp())
    r = env.ctl("--json", "job", "pause", job_id, check_rc=False)
    out = json.loads(r.stdout)
    check(r.returncode == 1 and out["result"] == "state" and out["message"] == "job %d is done" % job_id,
          "`--json job pause` of a done job: %d %r", r.returncode, out)
    env.stop_clean()


@H.timeout(60)
def test_no_database():
    env = H.Env("ctlnodb", db=False)
    env.write_config()
    for args in (("pause", "1"), ("resume", "1"), ("cancel", "1"), ("approve", "1"), ("reschedule", "1", later(60))):
        r = env.ctl("job", *args, check_rc=False)
        check(r.returncode == 69, "`job %s` without a database: exit %d %r", " ".join(args), r.returncode, r.stderr)


if __name__ == "__main__":
    H.main(globals())
