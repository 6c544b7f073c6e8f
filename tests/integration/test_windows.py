"""Send windows: a destination outside its window sends nothing and starts
when the window opens, while another destination goes on."""

import datetime
import time

import hatotest as H
from hatotest import check, check_eq

TZ = datetime.timezone(datetime.timedelta(hours=9))  # [intake] timezone = Asia/Tokyo


def hhmm(t):
    return t.strftime("%H:%M")


@H.timeout(150)
def test_window_closed_until_the_next_minute():
    now = datetime.datetime.now(TZ)
    if now.second >= 50:  # leave the submission time to land inside the minute
        time.sleep(61 - now.second)
        now = datetime.datetime.now(TZ)
    minute = now.replace(second=0, microsecond=0)
    opens = minute + datetime.timedelta(minutes=1)
    env = H.Env("window")
    env.relay_sink("carrier")
    env.relay_sink("default")
    # Open all day except the current minute (the window wraps midnight).
    env.config.section("relay carrier").update({"send_window": "%s-%s" % (hhmm(opens), hhmm(minute))})
    env.route("ezweb.ne.jp", "relay:carrier")
    env.route("*", "relay:default")
    env.start()
    rcpts = ["a%d@ezweb.ne.jp" % i for i in range(5)] + ["b%d@example.com" % i for i in range(5)]
    reply = env.submit(env.submission(rcpts, "窓のテスト", "本文\n")).one()
    check(reply.code == 250, "submission refused: %r", reply)
    carrier, default = env.sinks["carrier"], env.sinks["default"]
    H.wait_until(lambda: len(default.messages()) >= 5, 20, what="the other destination's mail")
    check_eq(len(carrier.messages()), 0, "messages sent outside the window")
    H.wait_until(lambda: len(carrier.messages()) >= 5, 75, what="the windowed mail after the window opened")
    first = min(m["t"] for m in carrier.messages())
    check(first >= opens.timestamp() - 0.5, "sent %.1fs before the window opened", opens.timestamp() - first)
    H.log("window opened at %s; first message %.2fs later" % (opens, first - opens.timestamp()))
    check(env.gateway.log_text().count("closed by its send window") >= 1, "the closed window was not logged")
    env.stop_clean()


@H.timeout(90)
def test_job_rate_and_send_at():
    env = H.Env("jobrate")
    sink = env.relay_sink("default")
    env.route("*", "relay:default")
    env.start()
    # A big DM spread at 120 per minute does not hold up an urgent one.
    big = ["big%02d@example.com" % i for i in range(10)]
    t_submit = time.time()
    r = env.submit(env.submission(big, "ゆっくり", "本文\n", extra_control=["Rate: 120/min"])).one()
    check(r.code == 250, "rate submission refused: %r", r)
    urgent = ["urgent@example.com"]
    r = env.submit(env.submission(urgent, "至急", "本文\n")).one()
    check(r.code == 250, "urgent submission refused: %r", r)
    # Send-At a few seconds ahead: nothing before, everything after.
    later = datetime.datetime.now(TZ) + datetime.timedelta(seconds=6)
    r = env.submit(env.submission(["later@example.com"], "予約", "本文\n",
                                  extra_control=["Send-At: %s" % later.isoformat(timespec="seconds")])).one()
    check(r.code == 250, "Send-At submission refused: %r", r)
    H.wait_until(lambda: len(sink.messages()) >= 12, 30, what="all messages")
    at = {H.addr_of(m["rcpts"][0]): m["t"] for m in sink.messages()}
    times = sorted(at[a] for a in big)
    # The i-th recipient is due 0.5 s after the (i-1)-th, counted from the
    # submission, and is claimed within a poll after it falls due: none may
    # leave before its time.
    early = [t_submit + i * 0.5 - t for i, t in enumerate(times)]
    H.log("rate: span %.2fs for 10 recipients, most early %.3fs" % (times[-1] - times[0], max(early)))
    check(max(early) <= 0.05, "a recipient of the Rate: 120/min job left %.2fs before its time", max(early))
    check(times[-1] - times[0] <= 4.5 + 1.0, "the Rate job took %.1fs, far longer than 4.5s", times[-1] - times[0])
    check(at["urgent@example.com"] < times[-1] - 2, "the urgent DM waited behind the spread one")
    check(at["later@example.com"] >= later.replace(microsecond=0).timestamp() - 0.5,
          "the Send-At DM went %.1fs early", later.timestamp() - at["later@example.com"])
    bad = env.submit(env.submission(["x@example.com"], "悪い", "本文\n", extra_control=["Rate: fast"])).one()
    check(bad.code == 550 and "Rate:" in bad.text, "a bad Rate got %r", bad)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
