"""Crash safety: a large job, the gateway killed with SIGKILL at random moments
and restarted each time. At the end every recipient was delivered, none was
lost, and the duplicates at the sink are exactly those that were in flight
when a gateway died: messages the sink had accepted whose outcome the dead
process had not recorded yet (at-least-once, bounded by what was in flight).

HATO_CRASH_RECIPIENTS sets the size (default 20,000) and HATO_CRASH_KILLS
the number of kills (default 10)."""

import collections
import os
import random
import signal
import time

import hatotest as H
from hatotest import check, check_eq

N = int(os.environ.get("HATO_CRASH_RECIPIENTS", "20000"))
KILLS = int(os.environ.get("HATO_CRASH_KILLS", "10"))


def counts(sink):
    c = collections.Counter()
    for m in sink.messages():
        for r in m["rcpts"]:
            c[H.addr_of(r)] += 1
    return c


@H.timeout(300)
def test_gateway_killed_repeatedly():
    rng = random.Random(int(os.environ.get("HATO_CRASH_SEED", "20261122")))
    env = H.Env("crash")
    sink = env.relay_sink("default")
    env.route("*", "relay:default")
    # Short leases so that a dead gateway's work comes back quickly.
    env.config.section("gateway").update({"lease": "3s", "claim_batch": 500, "poll_interval": "100ms"})
    env.config.section("limits").update({"connections": 4, "per_connection": 500})
    env.start()
    rcpts = ["c%05d@example.com" % i for i in range(N)]
    csv = ("email\r\n" + "\r\n".join(rcpts) + "\r\n").encode()
    data = H.make_submission(env.submitter, env.token, [], "クラッシュ試験", "本文\n", to=env.submit_address,
                             attachments=[("list.csv", "text/csv", csv)], control=[
                                 "Token: %s" % env.token, "Subject: クラッシュ試験"])
    reply = env.submit(data).one()
    check(reply.code == 250, "submission refused: %r", reply)
    job = H.job_id_of(reply)

    bound = 0
    deadline = time.time() + 240
    started = time.time() - 5  # the first incarnation started with env.start()
    for k in range(KILLS):
        # Let it send for a random while (but stop killing once nearly done).
        H.wait_until(lambda: len(sink.messages()) >= (k + 1) * N // (KILLS + 2), 120,
                     what="progress before kill %d" % (k + 1))
        time.sleep(rng.uniform(0.0, 0.3))
        env.gateway.proc.send_signal(signal.SIGKILL)
        env.gateway.proc.wait(10)
        time.sleep(0.3)  # let the sink finish what was already on the wire
        # What this incarnation got accepted and did not record as sent will
        # be sent again: that is what was in flight when it died.
        sent = {r["address"] for r in env.db.query(
            "SELECT address FROM deliveries WHERE job_id = %s AND state = 'sent'", (job,))}
        mine = [H.addr_of(r) for m in sink.messages() if m["t"] >= started for r in m["rcpts"]]
        in_flight = sum(1 for a in mine if a not in sent)
        bound += in_flight
        H.log("kill %d: %d messages at the sink (%d from this run), %d recorded sent, %d in flight" %
              (k + 1, len(sink.messages()), len(mine), len(sent), in_flight))
        started = time.time()
        env.start_gateway()
        check(time.time() < deadline, "the run took too long")

    env.wait_job_done(job, 240)
    final = counts(sink)
    check_eq(set(final), set(rcpts), "recipients that reached the sink")
    dups = sum(final.values()) - N
    H.log("%d kills, %d duplicates, in-flight bound %d" % (KILLS, dups, bound))
    check(dups <= bound, "%d duplicates, more than the %d messages in flight at the kills", dups, bound)
    states = {r["state"]: r["n"] for r in env.db.query(
        "SELECT state, COUNT(*) AS n FROM deliveries WHERE job_id = %s GROUP BY state", (job,))}
    check_eq(states, {"sent": N}, "delivery states")
    # Outcomes are recorded 64 rows a statement: each row must carry the
    # reply of its own last attempt (the sink's queue ids are unique).
    mixed = env.db.scalar(
        "SELECT COUNT(*) FROM deliveries d JOIN delivery_log l ON l.id ="
        " (SELECT MAX(id) FROM delivery_log WHERE delivery_id = d.id)"
        " WHERE d.job_id = %s AND NOT (d.last_text <=> l.text AND d.last_code <=> l.code"
        " AND d.attempts >= 1 AND d.done_at IS NOT NULL AND d.lease_owner IS NULL)", (job,))
    check_eq(mixed, 0, "deliveries whose recorded reply is not their last attempt's")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
