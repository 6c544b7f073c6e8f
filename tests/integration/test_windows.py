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


if __name__ == "__main__":
    H.main(globals())
