"""Integration-test support for Hato.

Everything a test starts (a private mariadbd, SMTP sinks, hato-intake,
hato-gateway) lives in a fresh directory under /tmp, listens on loopback or a
unix socket only, and is stopped by PID when the test ends, passes or fails.

A test file defines test_* functions and ends with

    if __name__ == "__main__":
        hatotest.main(globals())

The runner runs the functions in file order, each under an alarm, prints
"name ... ok" or "name ... FAIL" (with the traceback and the tail of every log
the test produced), then "N passed, M failed", and exits non-zero on failure.

If the test process itself is killed, a small watchdog process (it reads the
PIDs and directories from a pipe) stops what is left, by PID, and removes
the directories.

Environment: HATO_SOURCE (source tree), HATO_BUILD (CMake build tree),
HATO_KEEP=1 keeps the temporary directories of failed tests,
HATO_TEST_TIMEOUT overrides the default per-test timeout (seconds),
HATO_TEST_USER is the [hato] user the daemons drop to (default: "nobody"
when run as root, so that the privilege drop is exercised),
HATO_VERBOSE=1 prints every daemon command and hatoctl call.

Typical use (see tests/integration/test_e2e.py):

    env = hatotest.Env("name")               # private MariaDB, hato.ini
    sink = env.relay_sink("docomo")          # smtpsink.Sink as [relay docomo]
    env.route("docomo.ne.jp", "relay:docomo")
    env.start()                              # db init, hato-intake, hato-gateway
    sub = env.submit(env.submission(["taro@docomo.ne.jp"], "件名", "本文\\n"))
    job_id = hatotest.job_id_of(sub.one())
    env.wait_job_done(job_id)
"""

import atexit
import base64
import email
import email.charset
import email.header
import email.policy
import email.utils
import hashlib
import html as html_mod
import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText

import pymysql

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("HATO_SOURCE") or os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("HATO_BUILD") or os.path.join(SOURCE, "build")
VERBOSE = os.environ.get("HATO_VERBOSE") == "1"
KEEP = os.environ.get("HATO_KEEP") == "1"

INTAKE = os.path.join(BUILD, "intake", "hato-intake")
GATEWAY = os.path.join(BUILD, "gateway", "hato-gateway")
HATOCTL = os.path.join(BUILD, "ctl", "hatoctl")

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db", path="/usr/bin:/usr/sbin:/bin:/sbin") or "/usr/bin/mariadb-install-db"
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")

SUBMIT_ADDRESS = "dm@hato.test"
BOUNCE_DOMAIN = "bounce.hato.test"
GATEWAY_HOSTNAME = "gw.hato.test"

DEFAULT_TEST_TIMEOUT = int(os.environ.get("HATO_TEST_TIMEOUT", "45"))


def _service_user():
    """The [hato] user the daemons drop to: HATO_TEST_USER, else "nobody"
    when the tests run as root (so the drop is exercised), else none."""
    u = os.environ.get("HATO_TEST_USER")
    if u is not None:
        return u or None
    if os.geteuid() != 0:
        return None
    import pwd
    try:
        pwd.getpwnam("nobody")
        return "nobody"
    except KeyError:
        return "root"


SERVICE_USER = _service_user()


class TestFailure(AssertionError):
    pass


class TestTimeout(Exception):
    pass


def log(*args):
    if VERBOSE:
        print("  #", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Scope: what the running test has started, to stop and to show on failure.

class _Scope:
    def __init__(self):
        self.cleanups = []     # callables, run in reverse order
        self.diagnostics = []  # callables returning text, shown on failure
        self.tempdirs = []


_scope = _Scope()
_all_cleanups = []  # everything not yet cleaned, for atexit


def defer(fn):
    """Run fn when the current test ends (reverse order of registration)."""
    _scope.cleanups.append(fn)
    _all_cleanups.append(fn)
    return fn


def on_failure(fn):
    """fn() -> str is printed when the current test fails."""
    _scope.diagnostics.append(fn)
    return fn


def _run_cleanups(scope):
    errors = []
    while scope.cleanups:
        fn = scope.cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning the rest
            errors.append("cleanup %r: %s" % (getattr(fn, "__qualname__", fn), e))
        finally:
            try:
                _all_cleanups.remove(fn)
            except ValueError:
                pass
    return errors


@atexit.register
def _cleanup_at_exit():
    while _all_cleanups:
        fn = _all_cleanups.pop()
        try:
            fn()
        except Exception:
            pass


def tempdir(name="t"):
    """A fresh directory under /tmp, removed when the test ends (kept when
    HATO_KEEP=1 and the test failed)."""
    d = tempfile.mkdtemp(prefix="hato-%s-" % re.sub(r"[^A-Za-z0-9_]", "_", name)[:24], dir="/tmp")
    os.chmod(d, 0o711)  # the daemons may run as SERVICE_USER
    _scope.tempdirs.append(d)
    _watch("dir", d)

    def remove():
        _watch("undir", d)
        if KEEP and _scope_failed[0]:
            print("  kept %s" % d, file=sys.stderr)
            return
        shutil.rmtree(d, ignore_errors=True)
    defer(remove)
    return d


_scope_failed = [False]


# --------------------------------------------------------------------------
# Small tools.

_ports_given = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, and never given
    before to this process: the kernel may hand the same free port out
    twice before anything binds it, and a sink listening where intake
    should have been answers the test's LMTP with 502."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise TestFailure("no fresh free port in 100 tries")


def wait_until(predicate, timeout=10.0, interval=0.05, what=None):
    """Poll predicate() until it returns something true; return that value.
    Raises TestFailure after timeout seconds. Other exceptions from the
    predicate count as "not yet"; a TestFailure from it ends the wait at once
    (a daemon that died will not come back)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
            last_exc = None
        except TestFailure:
            raise
        except Exception as e:  # a predicate may fail while things start
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what or getattr(predicate, "__name__", "condition"))
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise TestFailure(msg)
        time.sleep(interval)


def wait_port(host, port, timeout=10.0, proc=None):
    """Wait until host:port accepts a TCP connection (and proc, when given,
    is still running)."""
    def ok():
        if proc is not None:
            proc.assert_running()
        with socket.create_connection((host, port), timeout=1):
            return True
    return wait_until(ok, timeout, what="%s:%d to accept" % (host, port))


def wait_unix(path, timeout=10.0, proc=None):
    def ok():
        if proc is not None:
            proc.assert_running()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(1)
            s.connect(path)
            return True
        finally:
            s.close()
    return wait_until(ok, timeout, what="%s to accept" % path)


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(%s: %s)" % (path, e)
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def check_eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


# A watchdog outlives this process: it learns every PID and directory a test
# starts, and when its pipe from us closes (we exited, or were killed
# outright) it stops whatever is still listed, by PID, and removes the
# directories. The parent-death signal alone is not enough: the kernel clears
# it when a daemon drops root.
_WATCHDOG_CODE = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
pids, dirs = set(), set()
keep = os.environ.get("HATO_KEEP") == "1"
for line in sys.stdin:
    cmd, _, arg = line.rstrip("\n").partition(" ")
    if cmd == "pid":
        pids.add(int(arg))
    elif cmd == "unpid":
        pids.discard(int(arg))
    elif cmd == "dir":
        dirs.add(arg)
    elif cmd == "undir":
        dirs.discard(arg)

def alive(p):
    try:
        with open("/proc/%d/stat" % p) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
    live = [p for p in pids if alive(p)]
    if not live:
        break
    for p in live:
        try:
            os.kill(p, sig)
        except OSError:
            pass
    end = time.monotonic() + wait
    while time.monotonic() < end and any(alive(p) for p in live):
        time.sleep(0.05)
if pids:
    print("hatotest watchdog: stopped leftover pids %s" % sorted(pids), file=sys.stderr)
if not keep:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
"""

_watchdog = None


def _watch(cmd, arg):
    global _watchdog
    try:
        if _watchdog is None:
            _watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG_CODE], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        _watchdog.stdin.write(("%s %s\n" % (cmd, arg)).encode())
        _watchdog.stdin.flush()
    except (OSError, ValueError):
        pass


def _pdeath_prefix():
    # Children die with the test process even if it is killed outright.
    return [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []


def _stop_pid(proc, timeout=10.0, kill_timeout=5.0):
    """SIGTERM the process by PID, wait, then SIGKILL. Returns its exit code
    (negative signal number when killed) or None if it could not be reaped."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(kill_timeout)
    except subprocess.TimeoutExpired:
        return None
    return proc.returncode


# --------------------------------------------------------------------------
# MariaDB: a private server in its own temporary directory.

class MariaDB:
    """A private mariadbd on a unix socket, no networking.

    start() installs the data directory on first use; stop() keeps it, so
    stop()/start() is a restart with the same data; cleanup() (registered
    automatically) stops the server and removes the directory."""

    def __init__(self, database="hato", user="hato"):
        self.dir = tempfile.mkdtemp(prefix="hato-mdb-", dir="/tmp")
        os.chmod(self.dir, 0o711)  # the daemons reach the socket as SERVICE_USER
        _watch("dir", self.dir)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.pid_file = os.path.join(self.dir, "mysqld.pid")
        self.error_log = os.path.join(self.dir, "error.log")
        self.output_log = os.path.join(self.dir, "mariadbd.out")
        # Its own tmpdir: concurrent servers sharing /tmp trip over each
        # other's "#sql-temptable-*" files.
        self.tmpdir = os.path.join(self.dir, "tmp")
        os.mkdir(self.tmpdir, 0o700)
        self.database = database
        self.user = user
        self.password = secrets.token_hex(12)
        self.password_file = os.path.join(self.dir, "db.password")
        self.proc = None
        self.installed = False
        self.app_ready = False
        defer(self.cleanup)
        on_failure(lambda: "--- mariadb %s (tail)\n%s" % (self.error_log, tail(self.error_log, 15)))

    def install(self, tries=3):
        out = os.path.join(self.dir, "install.log")
        reports = []
        for attempt in range(1, tries + 1):
            shutil.rmtree(self.datadir, ignore_errors=True)
            os.makedirs(self.datadir)
            with open(out, "wb") as f:
                r = subprocess.run(
                    [MARIADB_INSTALL_DB, "--no-defaults", "--datadir=" + self.datadir, "--user=root",
                     "--skip-test-db", "--auth-root-authentication-method=normal",
                     "--innodb-log-file-size=16M", "--tmpdir=" + self.tmpdir],
                    stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
            if r.returncode == 0:
                if reports:
                    print("  (mariadb-install-db needed %d tries: %s)" % (attempt, "; ".join(reports)), file=sys.stderr)
                self.installed = True
                return
            with open(out, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            lines = text.splitlines()
            errors = [l for l in lines if "ERROR" in l or "rror" in l.split(":")[0] or "[ERROR]" in l]
            reports.append("try %d exited %d: %s" % (attempt, r.returncode, " | ".join((errors or lines[:5])[:8])))
            time.sleep(0.5)
        raise TestFailure("mariadb-install-db failed %d times:\n%s\nlast output (head):\n%s"
                          % (tries, "\n".join(reports), "\n".join(lines[:25])))

    def start(self, timeout=30.0):
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self.installed:
            self.install()
        args = _pdeath_prefix() + [
            MARIADBD, "--no-defaults",
            "--datadir=" + self.datadir,
            "--socket=" + self.socket,
            "--tmpdir=" + self.tmpdir,
            "--skip-networking",
            "--user=root",
            "--pid-file=" + self.pid_file,
            "--log-error=" + self.error_log,
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--max-connections=200",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
        ]
        log("start", " ".join(args))
        out = open(self.output_log, "ab")
        try:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()
        _watch("pid", self.proc.pid)

        def up():
            if self.proc.poll() is not None:
                raise TestFailure("mariadbd exited with %s:\n%s" % (self.proc.returncode, tail(self.error_log, 30)))
            c = pymysql.connect(unix_socket=self.socket, user="root", password="", connect_timeout=2)
            c.close()
            return True
        wait_until(up, timeout, interval=0.05, what="mariadbd on %s" % self.socket)
        if not self.app_ready:
            self._create_app_db()
        return self

    def _create_app_db(self):
        c = self.root()
        try:
            with c.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % self.database)
                cur.execute("CREATE USER IF NOT EXISTS %s@'localhost' IDENTIFIED BY %s", (self.user, self.password))
                cur.execute("GRANT ALL PRIVILEGES ON `%s`.* TO %%s@'localhost'" % self.database, (self.user,))
        finally:
            c.close()
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        self.app_ready = True

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM by PID, wait for the exit, SIGKILL after timeout. The data
        directory stays."""
        if self.proc is None:
            return None
        rc = _stop_pid(self.proc, timeout)
        if rc is not None:
            _watch("unpid", self.proc.pid)
        self.proc = None
        # mariadbd removes its socket on a clean exit; make sure it is gone.
        wait_until(lambda: not os.path.exists(self.socket) or _unlink(self.socket), 5, what="socket removal")
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        try:
            self.stop()
        finally:
            if KEEP and _scope_failed[0]:
                print("  kept %s" % self.dir, file=sys.stderr)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            _watch("undir", self.dir)

    def root(self, database=None):
        return pymysql.connect(unix_socket=self.socket, user="root", password="", database=database,
                               autocommit=True, charset="utf8mb4", connect_timeout=5)

    def connect(self):
        """A connection as the application user, UTC, autocommit, dict rows."""
        return pymysql.connect(unix_socket=self.socket, user=self.user, password=self.password,
                               database=self.database, autocommit=True, charset="utf8mb4",
                               connect_timeout=5, cursorclass=pymysql.cursors.DictCursor,
                               init_command="SET time_zone = '+00:00'")

    def query(self, sql, args=None):
        """Rows as a list of dicts (a fresh connection every call)."""
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            c.close()

    def scalar(self, sql, args=None):
        rows = self.query(sql, args)
        if not rows:
            return None
        return next(iter(rows[0].values()))

    def table_exists(self, name):
        return bool(self.query("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                               (self.database, name)))


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return True


# --------------------------------------------------------------------------
# Configuration files.

class Config:
    """hato.ini and the route table, written from Python values.

    sections: {"db": {"socket": ...}, "relay docomo": {...}, ...}. A value that
    is a list or tuple is written comma-separated; True/False as yes/no; None
    leaves the key out."""

    def __init__(self, directory, sections=None, routes=None):
        self.dir = directory
        self.path = os.path.join(directory, "hato.ini")
        self.routes_path = os.path.join(directory, "carriers.routes")
        self.sections = {}
        self.routes = list(routes or [])
        for name, values in (sections or {}).items():
            self.section(name).update(values)

    def section(self, name):
        return self.sections.setdefault(name, {})

    def set(self, section, key, value):
        self.section(section)[key] = value
        return self

    def remove(self, section, key=None):
        if key is None:
            self.sections.pop(section, None)
        else:
            self.sections.get(section, {}).pop(key, None)
        return self

    @staticmethod
    def _value(v):
        if v is True:
            return "yes"
        if v is False:
            return "no"
        if isinstance(v, (list, tuple)):
            return ", ".join(str(x) for x in v)
        return str(v)

    def text(self):
        out = ["; written by hatotest"]
        for name, values in self.sections.items():
            out.append("")
            out.append("[%s]" % name)
            for k, v in values.items():
                if v is None:
                    continue
                out.append("%s = %s" % (k, self._value(v)))
        return "\n".join(out) + "\n"

    def routes_text(self):
        lines = ["# route table written by hatotest"]
        for r in self.routes:
            if isinstance(r, (list, tuple)):
                lines.append("%-24s %s" % tuple(r))
            else:
                lines.append(r)
        return "\n".join(lines) + "\n"

    def write(self):
        with open(self.routes_path, "w", encoding="utf-8") as f:
            f.write(self.routes_text())
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(self.text())
        return self.path


def token_sha256(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# Daemons.

class Daemon:
    """A daemon in the foreground: binary --config FILE, stderr and stdout to
    a log file in the test's directory, stopped by PID."""

    def __init__(self, binary, config, logdir, name=None, extra_args=()):
        self.binary = binary
        self.config = config
        self.name = name or os.path.basename(binary)
        self.log_path = os.path.join(logdir, "%s.log" % self.name)
        self.extra_args = list(extra_args)
        self.proc = None
        self.returncode = None
        defer(self.kill)
        on_failure(lambda: "--- %s log %s (tail)\n%s" % (self.name, self.log_path, tail(self.log_path, 40)))

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise TestFailure("%s is not built (%s)" % (self.name, self.binary))
        args = _pdeath_prefix() + [self.binary, "--config", self.config] + self.extra_args
        log("start", " ".join(args))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=os.path.dirname(self.log_path))
        _watch("pid", self.proc.pid)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self):
        if self.proc is None:
            raise TestFailure("%s was never started" % self.name)
        if self.proc.poll() is not None:
            raise TestFailure("%s exited with %s; log tail:\n%s" % (self.name, self.proc.returncode, tail(self.log_path, 30)))

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_text()), timeout, what="%s log to match %r" % (self.name, pattern))

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout for the drain, then SIGKILL.
        Returns the exit code (negative: killed by that signal)."""
        if self.proc is None:
            return self.returncode
        rc = _stop_pid(self.proc, timeout)
        if rc is not None:
            _watch("unpid", self.proc.pid)
        self.returncode = rc
        self.proc = None
        return rc

    def stop_clean(self, timeout=10.0):
        """stop(), and fail unless the daemon exited 0 on SIGTERM and its log
        shows no sanitizer report."""
        was_running = self.running()
        rc = self.stop(timeout)
        check(was_running, "%s had already exited with %s before SIGTERM" % (self.name, rc))
        check(rc == 0, "%s exited with %s on SIGTERM (want 0 within %.0fs); log tail:\n%s",
              self.name, rc, timeout, tail(self.log_path, 30))
        self.assert_log_clean()

    def assert_log_clean(self):
        text = self.log_text()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation fault", "double free"):
            check(bad not in text, "%s log contains %r:\n%s", self.name, bad, tail(self.log_path, 40))

    def kill(self):
        self.stop(timeout=5.0)


def run(args, timeout=30.0, check_rc=True, input=None, env=None):
    """Run a command; returns CompletedProcess with text stdout/stderr."""
    log("run", " ".join(args))
    r = subprocess.run(args, stdin=subprocess.DEVNULL if input is None else None, input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env)
    r.stdout = r.stdout.decode("utf-8", "replace")
    r.stderr = r.stderr.decode("utf-8", "replace")
    if check_rc and r.returncode != 0:
        raise TestFailure("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def http_request(port, method, path, body=None, headers=None, timeout=15.0):
    """One HTTP request to 127.0.0.1:port: (status, body text, headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
    finally:
        c.close()


def hatoctl(config, *args, timeout=30.0, check_rc=True):
    if not os.access(HATOCTL, os.X_OK):
        raise TestFailure("hatoctl is not built (%s)" % HATOCTL)
    return run([HATOCTL, "--config", config] + [str(a) for a in args], timeout=timeout, check_rc=check_rc)


# --------------------------------------------------------------------------
# Submissions.

def _text_part(text, charset, encoding, subtype="plain"):
    """A text/SUBTYPE part: charset iso-2022-jp (7bit) or utf-8 with base64,
    quoted-printable or 8bit."""
    cs = charset.lower()
    if cs == "iso-2022-jp":
        raw = "\r\n".join(line.encode("iso-2022-jp").decode("ascii") for line in text.split("\n"))
        part = MIMENonMultipart("text", subtype, charset="ISO-2022-JP")
        part.set_payload(raw)
        part["Content-Transfer-Encoding"] = "7bit"
        return part
    if cs in ("shift_jis", "euc-jp"):
        part = MIMENonMultipart("text", subtype, charset=charset)
        part.set_payload(base64.encodebytes(text.replace("\n", "\r\n").encode(cs)).decode("ascii"))
        part["Content-Transfer-Encoding"] = "base64"
        return part
    if encoding == "base64":
        part = MIMENonMultipart("text", subtype, charset=charset)
        part.set_payload(base64.encodebytes(text.replace("\n", "\r\n").encode(cs)).decode("ascii"))
        part["Content-Transfer-Encoding"] = "base64"
        return part
    if encoding == "quoted-printable":
        c = email.charset.Charset(charset)
        c.body_encoding = email.charset.QP
        return MIMEText(text, subtype, c)
    if encoding in ("8bit", "7bit"):
        c = email.charset.Charset(charset)
        c.body_encoding = None
        part = MIMEText(text, subtype, c)
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = encoding
        return part
    raise ValueError("unknown encoding %r" % encoding)


def control_block(token=None, rcpts=(), subject=None, per_line=2, extra=()):
    """The control block lines: Token, To (per_line addresses a line),
    Subject, then extra lines as given."""
    lines = []
    if token is not None:
        lines.append("Token: %s" % token)
    rcpts = list(rcpts)
    for i in range(0, len(rcpts), max(1, per_line)):
        lines.append("To: %s" % ", ".join(rcpts[i:i + per_line]))
    if subject is not None:
        lines.append("Subject: %s" % subject)
    lines.extend(extra)
    return lines


def make_submission(from_addr, token=None, rcpts=(), subject=None, body="", *,
                    to=SUBMIT_ADDRESS, mail_subject="DM", charset="utf-8", encoding="base64",
                    alternative=False, html=None, control=None, extra_control=(), per_line=2,
                    attachments=(), message_id=True):
    """A submission mail as bytes (CRLF line ends).

    The first text/plain part is the control block (Token/To/Subject, or the
    lines in `control`; control=False: no control block at all), an empty
    line, then body. charset "iso-2022-jp" (7bit) or "utf-8" with encoding
    "base64", "quoted-printable" or "8bit". alternative=True wraps it in
    multipart/alternative with an HTML twin. attachments: (filename,
    content_type, bytes) tuples, making the mail multipart/mixed."""
    if control is False:
        text = body
    else:
        lines = control if control is not None else control_block(token, rcpts, subject, per_line, extra_control)
        text = "\n".join(lines) + "\n\n" + body
    plain = _text_part(text, charset, encoding)
    if alternative:
        h = html if html is not None else "<html><body><pre>%s</pre></body></html>" % html_mod.escape(body)
        alt = MIMEMultipart("alternative")
        alt.attach(plain)
        alt.attach(_text_part(h, "utf-8", encoding if encoding != "8bit" else "base64", "html"))
        top = alt
    else:
        top = plain
    if attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(top)
        for filename, ctype, data in attachments:
            maintype, subtype = ctype.split("/", 1)
            a = MIMENonMultipart(maintype, subtype)
            a.set_payload(base64.encodebytes(data).decode("ascii"))
            a["Content-Transfer-Encoding"] = "base64"
            a.add_header("Content-Disposition", "attachment", filename=filename)
            mixed.attach(a)
        top = mixed
    top["From"] = from_addr
    top["To"] = to
    if mail_subject is not None:
        if all(ord(c) < 128 for c in mail_subject):
            top["Subject"] = mail_subject
        else:
            top["Subject"] = email.header.Header(mail_subject, "iso-2022-jp" if charset.lower() == "iso-2022-jp" else "utf-8")
    top["Date"] = email.utils.formatdate(localtime=False)
    if message_id:
        top["Message-ID"] = email.utils.make_msgid(domain="submitter.test")
    if "MIME-Version" not in top:
        top["MIME-Version"] = "1.0"
    data = top.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    return data


def parse_message(data):
    """bytes -> email.message.EmailMessage (modern policy: decoded headers)."""
    return email.message_from_bytes(data, policy=email.policy.default)


def text_body(msg):
    """The decoded text/plain body of a message, LF line ends."""
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        raise TestFailure("no text/plain part in message:\n%s" % msg.as_string()[:2000])
    return part.get_content().replace("\r\n", "\n")


# --------------------------------------------------------------------------
# LMTP client: per-recipient replies after DATA (RFC 2033).

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def ok(self):
        return 200 <= self.code < 300

    @property
    def temporary(self):
        return 400 <= self.code < 500

    @property
    def permanent(self):
        return 500 <= self.code < 600

    @property
    def status(self):
        """The enhanced status code (x.y.z) of the first line, or None."""
        m = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})\b", self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    def __repr__(self):
        return "%d %s" % (self.code, " / ".join(self.lines))

    __str__ = __repr__


class LMTPError(Exception):
    pass


class LMTPClient:
    """A small LMTP client on TCP (host, port) or a unix socket path."""

    def __init__(self, target, timeout=30.0):
        if isinstance(target, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(target)
        else:
            self.sock = socket.create_connection(tuple(target), timeout=timeout)
        self.buf = b""
        self.transcript = []
        self.greeting = self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise LMTPError("connection closed by server; transcript:\n" + "\n".join(self.transcript[-20:]))
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise LMTPError("reply line too long")
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        code = None
        for _ in range(1000):
            line = self._line()
            self.transcript.append("S: " + line)
            if len(line) < 3 or not line[:3].isdigit():
                raise LMTPError("malformed reply line %r" % line)
            c = int(line[:3])
            if code is not None and c != code:
                raise LMTPError("reply code changed within a reply: %r" % line)
            code = c
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(code, lines)
            if line[3] != "-":
                raise LMTPError("malformed reply line %r" % line)
        raise LMTPError("reply with too many lines")

    def command(self, line):
        self.transcript.append("C: " + line)
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def lhlo(self, name="client.hatotest"):
        return self.command("LHLO " + name)

    def mail(self, sender):
        return self.command("MAIL FROM:<%s>" % sender)

    def rcpt(self, rcpt):
        return self.command("RCPT TO:<%s>" % rcpt)

    def data(self, data, naccepted):
        """Send DATA and the message; returns [Reply] * naccepted (one per
        accepted recipient, in RCPT order), or [the 354-stage reply] when
        DATA itself was refused."""
        r = self.command("DATA")
        if r.code != 354:
            return [r]
        self.sock.sendall(dot_stuff(data) + b".\r\n")
        self.transcript.append("C: <message %d bytes>" % len(data))
        return [self.reply() for _ in range(naccepted)]

    def rset(self):
        return self.command("RSET")

    def quit(self):
        try:
            return self.command("QUIT")
        except (LMTPError, OSError):
            return None


def dot_stuff(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    lines = re.split(rb"\r?\n", data)
    if lines and lines[-1] == b"":
        lines.pop()
    out = bytearray()
    for line in lines:
        if line.startswith(b"."):
            out += b"."
        out += line + b"\r\n"
    return bytes(out)


class Submission:
    """The outcome of one LMTP transaction."""

    def __init__(self):
        self.greeting = None
        self.lhlo = None
        self.mail = None
        self.rcpt = []      # Reply per envelope recipient
        self.data = []      # Reply per accepted recipient
        self.transcript = []

    def final(self):
        """Per envelope recipient: the RCPT reply when refused, else its
        reply after DATA."""
        out = []
        it = iter(self.data)
        for r in self.rcpt:
            if r.ok:
                out.append(next(it, None))
            else:
                out.append(r)
        return out

    def one(self):
        """The final reply of the only recipient."""
        f = self.final()
        if len(f) != 1 or f[0] is None:
            raise TestFailure("expected one final reply, got %r; transcript:\n%s" % (f, "\n".join(self.transcript)))
        return f[0]

    def __repr__(self):
        return "<Submission mail=%r rcpt=%r data=%r>" % (self.mail, self.rcpt, self.data)


def lmtp_submit(target, mail_from, rcpts, data, timeout=30.0):
    """One LMTP transaction; returns a Submission with every reply."""
    s = Submission()
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    with LMTPClient(target, timeout) as c:
        try:
            s.greeting = c.greeting
            if c.greeting.code != 220:
                raise TestFailure("LMTP greeting: %r" % c.greeting)
            s.lhlo = c.lhlo()
            if not s.lhlo.ok:
                raise TestFailure("LHLO refused: %r" % s.lhlo)
            s.mail = c.mail(mail_from)
            if not s.mail.ok:
                s.rcpt = [s.mail for _ in rcpts]
                c.quit()
                return s
            s.rcpt = [c.rcpt(r) for r in rcpts]
            n = sum(1 for r in s.rcpt if r.ok)
            if n:
                s.data = c.data(data, n)
                if len(s.data) != n:  # DATA refused: it applies to everyone
                    s.data = [s.data[0]] * n
            c.quit()
        finally:
            s.transcript = c.transcript
    return s


def job_id_of(reply):
    """The job number in a '250 2.0.0 job N queued' reply."""
    m = re.search(r"\bjob\s+#?(\d+)", reply.text, re.I)
    if not m:
        raise TestFailure("no job number in reply %r" % reply)
    return int(m.group(1))


# --------------------------------------------------------------------------
# An environment: MariaDB, configuration, sinks and daemons of one test.

class Env:
    """Everything one test needs, cleaned up when the test ends.

        env = Env("e2e")
        docomo = env.relay_sink("docomo")
        env.route("docomo.ne.jp", "relay:docomo")
        env.start()              # writes config, db init, intake, gateway
        sub = env.submit(make_submission(env.submitter, env.token, [...]))
    """

    def __init__(self, name, db=True):
        self.name = name
        self.dir = tempdir(name)
        self.db = MariaDB() if db else None
        if self.db:
            self.db.start()
        self.lmtp_port = free_port()
        self.lmtp_socket = os.path.join(self.dir, "lmtp.sock")
        self.token = secrets.token_urlsafe(24)
        self.submitter = "dm-team@example.co.jp"
        self.submit_address = SUBMIT_ADDRESS
        self.sinks = {}
        self.intake = None
        self.gateway = None
        self.config = Config(self.dir)
        c = self.config
        # The MAC key of bounce addresses and unsubscribe tokens, mode 600.
        self.secret_file = os.path.join(self.dir, "secret.key")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(32).encode() + b"\n")
        os.close(fd)
        c.section("hato").update({"node": "it-%s" % name, "user": SERVICE_USER,
                                  "secret_file": self.secret_file})
        c.section("log").update({"level": "debug", "syslog": False})
        if self.db:
            c.section("db").update({"socket": self.db.socket, "user": self.db.user,
                                    "password_file": self.db.password_file, "database": self.db.database,
                                    "connect_timeout": "2s"})
        else:
            c.section("db").update({"socket": os.path.join(self.dir, "no-db.sock"), "user": "hato", "database": "hato"})
        c.section("intake").update({"lmtp_listen": "127.0.0.1:%d" % self.lmtp_port,
                                    "submit_address": self.submit_address, "timezone": "Asia/Tokyo",
                                    # Tests of receipts turn them on; the others count DMs only.
                                    "receipts": "no"})
        c.section("gateway").update({"hostname": GATEWAY_HOSTNAME, "routes": c.routes_path,
                                     "bounce_domain": BOUNCE_DOMAIN, "lease": "30s", "poll_interval": "100ms",
                                     "connect_timeout": "2s", "greeting_timeout": "10s",
                                     "command_timeout": "10s", "data_timeout": "10s"})
        c.section("retry").update({"intervals": "1s", "max_attempts": 5, "max_age": "1h"})
        c.section("limits").update({"connections": 2, "per_connection": 100})
        c.section("submitter marketing").update({"address": [self.submitter],
                                                 "token_sha256": token_sha256(self.token)})
        on_failure(self._sink_summary)

    # configuration
    def relay_sink(self, name, script=None):
        """Start a sink and declare it as [relay NAME]."""
        from smtpsink import Sink
        sink = Sink(port=0, host="127.0.0.1", script=script, name=name)
        sink.start()
        defer(sink.stop)
        self.sinks[name] = sink
        self.config.section("relay %s" % name).update({"host": "127.0.0.1", "port": sink.port, "tls": "none"})
        return sink

    def route(self, domain, route):
        self.config.routes.append((domain, route))

    def pace(self, name, **values):
        self.config.section("pace %s" % name).update(values)

    def write_config(self):
        return self.config.write()

    # processes
    def ctl(self, *args, check_rc=True, timeout=30.0):
        return hatoctl(self.config.path, *args, check_rc=check_rc, timeout=timeout)

    def init_db(self):
        return self.ctl("db", "init")

    def start_intake(self, wait=True):
        self.intake = Daemon(INTAKE, self.config.path, self.dir, "hato-intake").start()
        if wait:
            self.wait_intake()
        return self.intake

    def wait_intake(self):
        if self.config.section("intake").get("lmtp_listen"):
            wait_port("127.0.0.1", self.lmtp_port, 10, proc=self.intake)
        if self.config.section("intake").get("lmtp_socket"):
            wait_unix(self.config.section("intake")["lmtp_socket"], 10, proc=self.intake)

    def start_gateway(self):
        self.gateway = Daemon(GATEWAY, self.config.path, self.dir, "hato-gateway").start()
        time.sleep(0.05)
        self.gateway.assert_running()
        return self.gateway

    def start(self, gateway=True):
        self.write_config()
        self.init_db()
        self.start_intake()
        if gateway:
            self.start_gateway()
        return self

    def stop_clean(self):
        """Stop the daemons with SIGTERM and require a clean exit."""
        for d in (self.gateway, self.intake):
            if d is not None and d.proc is not None:
                d.stop_clean()

    # traffic
    def submit(self, data, mail_from=None, rcpts=None, target=None):
        return lmtp_submit(target or ("127.0.0.1", self.lmtp_port),
                           mail_from if mail_from is not None else self.submitter,
                           rcpts if rcpts is not None else [self.submit_address], data)

    def submission(self, rcpts, subject=None, body="", **kw):
        kw.setdefault("token", self.token)
        return make_submission(kw.pop("from_addr", self.submitter), kw.pop("token"), rcpts, subject, body,
                               to=self.submit_address, **kw)

    # database views
    def jobs(self):
        return self.db.query("SELECT * FROM jobs ORDER BY id")

    def job(self, job_id):
        rows = self.db.query("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return rows[0] if rows else None

    def deliveries(self, job_id):
        return self.db.query("SELECT * FROM deliveries WHERE job_id = %s ORDER BY id", (job_id,))

    def delivery_log(self, delivery_id):
        return self.db.query("SELECT * FROM delivery_log WHERE delivery_id = %s ORDER BY id", (delivery_id,))

    def wait_job_done(self, job_id, timeout=20.0):
        def done():
            for d in (self.gateway, self.intake):
                if d is not None:
                    d.assert_running()
            j = self.job(job_id)
            return j if j and j["state"] == "done" else None
        try:
            return wait_until(done, timeout, interval=0.1, what="job %d to be done" % job_id)
        except TestFailure as e:
            rows = self.deliveries(job_id) if self.db and self.db.running() else []
            summary = "\n".join("  delivery %s %s state=%s attempts=%s last=%s %s %s" % (
                r["id"], r["address"], r["state"], r["attempts"], r["last_code"], r["last_status"], r["last_text"])
                for r in rows)
            raise TestFailure("%s; job row %r\n%s" % (e, self.job(job_id), summary))

    def _sink_summary(self):
        out = []
        for name, s in self.sinks.items():
            try:
                msgs = s.messages()
            except Exception as e:
                out.append("--- sink %s: %r" % (name, e))
                continue
            out.append("--- sink %s: %d message(s)" % (name, len(msgs)))
            for m in msgs[:30]:
                out.append("  from=%s rcpts=%s" % (m.get("mail_from"), m.get("rcpts")))
        return "\n".join(out)


def addr_of(s):
    """'<x@y>' or 'x@y' -> 'x@y' (quotes in the local part are kept)."""
    s = (s or "").strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    return s


# --------------------------------------------------------------------------
# The runner.

def timeout(seconds):
    """Decorator: the test's alarm, in seconds."""
    def deco(fn):
        fn.hato_timeout = seconds
        return fn
    return deco


def _alarm(signum, frame):
    raise TestTimeout("test timed out")


def _term(signum, frame):
    raise SystemExit("terminated by signal %d" % signum)


def main(namespace, argv=None):
    global _scope
    argv = sys.argv[1:] if argv is None else argv
    tests = [(name, fn) for name, fn in namespace.items()
             if name.startswith("test_") and callable(fn) and getattr(fn, "__module__", None) == namespace.get("__name__")]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    if argv:
        tests = [t for t in tests if any(a in t[0] for a in argv)]
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGHUP, _term)
    passed = failed = 0
    started = time.monotonic()
    for name, fn in tests:
        _scope = _Scope()
        _scope_failed[0] = False
        t0 = time.monotonic()
        print("%s ..." % name, end=" ", flush=True)
        err = None
        try:
            signal.alarm(getattr(fn, "hato_timeout", DEFAULT_TEST_TIMEOUT))
            try:
                fn()
            finally:
                signal.alarm(0)
        except (Exception, TestTimeout) as e:
            err = (e, traceback.format_exc())
        except KeyboardInterrupt:
            _run_cleanups(_scope)
            raise
        diag = []
        if err is not None:
            _scope_failed[0] = True
            for d in _scope.diagnostics:
                try:
                    text = d()
                    if text:
                        diag.append(text)
                except Exception as e:
                    diag.append("(diagnostic failed: %r)" % e)
        signal.alarm(60)  # cleanup is bounded too
        try:
            cleanup_errors = _run_cleanups(_scope)
        except TestTimeout:
            cleanup_errors = ["cleanup timed out"]
        finally:
            signal.alarm(0)
        dt = time.monotonic() - t0
        if err is None and not cleanup_errors:
            passed += 1
            print("ok (%.1fs)" % dt, flush=True)
        else:
            failed += 1
            print("FAIL (%.1fs)" % dt, flush=True)
            if err is not None:
                print(err[1].rstrip())
            for e in cleanup_errors:
                print(e)
            for text in diag:
                print(text)
            sys.stdout.flush()
    print("%d passed, %d failed (%.1fs)" % (passed, failed, time.monotonic() - started), flush=True)
    sys.exit(1 if failed or not tests else 0)
