"""Logging: nothing secret reaches a log line or an operator's screen.

A submission with its token goes through relays that want AUTH (PLAIN and
LOGIN, one of them with a wrong password), with every daemon at level
debug; then the daemons' logs, the send log in the database and what
hatoctl log / trace / job show print are searched for the token, the AUTH
passwords (as written and as they go on the wire, base64), the MAC key and
the database password. Delivery lines carry job= and dlv= ids."""

import base64
import os
import re

import hatotest as H
from hatotest import check, check_eq

USER = "hato-gw"
PASSWORD = "s3cret-Relay-Passw0rd"
WRONG = "wr0ng-Relay-Passw0rd"


def secret_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def auth_relay(env, name, password, mechanisms):
    from smtpsink import Sink
    sink = Sink(port=0, host="127.0.0.1", name=name,
                script={"users": {USER: PASSWORD}, "auth_without_tls": True, "auth_mechanisms": mechanisms})
    sink.start()
    H.defer(sink.stop)
    env.sinks[name] = sink
    pw = secret_file(os.path.join(env.dir, "%s.secret" % name), password)
    env.config.section("relay %s" % name).update({
        "host": "127.0.0.1", "port": sink.port, "tls": "none", "auth_user": USER,
        "auth_password_file": pw, "auth_without_tls": True})
    return sink


def wire_forms(user, password):
    """What the credentials look like in an SMTP session."""
    plain = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]


@H.timeout(90)
def test_no_secret_in_logs():
    env = H.Env("logsecrets")
    env.config.section("log")["level"] = "debug"
    auth_relay(env, "plain", PASSWORD, ["PLAIN"])
    auth_relay(env, "login", PASSWORD, ["LOGIN"])
    auth_relay(env, "wrong", WRONG, ["PLAIN"])
    env.route("plain.example", "relay:plain")
    env.route("login.example", "relay:login")
    env.route("wrong.example", "relay:wrong")
    env.start()

    reply = env.submit(env.submission(["a@plain.example", "b@login.example", "c@wrong.example"],
                                      "秘密のテスト", "本文\n")).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    job = H.job_id_of(reply)
    env.wait_job_done(job, 30)
    by = {d["address"]: d for d in env.deliveries(job)}
    check_eq(by["a@plain.example"]["state"], "sent", "AUTH PLAIN delivery")
    check_eq(by["b@login.example"]["state"], "sent", "AUTH LOGIN delivery")
    check_eq(by["c@wrong.example"]["state"], "failed", "delivery with a wrong AUTH password")
    check_eq(env.sinks["plain"].messages()[0]["auth_user"], USER, "AUTH took place")
    # A bad token: refused, and its text is not logged either.
    bad_token = "not-the-token-" + "x" * 20
    env.submit(env.submission(["d@plain.example"], "bad", "x\n", token=bad_token))

    outputs = {
        "hatoctl log": env.ctl("log", "--limit", "1000").stdout,
        "hatoctl log --json": env.ctl("--json", "log").stdout,
        "hatoctl trace": env.ctl("trace", "c@wrong.example").stdout,
        "hatoctl job show": env.ctl("--json", "job", "show", job).stdout,
    }
    env.stop_clean()
    outputs["hato-intake log"] = env.intake.log_text()
    outputs["hato-gateway log"] = env.gateway.log_text()
    rows = env.db.query("SELECT text FROM delivery_log")
    outputs["delivery_log"] = "\n".join(r["text"] or "" for r in rows)
    outputs["deliveries"] = "\n".join("%s" % (d["last_text"],) for d in env.deliveries(job))

    with open(env.secret_file) as f:
        mac_key = f.read().strip()
    with open(env.db.password_file) as f:
        db_password = f.read().strip()
    secrets = {"submission token": env.token, "bad token": bad_token, "MAC key": mac_key,
               "database password": db_password}
    for i, form in enumerate(wire_forms(USER, PASSWORD)):
        secrets["relay password form %d" % i] = form
    for i, form in enumerate(wire_forms(USER, WRONG)):
        secrets["wrong password form %d" % i] = form
    for where, text in outputs.items():
        for what, s in secrets.items():
            check(s not in text, "%s appears in the %s" % (what, where))

    # Delivery events carry their ids, as key=value.
    lines = [l for l in outputs["hato-gateway log"].splitlines() if ": delivery " in l]
    check(len(lines) >= 3, "delivery lines in the gateway log: %r", lines)
    for l in lines:
        check(re.search(r"\bjob=%d\b" % job, l) and re.search(r"\bdlv=\d+\b", l), "ids in %r", l)
        check(re.search(r"\bstatus=(sent|failed|deferred)\b", l), "status= in %r", l)
    check(re.search(r"intake job=%d .*status=queued" % job, outputs["hato-intake log"]),
          "intake line of the job with its id")
    check(": debug: " in outputs["hato-gateway log"], "level debug logs debug lines")


def test_log_section_checked():
    """[log] level and facility: a bad value is refused with file:line."""
    env = H.Env("logconf", db=False)
    env.config.section("log").update({"syslog": True, "facility": "local3", "level": "notice"})
    env.write_config()
    r = H.run([H.GATEWAY, "--check-config", "--config", env.config.path], check_rc=False)
    check_eq(r.returncode, 0, "local3 and notice accepted (%s)" % r.stderr)
    for key, value in (("facility", "local9"), ("level", "loud")):
        env.config.section("log").update({"facility": "local3", "level": "notice", key: value})
        env.write_config()
        for binary in (H.GATEWAY, H.INTAKE):
            r = H.run([binary, "--check-config", "--config", env.config.path], check_rc=False)
            check_eq(r.returncode, 78, "exit code of %s with [log] %s = %s" % (os.path.basename(binary), key, value))
            check(re.search(re.escape(env.config.path) + r":\d+: .*" + value, r.stderr),
                  "file:line error naming %r: %r", value, r.stderr)


if __name__ == "__main__":
    H.main(globals())
