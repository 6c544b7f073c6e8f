"""The benchmark's peers: Postfix's smtp-sink and smtp-source, a private
Postfix instance, and CPU accounting through /proc.

Every process started here is recorded in a Procs registry and stopped by
PID (SIGTERM, then SIGKILL); every server listens on 127.0.0.1 only; every
wait is bounded.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


_given = set()


def free_port():
    """A free port on 127.0.0.1 not handed out before by this process (the
    kernel may give the same one twice before anything binds it)."""
    port = None
    while port is None or port in _given:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    _given.add(port)
    return port


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError("process %d exited (%s) before listening on %d" % (proc.pid, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise BenchError("nothing listens on 127.0.0.1:%d after %.0fs" % (port, timeout))
        time.sleep(0.02)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid, term_wait=10.0, kill_wait=5.0, popen=None):
    """SIGTERM the PID, wait, then SIGKILL. Reaps it when it is our child."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, kill_wait)):
        if popen is not None and popen.poll() is not None:
            return
        if popen is None and not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if popen is not None:
                if popen.poll() is not None:
                    return
            elif not pid_alive(pid):
                return
            time.sleep(0.02)


class Procs:
    """What this run started, stopped by PID in reverse order."""

    def __init__(self):
        self.items = []  # (name, Popen or pid, stopper)
        self.lock = threading.Lock()

    def popen(self, name, args, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        # Children die with the benchmark even if it is killed outright.
        prefix = [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []
        p = subprocess.Popen(prefix + list(args), **kw)
        with self.lock:
            self.items.append((name, p, None))
        return p

    def add(self, name, pid=None, stopper=None):
        with self.lock:
            self.items.append((name, pid, stopper))

    def stop(self, obj):
        """Stop one registered Popen (or the item whose stopper is obj)."""
        with self.lock:
            found = [it for it in self.items if it[1] is obj or it[2] is obj]
            for it in found:
                self.items.remove(it)
        for name, p, stopper in found:
            self._stop(name, p, stopper)

    def _stop(self, name, p, stopper):
        try:
            if stopper is not None:
                stopper()
            elif isinstance(p, subprocess.Popen):
                stop_pid(p.pid, popen=p)
            elif isinstance(p, int):
                stop_pid(p)
        except Exception as e:  # keep stopping the rest
            print("  stopping %s: %s" % (name, e), flush=True)

    def stop_all(self):
        while True:
            with self.lock:
                if not self.items:
                    return
                name, p, stopper = self.items.pop()
            self._stop(name, p, stopper)


# --------------------------------------------------------------------------
# CPU through /proc.

def proc_stat(pid):
    """(utime+stime, cutime+cstime, session) in seconds, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # rest[0] is field 3 (state); field N is rest[N - 3].
    own = (int(rest[11]) + int(rest[12])) / CLK_TCK
    children = (int(rest[13]) + int(rest[14])) / CLK_TCK
    return own, children, int(rest[3])


def cpu_of_pids(pids):
    """CPU seconds (user+sys, threads included) of these processes and of
    their children that they have waited for."""
    total = 0.0
    per = {}
    for pid in pids:
        st = proc_stat(pid)
        if st:
            per[pid] = st[0] + st[1]
            total += per[pid]
    return total, per


def session_pids(sid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[2] == sid:
            out.append(int(name))
    return out


def cpu_of_session(sid):
    """CPU seconds of every process in session sid, plus what they reaped:
    a process that ended is counted in its parent's cutime/cstime."""
    return cpu_of_pids(session_pids(sid))


def thread_cpu(pid):
    """{tid: (name, CPU seconds)} of every thread of a process."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        rest = text.rsplit(")", 1)[1].split()
        out[int(t)] = (name, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def thread_delta(before, after, wall, top=4):
    """The busiest threads between two thread_cpu() samples:
    [(tid, name, CPU seconds, share of the wall time)]."""
    rows = []
    for tid, (name, cpu) in after.items():
        d = cpu - before.get(tid, (name, 0.0))[1]
        if d > 0:
            rows.append((tid, name, round(d, 2), round(d / wall, 3) if wall > 0 else None))
    rows.sort(key=lambda r: -r[2])
    return rows[:top]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# smtp-sink with a live message counter.

class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1, its -c counter read live from its
    stdout (it writes 'sess=N quit=N mesg=N\\r' after every message)."""

    RX = re.compile(rb"mesg=(\d+)")

    def __init__(self, procs, name, logdir):
        self.procs = procs
        self.name = name
        self.port = free_port()
        self.errlog = os.path.join(logdir, "smtp-sink-%s.err" % name)
        self.count = 0
        self.t_last = None     # time.time() of the last counted message
        self.t_first = None
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.proc = None
        self.thread = None

    def start(self):
        args = [SMTP_SINK, "-c", "-u", "postfix", "-h", "sink-%s.bench.test" % self.name,
                "127.0.0.1:%d" % self.port, "1024"]
        with open(self.errlog, "ab") as err:
            self.proc = self.procs.popen("smtp-sink " + self.name, args, stdout=subprocess.PIPE, stderr=err)
        self.thread = threading.Thread(target=self._read, name="sink-%s" % self.name, daemon=True)
        self.thread.start()
        wait_port(self.port, 10, self.proc)
        return self

    def _read(self):
        fd = self.proc.stdout.fileno()
        tail = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.time()
            tail = (tail + chunk)[-64:]
            ms = self.RX.findall(tail)
            if ms:
                n = int(ms[-1])
                with self.lock:
                    if n != self.count:
                        if self.t_first is None:
                            self.t_first = now
                        self.count = n
                        self.t_last = now
                        self.changed.notify_all()

    def snapshot(self):
        with self.lock:
            return self.count, self.t_first, self.t_last

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None


def sinks_total(sinks):
    return sum(s.snapshot()[0] for s in sinks)


def wait_sinks(sinks, want, timeout, interval=0.05, alive=None):
    """Wait until the sinks counted want messages in all; returns
    (count, time.time() of the last message counted). Bounded by timeout."""
    deadline = time.monotonic() + timeout
    while True:
        n = sinks_total(sinks)
        if n >= want:
            break
        if alive is not None:
            alive()
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    snaps = [s.snapshot() for s in sinks]
    lasts = [t for _, _, t in snaps if t is not None]
    return sum(c for c, _, _ in snaps), (max(lasts) if lasts else None)


# --------------------------------------------------------------------------
# smtp-source.

def smtp_source(procs, port, count, sessions, msgfile, sender, rcpt, logdir, name, sequence=True):
    """Start smtp-source: count messages over `sessions` reused connections
    (-d), each to rcpt (with -N a sequence number is put before it, so that
    every recipient is distinct)."""
    args = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(count), "-F", msgfile,
            "-f", sender, "-t", rcpt, "-M", "source.bench.test"]
    if sequence:
        args.insert(1, "-N")
    args.append("127.0.0.1:%d" % port)
    log = open(os.path.join(logdir, "smtp-source-%s.log" % name), "ab")
    try:
        return procs.popen("smtp-source " + name, args, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


# --------------------------------------------------------------------------
# A private Postfix instance.

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
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
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# A private Postfix instance for the benchmark: loopback only, no local
# delivery, three domains sent by transport_maps to three sinks.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
local_transport = error:local delivery is disabled
local_recipient_maps =
alias_maps =
alias_database =
transport_maps = texthash:{conf}/transport
default_transport = smtp:[127.0.0.1]:{default_port}
relayhost =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
default_destination_concurrency_limit = {concurrency}
smtp_destination_concurrency_limit = {concurrency}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
biff = no
smtputf8_enable = no
notify_classes =
message_size_limit = 10485760
"""


class PostfixInstance:
    """postfix -c DIR/etc start, with its queue under DIR/queue; stopped
    with `postfix -c DIR/etc stop` and then by PID (the master and every
    process of its session)."""

    QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def __init__(self, procs, parent_dir, name, routes, default_port, concurrency=10):
        self.procs = procs
        self.name = name
        self.dir = os.path.join(parent_dir, "postfix-%s" % name)
        self.conf = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.routes = routes                  # {domain: port}
        self.default_port = default_port
        self.concurrency = concurrency
        self.port = free_port()
        self.master_pid = None

    def settings(self):
        return {"concurrency per destination": self.concurrency, "smtpd port": self.port,
                "transport_maps": {d: "smtp:[127.0.0.1]:%d" % p for d, p in self.routes.items()},
                "default_transport": "smtp:[127.0.0.1]:%d" % self.default_port}

    def _postfix(self, *args, timeout=60):
        r = subprocess.run([POSTFIX, "-c", self.conf] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def start(self):
        os.makedirs(self.conf)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        for d in (self.dir, self.conf, self.queue):
            os.chmod(d, 0o755)
        import pwd
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(queue=self.queue, data=self.data, conf=self.conf, dir=self.dir,
                                   default_port=self.default_port, concurrency=self.concurrency))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        with open(os.path.join(self.conf, "transport"), "w") as f:
            for dom, port in self.routes.items():
                f.write("%s smtp:[127.0.0.1]:%d\n" % (dom, port))
        rc, out = self._postfix("check")
        if rc != 0:
            raise BenchError("postfix check (%s) failed:\n%s%s" % (self.conf, out, self.log_tail()))
        self.procs.add("postfix " + self.name, stopper=self.stop)
        rc, out = self._postfix("start")
        if rc != 0:
            raise BenchError("postfix start (%s) failed:\n%s%s" % (self.conf, out, self.log_tail()))
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 15
        while self.master_pid is None:
            try:
                with open(pidfile) as f:
                    pid = int(f.read().split()[0])
                if pid_alive(pid):
                    self.master_pid = pid
                    break
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise BenchError("no Postfix master pid in %s" % pidfile)
            time.sleep(0.05)
        wait_port(self.port, 15)
        return self

    def pids(self):
        return session_pids(self.master_pid) if self.master_pid else []

    def cpu(self):
        return cpu_of_session(self.master_pid)[0] if self.master_pid else 0.0

    def queue_count(self):
        n = 0
        for q in self.QUEUES:
            for root, _dirs, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n

    def wait_empty(self, timeout, interval=0.02):
        """Poll the queue until it is empty; returns time.time() when it
        was seen empty, or None after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue_count() == 0:
                return time.time()
            time.sleep(interval)
        return None

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.dir, "maillog"), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_count(self, what="status=sent"):
        try:
            with open(os.path.join(self.dir, "maillog"), "rb") as f:
                return f.read().count(what.encode())
        except OSError:
            return 0

    def stop(self):
        if self.master_pid is None:
            return
        pids = self.pids()
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in [self.master_pid] + [p for p in pids if p != self.master_pid]:
            stop_pid(pid, term_wait=5.0)
        self.master_pid = None
