"""Postfix in front of intake, as a site runs it.

Each test writes the main.cf, master.cf and transport table of a private
Postfix instance (its own config_directory and queue_directory in the test's
directory, smtpd on 127.0.0.1 only, no local delivery, every other domain
sent to a sink on loopback so that a bounce would be seen), starts it with
`postfix -c DIR start`, sends a submission to it by SMTP and follows it to
intake:

- LMTP: the transport table sends the submit domain to lmtp:inet:HOST:PORT
  or lmtp:unix:PATH, where hato-intake listens;
- pipe: the transport table sends the submit address to a master.cf
  service that runs `hato-intake --pipe -f ${sender}` as an unprivileged
  user, and Postfix reads its exit code (sysexits): 0 stored or discarded,
  75 deferred while MariaDB is away, 65/77 bounced. The command is given
  no recipient, so only the submit address is routed to it.

Also `hato-intake --pipe` without Postfix: the exit code and the reply line
of each outcome.

The Postfix tests need root (Postfix's master does); without it they say
so and pass."""

import json
import os
import pwd
import re
import signal
import smtplib
import subprocess
import time

import hatotest as H
from hatotest import check, check_eq
from smtpsink import Sink

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
SETPRIV = H.SETPRIV

# The user Postfix's pipe runs hato-intake as; it must not be root or
# mail_owner. The test hands it the files the configuration names.
PIPE_USER = "nobody"

DOMAIN = H.SUBMIT_ADDRESS.rsplit("@", 1)[1]
RCPTS = ["taro@docomo.ne.jp", "taro..@docomo.ne.jp", "hanako@ezweb.ne.jp", "jiro@i.softbank.jp"]
SUBJECT = "Postfix経由の配信依頼"
BODY = "MTAから届いたDMです。\n二行目。\n"

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n      -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

PIPE_SERVICE = """\
hato      unix  -       n       n       -       -       pipe
  flags=Rq user={user} argv={intake} --config {config} --pipe -f ${{sender}}
"""

MAIN_CF = """\
# A private instance: loopback only, nothing delivered on this host.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.hatotest
mydomain = hatotest
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery here
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains = {domain}
transport_maps = texthash:{conf}/transport
# Everything else (a bounce to a submitter, say) goes to a sink.
default_transport = smtp:[127.0.0.1]:{elsewhere}
relayhost =
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
biff = no
smtputf8_enable = no
notify_classes =
delay_warning_time = 0
# Sanitizer settings reach the pipe command when the tests run under them.
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME {san}
export_environment = TZ MAIL_CONFIG LANG {san}
"""

SANITIZER_VARS = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children_of(pid):
    """PIDs whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(name))
    return out


def postfix_usable():
    """None when Postfix can be run here, else why not."""
    if os.geteuid() != 0:
        return "Postfix's master needs root"
    if not os.access(POSTFIX, os.X_OK):
        return "%s is not installed" % POSTFIX
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam(PIPE_USER)
    except KeyError as e:
        return "no such user: %s" % e
    return None


def skip_without_postfix():
    why = postfix_usable()
    if why:
        print("(skipped: %s)" % why, end=" ", flush=True)
        return True
    return False


class Postfix:
    """A private Postfix instance under DIR/postfix: main.cf, master.cf and
    a texthash transport table written here, `postfix -c DIR start`, and
    `postfix -c DIR stop` (then the master and its children by PID if they
    outlive it) when the test ends."""

    def __init__(self, env, transport, services=""):
        self.env = env
        self.dir = os.path.join(env.dir, "postfix")
        self.conf = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = H.free_port()
        self.transport = transport
        self.services = services
        self.master_pid = None
        # Where mail for any other domain goes: a bounce would land here.
        self.elsewhere = Sink(port=0, host="127.0.0.1", name="elsewhere").start()
        H.defer(self.elsewhere.stop)
        H.defer(self.stop)
        H.on_failure(self.diagnostics)

    def postfix(self, *args, timeout=60, check_rc=True):
        return H.run([POSTFIX, "-c", self.conf] + list(args), timeout=timeout, check_rc=check_rc)

    def write(self):
        for d in (self.dir, self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        san = " ".join(v for v in SANITIZER_VARS if os.environ.get(v))
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(queue=self.queue, data=self.data, conf=self.conf, dir=self.dir,
                                   domain=DOMAIN, elsewhere=self.elsewhere.port, san=san))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port) + self.services)
        with open(os.path.join(self.conf, "transport"), "w") as f:
            f.write("".join("%s\n" % line for line in self.transport))

    def start(self):
        self.write()
        r = self.postfix("check", check_rc=False)
        check(r.returncode == 0, "postfix check failed:\n%s%s", r.stdout, r.stderr)
        r = self.postfix("start", check_rc=False)
        check(r.returncode == 0, "postfix start failed (%d):\n%s%s", r.returncode, r.stdout, r.stderr)
        pidfile = os.path.join(self.queue, "pid", "master.pid")

        def master():
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            return pid if pid_alive(pid) else None
        self.master_pid = H.wait_until(master, 15, what="Postfix master pid in %s" % pidfile)
        H._watch("pid", self.master_pid)
        H.wait_port("127.0.0.1", self.port, 15)
        return self

    def _pid_from_file(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def stop(self):
        # A master that started but was never seen (a failed start) is
        # still found through its pid file in our own queue directory.
        pid = self.master_pid or self._pid_from_file()
        if pid is None:
            return
        kids = children_of(pid)
        try:
            self.postfix("stop", timeout=30, check_rc=False)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in [pid] + kids if pid_alive(p)]
        for p in left:  # a last resort, by PID
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.master_pid = None
        H._watch("unpid", pid)
        check(pid not in left, "Postfix master %d outlived `postfix stop` and was killed" % pid)

    # traffic
    def send(self, data, mail_from, rcpts=(H.SUBMIT_ADDRESS,)):
        """One SMTP transaction; returns Postfix's queue id."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as c:
            c.ehlo("submitter.hatotest")
            code, text = c.mail(mail_from)
            check(code == 250, "MAIL FROM: %d %s", code, text)
            for r in rcpts:
                code, text = c.rcpt(r)
                check(code == 250, "RCPT TO:<%s>: %d %s", r, code, text)
            code, text = c.data(data)
            text = text.decode("utf-8", "replace")
            check(code == 250, "DATA: %d %s", code, text)
        m = re.search(r"queued as ([0-9A-Za-z]+)", text)
        check(m is not None, "no queue id in %r", text)
        return m.group(1)

    def queue_files(self):
        out = []
        for q in QUEUES:
            for root, _dirs, files in os.walk(os.path.join(self.queue, q)):
                out.extend((q, f) for f in files)
        return out

    def queue_listing(self):
        """`postqueue -j`: one dict per queued message."""
        r = H.run([POSTQUEUE, "-c", self.conf, "-j"], timeout=30)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def flush(self):
        H.run([POSTQUEUE, "-c", self.conf, "-f"], timeout=30)

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_of(self, queue_id):
        return [l for l in self.log_text().splitlines() if " %s: " % queue_id in l]

    def wait_status(self, queue_id, status, timeout=20):
        """The maillog line that says status=STATUS for queue_id."""
        rx = re.compile(r" %s: to=<[^>]*>.* status=%s " % (re.escape(queue_id), status))

        def seen():
            for line in self.log_text().splitlines():
                if rx.search(line):
                    return line
            return None
        return H.wait_until(seen, timeout, what="Postfix to log %s status=%s" % (queue_id, status))

    def wait_gone(self, queue_id, timeout=20):
        """Wait until Postfix has removed queue_id from its queue."""
        H.wait_until(lambda: any("%s: removed" % queue_id in l for l in self.log_of(queue_id)), timeout,
                     what="Postfix to remove %s" % queue_id)
        H.wait_until(lambda: not any(f == queue_id for _q, f in self.queue_files()), 5,
                     what="%s to leave the queue directory" % queue_id)

    def check_no_bounce(self):
        text = self.log_text()
        check("sender non-delivery notification" not in text,
              "Postfix made a bounce:\n%s", H.tail(self.maillog, 30))
        msgs = self.elsewhere.messages()
        check_eq([(m["mail_from"], m["rcpts"]) for m in msgs], [], "mail that left Postfix for anywhere but intake")

    def diagnostics(self):
        out = ["--- postfix maillog %s (tail)" % self.maillog, H.tail(self.maillog, 40),
               "--- postfix queue files: %r" % (self.queue_files(),)]
        for m in self.elsewhere.messages():
            out.append("--- sink elsewhere: from=%s rcpts=%s" % (m.get("mail_from"), m.get("rcpts")))
        return "\n".join(out)


def give_to_pipe_user(env):
    """The pipe runs as PIPE_USER: hand it the secret and the database
    password file (both stay mode 600). The configuration and the route
    table are world-readable already."""
    pw = pwd.getpwnam(PIPE_USER)
    for path in (env.secret_file, env.db.password_file):
        if os.geteuid() == 0:
            os.chown(path, pw.pw_uid, pw.pw_gid)
        check_eq(os.stat(path).st_mode & 0o777, 0o600, "mode of %s" % path)
    for path in (env.config.path, env.config.routes_path):
        check(os.stat(path).st_mode & 0o004, "%s is not readable by %s", path, PIPE_USER)


def pipe_service(env):
    return PIPE_SERVICE.format(user=PIPE_USER, intake=H.INTAKE, config=env.config.path)


def pipe_env(name):
    """MariaDB, a configuration readable by the pipe user, no daemon."""
    env = H.Env(name)
    env.route("*", "mx")
    env.write_config()
    env.init_db()
    give_to_pipe_user(env)
    return env


def check_job(env, job_id, rcpts=RCPTS, env_from=None):
    job = env.job(job_id)
    check(job is not None, "job %d is not in the database", job_id)
    check_eq(job["subject"], SUBJECT, "jobs.subject")
    check_eq(job["body"].replace("\r\n", "\n").rstrip("\n"), BODY.rstrip("\n"), "jobs.body")
    check_eq(job["from_addr"].lower(), env.submitter, "jobs.from_addr")
    check_eq(job["env_from"].lower(), (env_from or env.submitter).lower(), "jobs.env_from")
    got = sorted(d["address"] for d in env.deliveries(job_id))
    check_eq(got, sorted(rcpts), "delivery addresses of job %d" % job_id)
    return job


def jobs_count(env):
    return env.db.scalar("SELECT COUNT(*) FROM jobs")


# --------------------------------------------------------------------------
# hato-intake --pipe on its own.

def run_pipe(env, data, sender, as_user=True, stdin_fd=None):
    """hato-intake --pipe as the MTA would run it: as PIPE_USER (when root),
    the message on stdin. Returns CompletedProcess (text)."""
    args = [H.INTAKE, "--config", env.config.path, "--pipe", "-f", sender]
    if as_user and os.geteuid() == 0 and SETPRIV:
        pw = pwd.getpwnam(PIPE_USER)
        args = [SETPRIV, "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--clear-groups", "--"] + args
    H.log("run", " ".join(args))
    r = subprocess.run(args, input=data if stdin_fd is None else None,
                       stdin=stdin_fd if stdin_fd is not None else None,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    r.stdout = r.stdout.decode("utf-8", "replace")
    r.stderr = r.stderr.decode("utf-8", "replace")
    return r


def reply_line(r, stream, code):
    """The reply line (code, enhanced status, text) in r's stream."""
    text = getattr(r, stream)
    for line in text.splitlines():
        if re.match(r"^%s [245]\.\d+\.\d+ " % code, line):
            return line
    raise H.TestFailure("no '%s x.y.z ...' reply line on %s (exit %d)\nstdout:\n%s\nstderr:\n%s"
                        % (code, stream, r.returncode, r.stdout, r.stderr))


def test_pipe_exit_codes():
    env = pipe_env("pipe_direct")

    # Stored: 0, and the reply on stdout names the job.
    r = run_pipe(env, env.submission(RCPTS, SUBJECT, BODY), env.submitter)
    check_eq(r.returncode, 0, "exit code of a good submission (stderr: %s)" % r.stderr.strip())
    line = reply_line(r, "stdout", 250)
    m = re.search(r"\bjob (\d+)\b", line)
    check(m is not None, "no job number in %r", line)
    check_job(env, int(m.group(1)))
    check_eq(jobs_count(env), 1, "jobs after a good submission")

    # An unknown sender: 0 (nothing for the MTA to bounce), no job.
    stranger = "stranger@example.net"
    data = H.make_submission(stranger, env.token, RCPTS, SUBJECT, BODY, to=env.submit_address)
    r = run_pipe(env, data, stranger)
    check_eq(r.returncode, 0, "exit code for an unknown sender (stderr: %s)" % r.stderr.strip())
    reply_line(r, "stdout", 250)
    check("stranger@example.net" in r.stderr, "no log line names the unknown sender:\n%s", r.stderr)

    # No control block: 65 EX_DATAERR, 550 5.6.0 on stderr.
    data = env.submission(RCPTS, SUBJECT, "こんにちは。\n本文だけです。\n", control=False)
    r = run_pipe(env, data, env.submitter)
    check_eq(r.returncode, 65, "exit code without a control block")
    line = reply_line(r, "stderr", 550)
    check(" 5.6.0 " in line, "reply without a control block: %r", line)
    check_eq(r.stdout, "", "stdout of a refused submission")

    # A wrong token: 77 EX_NOPERM, 550 5.7.x on stderr.
    r = run_pipe(env, env.submission(RCPTS, SUBJECT, BODY, token="not-the-token"), env.submitter)
    check_eq(r.returncode, 77, "exit code for a wrong token")
    line = reply_line(r, "stderr", 550)
    check(" 5.7." in line, "reply for a wrong token: %r", line)

    # stdin that cannot be read (a directory): 74 EX_IOERR.
    fd = os.open(env.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r = run_pipe(env, None, env.submitter, stdin_fd=fd)
    finally:
        os.close(fd)
    check_eq(r.returncode, 74, "exit code when stdin cannot be read (stderr: %s)" % r.stderr.strip())

    check_eq(jobs_count(env), 1, "jobs after the refused submissions")

    # MariaDB away: 75 EX_TEMPFAIL, 451 4.x.x on stderr, nothing stored.
    data = env.submission(RCPTS, SUBJECT, BODY)
    env.db.stop()
    t0 = time.monotonic()
    r = run_pipe(env, data, env.submitter)
    took = time.monotonic() - t0
    check_eq(r.returncode, 75, "exit code while MariaDB is down (stderr: %s)" % r.stderr.strip())
    line = reply_line(r, "stderr", 451)
    check(" 4." in line[:6], "reply while MariaDB is down: %r", line)
    check(took < 15, "hato-intake --pipe took %.1fs to give up on MariaDB", took)
    env.db.start()
    check_eq(jobs_count(env), 1, "jobs after the try while MariaDB was down")

    # The MTA tries again: stored once.
    r = run_pipe(env, data, env.submitter)
    check_eq(r.returncode, 0, "exit code once MariaDB is back (stderr: %s)" % r.stderr.strip())
    m = re.search(r"\bjob (\d+)\b", reply_line(r, "stdout", 250))
    check_job(env, int(m.group(1)))
    check_eq(jobs_count(env), 2, "jobs after the retry")


# --------------------------------------------------------------------------
# Postfix delivering to intake by LMTP.

def lmtp_through_postfix(env, nexthop):
    """Submission and unknown sender through Postfix to the running intake."""
    pf = Postfix(env, ["%s lmtp:%s" % (DOMAIN, nexthop)]).start()

    qid = pf.send(env.submission(RCPTS, SUBJECT, BODY), env.submitter)
    line = pf.wait_status(qid, "sent")
    m = re.search(r"\(250 2\.0\.0 job (\d+) ", line)
    check(m is not None, "Postfix's log does not carry intake's reply: %r", line)
    check("dsn=2.0.0" in line, "dsn of %r", line)
    check_job(env, int(m.group(1)))
    check_eq(jobs_count(env), 1, "jobs after one submission through Postfix")
    pf.wait_gone(qid)

    # An unknown sender: accepted and dropped, no job, no bounce anywhere.
    stranger = "stranger@example.net"
    data = H.make_submission(stranger, env.token, RCPTS, SUBJECT, BODY, to=env.submit_address)
    qid = pf.send(data, stranger)
    line = pf.wait_status(qid, "sent")
    check("discarded" in line, "Postfix's log for the unknown sender: %r", line)
    pf.wait_gone(qid)
    env.intake.wait_log(r"stranger@example\.net", 5)
    check_eq(jobs_count(env), 1, "jobs after an unknown sender's mail")
    time.sleep(0.5)  # room for a bounce, were one made
    pf.check_no_bounce()
    check_eq(pf.queue_files(), [], "Postfix queue")
    pf.stop()
    env.stop_clean()


@H.timeout(60)
def test_postfix_lmtp_tcp():
    if skip_without_postfix():
        return
    env = H.Env("pf_lmtp_tcp")
    env.route("*", "mx")
    env.start(gateway=False)
    lmtp_through_postfix(env, "inet:127.0.0.1:%d" % env.lmtp_port)


@H.timeout(60)
def test_postfix_lmtp_unix():
    if skip_without_postfix():
        return
    env = H.Env("pf_lmtp_unix")
    env.config.section("intake").update({"lmtp_socket": env.lmtp_socket, "lmtp_listen": ""})
    env.route("*", "mx")
    env.start(gateway=False)
    # Postfix's lmtp client runs as postfix: the socket is for everyone.
    mode = os.stat(env.lmtp_socket).st_mode & 0o777
    check(mode & 0o006 == 0o006, "intake's socket %s has mode %03o: Postfix cannot connect", env.lmtp_socket, mode)
    lmtp_through_postfix(env, "unix:%s" % env.lmtp_socket)


@H.timeout(60)
def test_postfix_lmtp_db_down():
    """MariaDB away: intake answers 451, Postfix keeps the mail deferred and
    delivers it once on a flush after MariaDB is back."""
    if skip_without_postfix():
        return
    env = H.Env("pf_lmtp_dbdown")
    env.route("*", "mx")
    env.start(gateway=False)
    pf = Postfix(env, ["%s lmtp:inet:127.0.0.1:%d" % (DOMAIN, env.lmtp_port)]).start()

    env.db.stop()
    qid = pf.send(env.submission(RCPTS, SUBJECT, BODY), env.submitter)
    line = pf.wait_status(qid, "deferred")
    check("451 4.3.0" in line, "Postfix's log does not carry intake's 451: %r", line)
    H.wait_until(lambda: [(m["queue_id"], m["queue_name"]) for m in pf.queue_listing()] == [(qid, "deferred")],
                 10, what="postqueue -j to list %s as deferred" % qid)
    env.intake.assert_running()

    env.db.start()
    check_eq(jobs_count(env), 0, "jobs before the queue is flushed")
    pf.flush()
    line = pf.wait_status(qid, "sent", timeout=30)
    m = re.search(r"\(250 2\.0\.0 job (\d+) ", line)
    check(m is not None, "Postfix's log does not carry intake's reply: %r", line)
    pf.wait_gone(qid)
    check_eq(jobs_count(env), 1, "jobs after the flush")
    check_job(env, int(m.group(1)))
    pf.check_no_bounce()
    pf.stop()
    env.stop_clean()


# --------------------------------------------------------------------------
# Postfix delivering to intake through a pipe transport. `--pipe` reads
# every message as a submission, so the transport entry names the submit
# address, not the whole domain.

@H.timeout(60)
def test_postfix_pipe():
    if skip_without_postfix():
        return
    env = pipe_env("pf_pipe")
    pf = Postfix(env, ["%s hato:" % H.SUBMIT_ADDRESS], services=pipe_service(env)).start()

    qid = pf.send(env.submission(RCPTS, SUBJECT, BODY), env.submitter)
    line = pf.wait_status(qid, "sent")
    check("relay=hato" in line, "not delivered by the pipe: %r", line)
    pf.wait_gone(qid)
    jobs = env.jobs()
    check_eq(len(jobs), 1, "jobs after one submission through the pipe")
    check_job(env, jobs[0]["id"])

    # An unknown sender: exit 0, no job, no bounce.
    stranger = "stranger@example.net"
    data = H.make_submission(stranger, env.token, RCPTS, SUBJECT, BODY, to=env.submit_address)
    qid = pf.send(data, stranger)
    pf.wait_status(qid, "sent")
    pf.wait_gone(qid)
    check_eq(jobs_count(env), 1, "jobs after an unknown sender's mail")
    time.sleep(0.5)
    pf.check_no_bounce()

    # A known submitter with a wrong token: exit 77, Postfix bounces to the
    # submitter, with intake's reply in the bounce.
    qid = pf.send(env.submission(RCPTS, SUBJECT, BODY, token="not-the-token"), env.submitter)
    line = pf.wait_status(qid, "bounced")
    check("5.7.8" in line or "5.7.0" in line, "bounce for a wrong token: %r", line)
    check(pf.elsewhere.wait_for(1, 20), "no bounce reached the submitter's side")
    msgs = pf.elsewhere.messages()
    check_eq(len(msgs), 1, "mail that left Postfix")
    check_eq(H.addr_of(msgs[0]["mail_from"]), "", "envelope sender of the bounce")
    check_eq([H.addr_of(r) for r in msgs[0]["rcpts"]], [env.submitter], "recipient of the bounce")
    dsn = msgs[0]["data"].decode("utf-8", "replace")
    check("5.7.8 authentication failed" in dsn, "intake's reply is not in the bounce:\n%s", dsn[:3000])
    check_eq(jobs_count(env), 1, "jobs after a wrong token")
    pf.stop()


@H.timeout(75)
def test_postfix_pipe_db_down():
    if skip_without_postfix():
        return
    env = pipe_env("pf_pipe_dbdown")
    pf = Postfix(env, ["%s hato:" % H.SUBMIT_ADDRESS], services=pipe_service(env)).start()

    env.db.stop()
    qid = pf.send(env.submission(RCPTS, SUBJECT, BODY), env.submitter)
    line = pf.wait_status(qid, "deferred")
    check("dsn=4." in line, "deferral's dsn: %r", line)
    check("451 4.3.0" in line, "Postfix's log does not carry intake's 451: %r", line)
    # qmgr moves it to deferred/ just after the delivery agent's log line.
    H.wait_until(lambda: [(m["queue_id"], m["queue_name"]) for m in pf.queue_listing()] == [(qid, "deferred")],
                 10, what="postqueue -j to list %s as deferred" % qid)
    listing = pf.queue_listing()
    check_eq([(m["queue_id"], m["queue_name"]) for m in listing], [(qid, "deferred")], "postqueue -j")
    check("451 4.3.0" in listing[0]["recipients"][0].get("delay_reason", ""),
          "delay reason in the queue: %r", listing[0]["recipients"])
    check(any(q == "deferred" and f == qid for q, f in pf.queue_files()), "%s is not in deferred/", qid)

    env.db.start()
    check_eq(jobs_count(env), 0, "jobs before the queue is flushed")
    pf.flush()
    line = pf.wait_status(qid, "sent", timeout=30)
    check("relay=hato" in line, "not delivered by the pipe: %r", line)
    pf.wait_gone(qid)
    jobs = env.jobs()
    check_eq(len(jobs), 1, "jobs after the flush")
    check_job(env, jobs[0]["id"])
    check_eq(pf.queue_listing(), [], "postqueue -j after the flush")
    time.sleep(0.5)
    pf.check_no_bounce()
    pf.stop()


if __name__ == "__main__":
    H.main(globals())
