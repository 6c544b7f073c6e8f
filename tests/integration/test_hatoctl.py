"""hatoctl against a real database, with one finished job and one that a
slow pace keeps running: text and --json output of every listing, exit
codes (not found 1, usage 2, database down 69, bad config 78), the progress
bars on a terminal, log --follow showing a new attempt within a second,
trace by address and by Message-ID, and routes reload through the pid
file."""

import email
import email.policy
import json
import os
import pty
import select
import signal
import subprocess
import time
from datetime import datetime, timezone

import hatotest as H
from hatotest import check, check_eq

FAST = ["ichiro@example.com", "jiro@example.com", "saburo@example.com"]
SLOW = ["s%02d@ezweb.ne.jp" % i for i in range(12)]


def ctl_env(name):
    env = H.Env(name)
    env.relay_sink("default")
    env.relay_sink("au")
    # One message a second: the second job stays running for the test.
    env.pace("au", relay="au", messages=1, interval="1s", connections=1)
    env.route("ezweb.ne.jp", "pace:au")
    env.route("*", "relay:default")
    # The gateway writes its pid file after dropping root: a directory of
    # the service user's, as systemd's RuntimeDirectory= gives it.
    run = os.path.join(env.dir, "run")
    os.mkdir(run, 0o755)
    if H.SERVICE_USER and os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam(H.SERVICE_USER)
        os.chown(run, pw.pw_uid, pw.pw_gid)
    env.pid_file = os.path.join(run, "gateway.pid")
    env.config.section("gateway")["http_listen"] = "127.0.0.1:%d" % H.free_port()
    env.config.section("gateway")["pid_file"] = env.pid_file
    env.start()
    return env


def submit(env, rcpts, subject):
    reply = env.submit(env.submission(rcpts, subject, "本文\n")).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply)


def js(env, *args, rc=0):
    r = env.ctl("--json", *args, check_rc=False)
    check_eq(r.returncode, rc, "exit code of hatoctl --json %s (stderr %r)" % (" ".join(map(str, args)), r.stderr))
    if rc != 0 and not r.stdout:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        raise H.TestFailure("hatoctl --json %s: not JSON (%s):\n%s" % (" ".join(map(str, args)), e, r.stdout))


def two_jobs(env):
    done = submit(env, FAST, "終わった配信 \"quoted\" \\ back")
    env.wait_job_done(done)
    running = submit(env, SLOW, "走っている配信")
    H.wait_until(lambda: env.db.scalar("SELECT COUNT(*) FROM delivery_log WHERE job_id = %s AND outcome = 'sent'",
                                       (running,)) >= 1, 10, what="the first send of the slow job")
    return done, running


@H.timeout(120)
def test_listings_and_exit_codes():
    env = ctl_env("ctl-list")
    done, running = two_jobs(env)

    # jobs: text (not a terminal: plain lines) and JSON
    text = env.ctl("jobs").stdout
    check("RATE/S" in text and "SUBJECT" in text, "jobs header: %r", text)
    check(str(done) in text and "終わった配信" in text, "finished job in jobs: %r", text)
    jobs = {j["id"]: j for j in js(env, "jobs")}
    check_eq(jobs[done]["state"], "done", "state of the finished job")
    check_eq(jobs[done]["sent"], 3, "sent of the finished job")
    check_eq(jobs[done]["subject"], "終わった配信 \"quoted\" \\ back", "subject through JSON escaping")
    check(jobs[running]["state"] != "done", "the slow job is still running: %r", jobs[running])
    check(jobs[running]["queued"] + jobs[running]["deferred"] > 0, "slow job has waiting deliveries: %r",
          jobs[running])
    check(jobs[running]["rate_per_second"] > 0, "slow job has a rate: %r", jobs[running])
    check(jobs[running]["seconds_left"] is not None and jobs[running]["seconds_left"] > 0,
          "slow job has a time left: %r", jobs[running])

    # on a terminal: a progress bar per job
    out = on_terminal([H.HATOCTL, "--config", env.config.path, "jobs"])
    check("[" in out and "#" in out and "left" in out and "/s" in out, "progress bars on a terminal: %r", out)

    # job show
    show = js(env, "job", "show", done)
    check_eq(sorted(d["address"] for d in show["deliveries"]), sorted(FAST), "deliveries of job show --json")
    check(all(d["state"] == "sent" and d["code"] == 250 for d in show["deliveries"]), "sent: %r", show)
    check("ichiro@example.com" in env.ctl("job", "show", done).stdout, "job show text")
    r = env.ctl("job", "show", 999999, check_rc=False)
    check_eq(r.returncode, 1, "exit code of job show for no such job")
    check("no job 999999" in r.stderr, "job show message: %r", r.stderr)
    js(env, "job", "show", 999999, rc=1)

    # queues
    queues = {q["destination"]: q for q in js(env, "queues")}
    check("pace:au" in queues, "pace:au in queues: %r", queues)
    check(queues["pace:au"]["queued"] + queues["pace:au"]["leased"] > 0, "au queue depth: %r", queues["pace:au"])
    check_eq(queues["pace:au"]["pace"], "1/1000ms", "au pace")
    check("pace:au" in env.ctl("queues").stdout, "queues text")

    # routes test / check
    rt = js(env, "routes", "test", "someone@ezweb.ne.jp")
    check_eq(rt["key"], "pace:au", "routes test --json key")
    check(rt["matched"] is True, "routes test matched")
    check_eq(js(env, "routes", "check")["ok"], True, "routes check --json")

    # suppress list and report cleaning
    env.ctl("suppress", "add", "jiro@example.com")
    sup = js(env, "suppress", "list")
    check_eq([s["address"] for s in sup], ["jiro@example.com"], "suppress list --json")
    check_eq(sup[0]["reason"], "manual", "suppression reason")
    check_eq(js(env, "report", "cleaning"), [], "report cleaning --json without failures")

    # log: one line per attempt, with address, destination, host, reply and queue time
    log = js(env, "log", "--job", done)
    check_eq(sorted(x["address"] for x in log), sorted(FAST), "log --json addresses")
    for x in log:
        check(x["outcome"] == "sent" and x["code"] == 250 and x["destination"] == "relay:default", "log row %r", x)
        check(x["host"].startswith("127.0.0.1"), "relay host in %r", x)
        check(0 <= x["queue_seconds"] < 30, "queue time in %r", x)
    text = env.ctl("log", "--address", "ichiro@example.com").stdout.splitlines()
    check_eq(len(text), 2, "log --address lines (header + one attempt): %r" % text)
    check("relay:default" in text[1] and " 250 " in text[1], "log line %r", text[1])

    # trace by address, by the gateway's Message-ID, by the submission's
    tr = js(env, "trace", "ichiro@example.com")
    check_eq(tr["kind"], "address", "trace kind")
    check_eq([d["job"] for d in tr["deliveries"]], [done], "trace deliveries")
    check_eq([a["outcome"] for a in tr["attempts"]], ["sent"], "trace attempts")
    tr = js(env, "trace", "jiro@example.com")
    check_eq([s["reason"] for s in tr["suppressions"]], ["manual"], "trace shows the suppression")
    msg = next(m for m in env.sinks["default"].messages() if H.addr_of(m["rcpts"][0]) == "saburo@example.com")
    mid = email.message_from_bytes(msg["data"], policy=email.policy.compat32)["Message-ID"].strip()
    tr = js(env, "trace", mid)
    check_eq(tr["kind"], "gateway-message-id", "trace kind of %s" % mid)
    check_eq([d["address"] for d in tr["deliveries"]], ["saburo@example.com"], "trace by Message-ID")
    src = env.db.scalar("SELECT source_msgid FROM jobs WHERE id = %s", (done,))
    tr = js(env, "trace", src)
    check_eq(tr["jobs"], [done], "trace by the submission's Message-ID")
    check_eq(len(tr["deliveries"]), 3, "deliveries of the traced submission")
    check("saburo@example.com" in env.ctl("trace", mid).stdout, "trace text")
    js(env, "trace", "nobody@nowhere.example", rc=1)

    # usage errors: 2
    for args in (["jobs", "extra"], ["frobnicate"], ["job", "show", "x"], ["log", "--job"],
                 ["log", "--limit", "-3"], ["trace"], ["help", "nosuch"]):
        r = env.ctl(*args, check_rc=False)
        check_eq(r.returncode, 2, "exit code of hatoctl %s" % " ".join(args))
    # help
    h = env.ctl("help").stdout
    for cmd in ("jobs", "log", "trace", "doctor", "routes reload", "69", "78"):
        check(cmd in h, "help mentions %r", cmd)
    check("--follow" in env.ctl("help", "log").stdout, "help log")

    # routes reload: SIGHUP to the pid in [gateway] pid_file
    check_eq(open(env.pid_file).read().strip(), str(env.gateway.pid), "pid file")
    r = env.ctl("routes", "reload")
    check("SIGHUP sent" in r.stdout, "routes reload output %r", r.stdout)
    env.gateway.wait_log("configuration reloaded", 5)

    # a bad configuration: 78
    bad = os.path.join(env.dir, "bad.ini")
    with open(bad, "w") as f:
        f.write(open(env.config.path).read().replace("[log]\n", "[log]\nfacility = nosuch\n", 1))
    r = H.run([H.HATOCTL, "--config", bad, "jobs"], check_rc=False)
    check_eq(r.returncode, 78, "exit code with a bad configuration")
    check("facility" in r.stderr and "bad.ini:" in r.stderr, "file:line error: %r", r.stderr)

    env.stop_clean()
    check(not os.path.exists(env.pid_file), "the gateway removes its pid file at exit")
    # the database down: 69
    env.db.stop()
    for args in (["jobs"], ["--json", "queues"], ["log"], ["trace", "a@b.example"]):
        r = env.ctl(*args, check_rc=False)
        check_eq(r.returncode, 69, "exit code of hatoctl %s with the database down" % " ".join(args))


def on_terminal(args):
    """Run args with stdout on a pseudo-terminal; its output."""
    master, slave = pty.openpty()
    p = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    deadline = time.time() + 20
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(5)
    os.close(master)
    check_eq(p.returncode, 0, "exit code on a terminal")
    return out.decode("utf-8", "replace")


def read_line(p, deadline):
    buf = b""
    while time.time() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            c = os.read(p.stdout.fileno(), 1)
            if not c:
                return None
            if c == b"\n":
                return buf.decode()
            buf += c
    return None


@H.timeout(120)
def test_log_follow():
    env = ctl_env("ctl-follow")
    done, running = two_jobs(env)
    p = subprocess.Popen([H.HATOCTL, "--config", env.config.path, "--json", "log", "--follow", "--limit", "0",
                          "--job", str(running)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    H.defer(lambda: p.poll() is None and p.kill())
    seen = []
    deadline = time.time() + 20
    while len(seen) < 3 and time.time() < deadline:
        line = read_line(p, deadline)
        check(line is not None, "log --follow ended or said nothing: %r", p.stderr.read() if p.poll() is not None else "")
        got = time.time()
        row = json.loads(line)
        at = datetime.strptime(row["at"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
        check_eq(row["job"], running, "job of a followed row")
        check(got - at < 1.0, "attempt at %s shown %.3f s later" % (row["at"], got - at))
        seen.append(row)
    check(len(seen) >= 3, "log --follow showed %d rows", len(seen))
    ids = [r["id"] for r in seen]
    check_eq(ids, sorted(set(ids)), "followed rows in id order, once each")
    first = env.db.scalar("SELECT MIN(id) FROM delivery_log WHERE job_id = %s", (running,))
    check(ids[0] > first, "--limit 0 shows no past rows (%d, first %d)" % (ids[0], first))
    # SIGINT ends it cleanly
    p.send_signal(signal.SIGINT)
    check_eq(p.wait(5), 0, "exit code of log --follow after SIGINT")

    # so does SIGTERM, while it waits for the next row
    p = subprocess.Popen([H.HATOCTL, "--config", env.config.path, "log", "--follow", "--limit", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(read_line(p, time.time() + 5) is not None, "log --follow header")
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    check_eq(p.wait(5), 0, "exit code of log --follow after SIGTERM")

    # a reader that goes away (EPIPE) ends it cleanly too
    p = subprocess.Popen([H.HATOCTL, "--config", env.config.path, "log", "--follow", "--limit", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(read_line(p, time.time() + 5) is not None, "log --follow header")
    p.stdout.close()
    check_eq(p.wait(10), 0, "exit code of log --follow after its reader left")
    check(p.stderr.read() == b"", "nothing on stderr after EPIPE")


if __name__ == "__main__":
    H.main(globals())
