"""Send-At: a job submitted for a few seconds ahead waits and starts on time.
Nothing reaches the sink before the time, everything after it, the first
message within 2 s of it. While the job waits the gateway does not spin on
the database: its statements per second stay those of an idle poll."""

import datetime
import time

import hatotest as H
from hatotest import check, check_eq

TZ = datetime.timezone(datetime.timedelta(hours=9))  # [intake] timezone = Asia/Tokyo
RCPTS = ["s%d@example.com" % i for i in range(5)]


def executed(env):
    """Prepared statements executed by the server so far."""
    rows = env.db.query("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'")
    return int(rows[0]["Value"])


@H.timeout(90)
def test_send_at_starts_on_time():
    env = H.Env("sendat")
    sink = env.relay_sink("default")
    env.route("*", "relay:default")
    # Mail back to the submitter (receipts) goes to a sink of its own.
    env.relay_sink("submitter")
    env.route("example.co.jp", "relay:submitter")
    env.start()
    when = datetime.datetime.now(TZ).replace(microsecond=0) + datetime.timedelta(seconds=7)
    r = env.submit(env.submission(RCPTS, "予約配信", "本文\n",
                                  extra_control=["Send-At: %s" % when.strftime("%Y-%m-%d %H:%M:%S")])).one()
    check(r.code == 250, "Send-At submission refused: %r", r)
    job_id = H.job_id_of(r)
    t0, n0 = time.time(), executed(env)
    # Wait until just before the time: nothing may have gone.
    time.sleep(max(0, when.timestamp() - time.time() - 0.5))
    waited, stmts = time.time() - t0, executed(env) - n0
    check_eq(len(sink.messages()), 0, "messages before Send-At")
    check_eq(env.job(job_id)["state"], "queued", "job state while it waits")
    H.wait_until(lambda: len(sink.messages()) >= len(RCPTS), 15, what="all messages after Send-At")
    first = min(m["t"] for m in sink.messages())
    late = first - when.timestamp()
    check(-0.05 <= late <= 2.0, "the first message came %.2fs from Send-At (want 0..2 s)", late)
    check_eq(sorted(H.addr_of(m["rcpts"][0]) for m in sink.messages()), RCPTS, "recipients")
    env.wait_job_done(job_id, 10)
    # poll_interval is 100ms here: about ten claims a second and the
    # upkeep's few statements; a spinning loop would run thousands.
    rate = stmts / waited
    H.log("Send-At: first message %.3fs after the time; %.1f statements/s while waiting" % (late, rate))
    check(rate < 60, "%.0f statements a second while a job waits: the gateway spins", rate)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
