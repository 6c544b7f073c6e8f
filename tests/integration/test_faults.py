"""Network faults: a relay that, for a random part of the recipients, answers
4xx, drops the connection after the message, stalls longer than the timeouts,
or sends garbage instead of a reply, on the first attempt. Every delivery
still ends correctly (sent after a retry, or failed on a 5xx), and a healthy
relay beside it delivers everything meanwhile."""

import collections
import random

import hatotest as H
from hatotest import check, check_eq

FAULTS = {
    "tempfail": {"rcpt": ["451 4.3.0 Temporary local problem", "250 2.1.5 Ok"]},
    "drop": {"dot": ["close", "250 2.0.0 Ok"]},
    "stall": {"dot": ["hang", "250 2.0.0 Ok"]},
    # Two lines whose codes differ, the second outside 1xx-5xx: not a reply.
    "garbage": {"rcpt": ["250-this looks fine\n999 but is not a reply", "250 2.1.5 Ok"]},
    "refused": {"rcpt": ["550 5.1.1 <%s>: User unknown"]},
}


@H.timeout(120)
def test_faulty_relay_beside_a_healthy_one():
    rng = random.Random(7)
    plan = {}
    for i in range(120):
        addr = "f%03d@faulty.example" % i
        roll = rng.random()
        plan[addr] = ("tempfail" if roll < 0.30 else "drop" if roll < 0.35 else "stall" if roll < 0.40
                      else "garbage" if roll < 0.45 else "refused" if roll < 0.50 else None)
    rules = []
    for addr, fault in plan.items():
        if fault:
            rule = {"match": addr}
            for stage, replies in FAULTS[fault].items():
                rule[stage] = [r.replace("%s", addr) for r in replies]
            rules.append(rule)
    env = H.Env("faults")
    faulty = env.relay_sink("faulty", script={"rules": rules})
    healthy = env.relay_sink("healthy")
    env.route("faulty.example", "relay:faulty")
    env.route("*", "relay:healthy")
    env.config.section("gateway").update({"command_timeout": "2s", "data_timeout": "2s"})
    env.config.section("retry").update({"intervals": "1s", "max_attempts": 5})
    env.start()
    good = ["h%03d@example.com" % i for i in range(100)]
    reply = env.submit(env.submission(list(plan) + good, "障害試験", "本文\n")).one()
    check(reply.code == 250, "submission refused: %r", reply)
    job = H.job_id_of(reply)
    H.wait_until(lambda: len(healthy.messages()) >= len(good), 30, what="the healthy relay's mail")
    env.wait_job_done(job, 90)

    rows = {r["address"]: r for r in env.deliveries(job)}
    at_faulty = collections.Counter(H.addr_of(r) for m in faulty.messages() for r in m["rcpts"])
    tally = collections.Counter()
    for addr, fault in plan.items():
        r = rows[addr]
        tally[fault] += 1
        if fault == "refused":
            check_eq((r["state"], r["last_code"], int(r["attempts"])), ("failed", 550, 1), "%s after a 550" % addr)
            check_eq(at_faulty[addr], 0, "copies of refused %s" % addr)
        else:
            check_eq(r["state"], "sent", "%s (%s) state" % (addr, fault))
            check(at_faulty[addr] >= 1, "%s (%s) never reached the sink", addr, fault)
            if fault:
                check(int(r["attempts"]) >= 2, "%s (%s) was not retried", addr, fault)
    H.log("faults: %r" % dict(tally))
    check(all(tally[f] for f in FAULTS), "the seed left a fault untried: %r", dict(tally))
    check_eq(sorted(H.addr_of(r) for m in healthy.messages() for r in m["rcpts"]), sorted(good),
             "healthy recipients, each once")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
