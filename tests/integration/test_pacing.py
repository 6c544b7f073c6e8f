"""Pacing: exact, shared across gateways, adaptive, fair, reloadable.

The sinks record the time of every MAIL FROM they read, so the pace is
measured where the carrier would measure it: at the receiving server.
"""

import signal
import time

import hatotest as H
from hatotest import check, check_eq


def window_max(times, interval):
    """The most sends in any closed window of length `interval`."""
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > interval:
            j += 1
        best = max(best, i - j + 1)
    return best


def achieved_rate(times):
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def steady_rate(times):
    """The rate in steady state: the middle 80% of the sends, without the
    start (first claims and reservations) and the tail (the last slots of
    each gateway)."""
    times = sorted(times)
    cut = len(times) // 10
    return achieved_rate(times[cut:len(times) - cut])


def rcpts_of(sink):
    return [H.addr_of(r) for m in sink.messages() for r in m["rcpts"]]


def submit(env, rcpts, subject="ペースのテスト"):
    reply = env.submit(env.submission(rcpts, subject, "本文です。\n")).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply)


def au_env(name, messages, interval, **pace):
    env = H.Env(name)
    env.relay_sink("au")
    env.relay_sink("default")
    env.pace("au", relay="au", messages=messages, interval=interval, connections=2,
             per_connection=1000, **pace)
    env.route("ezweb.ne.jp", "pace:au")
    env.route("au.com", "pace:au")
    env.route("*", "relay:default")
    env.config.section("gateway").update({"lease": "2m", "claim_batch": 500})
    return env


def check_exact(env, sink, addrs, messages, interval):
    got = rcpts_of(sink)
    check_eq(len(got), len(addrs), "messages at the au sink")
    check_eq(sorted(got), sorted(addrs), "each recipient exactly once")
    times = [t for t, _ in sink.mail_times()]
    worst = window_max(times, interval)
    rate = steady_rate(times)
    want = messages / interval
    gaps = sorted(b - a for a, b in zip(sorted(times), sorted(times)[1:]))
    H.log("pace: %d sends, worst window %d of %d allowed, steady rate %.3f/s of %.3f/s (%.1f%%); "
          "gaps min %.4f median %.4f max %.4f, %d over 1.5x median"
          % (len(times), worst, messages, rate, want, 100 * rate / want, gaps[0], gaps[len(gaps) // 2],
             gaps[-1], sum(1 for g in gaps if g > 1.5 * gaps[len(gaps) // 2])))
    check(worst <= messages, "a window of %.1fs held %d sends, over the limit of %d", interval, worst, messages)
    check(rate >= 0.98 * want, "achieved %.3f/s in steady state, under 98%% of %.3f/s", rate, want)
    H.log("whole run: %.3f/s" % achieved_rate(times))


@H.timeout(120)
def test_one_gateway_exact():
    env = au_env("pace1", 20, "2s")
    env.start()
    addrs = ["u%03d@ezweb.ne.jp" % i for i in range(150)] + ["v%03d@au.com" % i for i in range(150)]
    job = submit(env, addrs)
    env.wait_job_done(job, 60)
    check_exact(env, env.sinks["au"], addrs, 20, 2.0)
    out = env.ctl("queues").stdout
    check("pace:au" in out, "`hatoctl queues` does not list pace:au:\n%s", out)
    env.stop_clean()


@H.timeout(120)
def test_three_gateways_shared():
    env = au_env("pace3", 20, "2s")
    # Each gateway holds what it can send in a quarter lease: 75 of the 300.
    env.config.section("gateway")["lease"] = "30s"
    env.start(gateway=False)
    gateways = []
    for i in range(3):
        env.config.section("hato")["node"] = "gw%d" % i
        path = env.config.path.replace(".ini", "-gw%d.ini" % i)
        with open(path, "w") as f:
            f.write(env.config.text())
        g = H.Daemon(H.GATEWAY, path, env.dir, "hato-gateway-%d" % i).start()
        H.defer(g.stop)
        gateways.append(g)
    addrs = ["w%03d@ezweb.ne.jp" % i for i in range(300)]
    job = submit(env, addrs)
    env.wait_job_done(job, 60)
    check_exact(env, env.sinks["au"], addrs, 20, 2.0)
    senders = {}
    for r in env.db.query("SELECT gateway, COUNT(*) AS n FROM delivery_log GROUP BY gateway"):
        senders[r["gateway"]] = r["n"]
    H.log("deliveries per gateway: %r" % senders)
    check(len([g for g in senders if g.startswith("gw")]) >= 2,
          "the work was not shared between gateways: %r", senders)
    for g in gateways:
        g.stop_clean()
    env.stop_clean()


@H.timeout(120)
def test_421_suspends_and_recovers():
    env = au_env("pace421", 20, "1s", suspend="2s")
    env.start()
    sink = env.sinks["au"]
    sink.set_script({"rules": [{"match": "*", "mail":
                     ["250 2.1.0 Ok"] * 10 + ["421 4.7.0 Too many mails, slow down"] + ["250 2.1.0 Ok"]}]})
    addrs = ["s%03d@ezweb.ne.jp" % i for i in range(80)]
    job = submit(env, addrs)
    env.wait_job_done(job, 60)
    check_eq(sorted(set(rcpts_of(sink))), sorted(addrs), "every recipient delivered")
    check_eq(len(rcpts_of(sink)), len(addrs), "no recipient twice")
    log = env.gateway.log_text()
    check("pace=suspended" in log, "the 421 did not suspend the destination:\n%s", H.tail(env.gateway.log_path))
    times = sorted(t for t, _ in sink.mail_times())
    gaps = [b - a for a, b in zip(times, times[1:])]
    check(max(gaps) >= 1.9, "no pause of the 2s suspension in the sends (longest gap %.2fs)", max(gaps))
    # Halved, then back up step by step: the rate after the pause is lower
    # than before it, and the shared factor climbs back.
    factor = env.db.scalar("SELECT factor FROM pace_state WHERE dest = 'pace:au'")
    H.log("factor after the run: %.3f" % factor)
    check("recovering after successes" in log, "no additive increase was logged")
    check(window_max(times, 1.0) <= 20, "pace exceeded around the suspension")
    env.stop_clean()


@H.timeout(120)
def test_hanging_destination_does_not_slow_others():
    def run(with_hang):
        env = H.Env("fair%d" % with_hang)
        env.relay_sink("good")
        hang = env.relay_sink("hang", script={"rules": [], "greeting": "hang"})
        env.pace("carrier", relay="good", messages=40, interval="1s", connections=2, per_connection=1000)
        env.route("ezweb.ne.jp", "pace:carrier")
        env.route("hang.example", "relay:hang")
        env.route("*", "relay:hang")
        env.config.section("gateway").update({"greeting_timeout": "30s"})
        env.start()
        good = ["g%03d@ezweb.ne.jp" % i for i in range(120)]
        rcpts = good + (["h%03d@hang.example" % i for i in range(60)] if with_hang else [])
        submit(env, rcpts)
        sink = env.sinks["good"]
        H.wait_until(lambda: len(sink.messages()) >= len(good), 30, what="the healthy destination's mail")
        times = sorted(t for t, _ in sink.mail_times())
        rate = achieved_rate(times)
        check_eq(sorted(rcpts_of(sink)), sorted(good), "healthy recipients, each once")
        return rate, env, hang

    alone, env1, _ = run(False)
    env1.stop_clean()
    beside, env2, hang = run(True)
    H.log("healthy destination: %.2f/s alone, %.2f/s beside a hanging one" % (alone, beside))
    check(beside >= 0.9 * alone, "healthy throughput fell from %.2f/s to %.2f/s beside a hanging destination",
          alone, beside)
    H.log("hanging sink: %r" % (hang.stats(),))
    env2.gateway.stop()


@H.timeout(120)
def test_reload_keeps_old_routes_on_error_and_moves_queued_work():
    env = H.Env("reload")
    env.relay_sink("a")
    env.relay_sink("b")
    env.pace("slow", relay="a", messages=2, interval="1s", connections=1, per_connection=1000)
    env.route("ezweb.ne.jp", "pace:slow")
    env.route("*", "relay:b")
    env.start()
    addrs = ["r%02d@ezweb.ne.jp" % i for i in range(16)]
    job = submit(env, addrs)
    a, b = env.sinks["a"], env.sinks["b"]
    H.wait_until(lambda: len(a.messages()) >= 2, 10, what="the first paced messages")

    # A broken table: refused with file:line, the old routes go on.
    with open(env.config.routes_path, "a") as f:
        f.write("broken.example   relay:\n")
    env.gateway.proc.send_signal(signal.SIGHUP)
    env.gateway.wait_log(r"reload refused.*%s:\d+" % env.config.routes_path.split("/")[-1], 10)
    H.wait_until(lambda: len(a.messages()) >= 4, 10, what="paced messages after the refused reload")
    check_eq(len(b.messages()), 0, "messages at b before the good reload")

    # A good table moving ezweb.ne.jp to relay b: the waiting mail follows.
    env.config.routes = [("ezweb.ne.jp", "relay:b"), ("*", "relay:b")]
    env.write_config()
    env.gateway.proc.send_signal(signal.SIGHUP)
    env.wait_job_done(job, 30)
    at_a, at_b = rcpts_of(a), rcpts_of(b)
    H.log("after reload: %d at a, %d at b" % (len(at_a), len(at_b)))
    check(len(at_b) > 0, "nothing moved to the new destination")
    check_eq(sorted(at_a + at_b), sorted(addrs), "every recipient exactly once across both relays")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
