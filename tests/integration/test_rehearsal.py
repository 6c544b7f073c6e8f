"""Rehearsal (Dry-Run: yes): every message is built as for the real run, but
only the submitter's rehearsal addresses get mail: one copy per distinct
route among the accepted recipients, to each rehearsal address, written as
that route's recipients would get it (the ISO-2022-JP route's copy really is
ISO-2022-JP) and saying which route it renders. The real recipients are kept
as the report of what the real run would do and are never sent. Without
rehearsal addresses, a Dry-Run is refused with the reason."""

import re
import time

import hatotest as H
from hatotest import check, check_eq

SUBJECT = "リハーサルのお知らせ"
BODY = "本番と同じ本文です。\n"
REHEARSAL = ["check1@rehearse.example", "check2@rehearse.example"]
RCPTS = ["taro@docomo.ne.jp", "hanako@docomo.ne.jp", "jiro@i.softbank.jp", "user@example.com"]
ROUTES = {"relay:docomo", "relay:softbank", "relay:default"}


def rehearsal_env(name, gateway=True):
    env = H.Env(name)
    env.relay_sink("docomo")
    env.relay_sink("softbank")
    env.relay_sink("default")
    env.relay_sink("rehearse")
    env.config.section("relay docomo")["charset"] = "iso-2022-jp"
    env.route("docomo.ne.jp", "relay:docomo")
    env.route("i.softbank.jp", "relay:softbank")
    env.route("rehearse.example", "relay:rehearse")
    env.route("*", "relay:default")
    env.config.section("submitter marketing")["rehearsal"] = REHEARSAL
    env.config.section("intake")["receipts"] = False
    # A second submitter without rehearsal addresses.
    env.plain_token = "plain-" + env.token
    env.config.section("submitter plain").update({"address": ["plain@example.co.jp"],
                                                 "token_sha256": H.token_sha256(env.plain_token)})
    return env.start(gateway=gateway)


@H.timeout(90)
def test_only_rehearsal_addresses_get_mail():
    env = rehearsal_env("rehearsal")
    r = env.submit(env.submission(RCPTS, SUBJECT, BODY, extra_control=["Dry-Run: yes"])).one()
    check(r.code == 250, "dry run refused: %r", r)
    check("rehearsal: 6 copies (3 routes)" in r.text, "reply does not tell the rehearsal: %r", r)
    job_id = H.job_id_of(r)
    check_eq(int(env.job(job_id)["dry_run"]), 1, "jobs.dry_run")
    rehearse = env.sinks["rehearse"]
    check(rehearse.wait_for(6, 20), "%d of 6 rehearsal copies arrived", len(rehearse.messages()))
    env.wait_job_done(job_id, 20)
    time.sleep(1)
    for name in ("docomo", "softbank", "default"):
        check_eq(len(env.sinks[name].messages()), 0, "messages at the %s sink in a rehearsal" % name)
    # The real recipients are kept, never sent.
    real = [d for d in env.deliveries(job_id) if d["render_dest"] is None]
    check_eq(sorted(d["address"] for d in real), sorted(RCPTS), "the recipients kept as the report")
    for d in real:
        check(d["state"] == "rehearsal" and d["next_attempt"] is None and int(d["attempts"]) == 0,
              "real recipient %s: %s %s %s", d["address"], d["state"], d["next_attempt"], d["attempts"])
    # One copy per route to each rehearsal address, rendered for that route.
    seen = set()
    for m in rehearse.messages():
        rcpt = H.addr_of(m["rcpts"][0])
        check(rcpt in REHEARSAL, "a rehearsal copy to %r", rcpt)
        msg = H.parse_message(m["data"])
        mark = msg["X-Hato-Rehearsal"] or ""
        route = mark.split(" ")[0]
        check(route in ROUTES, "X-Hato-Rehearsal %r names no route of the recipients", mark)
        check("job %d" % job_id in mark, "X-Hato-Rehearsal %r does not name the job", mark)
        seen.add((rcpt, route))
        ctype = msg.get_content_type(), (msg.get_content_charset() or "").lower()
        if route == "relay:docomo":
            check_eq(ctype[1], "iso-2022-jp", "charset of the docomo rendering")
            raw = m["data"].split(b"\r\n\r\n", 1)[1]
            check(all(b < 128 for b in raw) and b"\x1b$B" in raw, "the docomo rendering's body is not ISO-2022-JP")
            check(re.search(rb"(?im)^subject:\s*=\?iso-2022-jp\?", m["data"]), "the docomo Subject is not ISO-2022-JP")
        else:
            check_eq(ctype[1], "utf-8", "charset of the %s rendering" % route)
        check_eq(str(msg["Subject"]), SUBJECT, "Subject of the %s rendering" % route)
        check_eq(H.text_body(msg).rstrip("\n"), BODY.rstrip("\n"), "body of the %s rendering" % route)
    check_eq(sorted(seen), sorted((a, r) for a in REHEARSAL for r in ROUTES), "rehearsal copies (address, route)")
    env.stop_clean()


@H.timeout(60)
def test_dry_run_without_rehearsal_addresses():
    env = rehearsal_env("rehearsalnone", gateway=False)
    data = env.submission(RCPTS, SUBJECT, BODY, extra_control=["Dry-Run: yes"],
                          from_addr="plain@example.co.jp", token=env.plain_token)
    r = env.submit(data).one()
    check(r.code == 550 and "no rehearsal addresses" in r.text, "a dry run without rehearsal addresses got %r", r)
    check_eq(len(env.jobs()), 0, "jobs stored")
    check(re.search(r"submitter=plain .*status=refused .*no rehearsal addresses", env.intake.log_text()),
          "the refusal is not logged")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
