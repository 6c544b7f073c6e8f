#!/usr/bin/python3
"""Hato's benchmark: each workload run for Hato and for a reference beside
it in the same run, reported as ratios against targets.

Run it through bench/run (which installs what is missing first):

    bench/run                 # default size, about 10 minutes on 2 cores
    bench/run --quick         # about 1-2 minutes
    bench/run --rev HEAD      # build a committed revision (git archive) instead of the work tree
    bench/run --profile       # callgrind profiles of the gateway (W1) and intake (W2), smaller runs

Workloads (each a function in WORKLOADS below; a new one is one function):

  W1 relay throughput: N one-recipient deliveries of one ~2 KB DM over
     three routes (docomo relay, SoftBank relay, default route), each an
     smtp-sink on loopback. Hato: one LMTP submission with the N addresses
     in a CSV attachment; jobs.created_at to MAX(deliveries.done_at).
     Reference: a private Postfix fed by smtp-source with the same message
     to the same addresses, first injection to an empty queue. Ceiling:
     smtp-source straight into smtp-sink.
  W2 intake: time from connect to the 250 reply for one submission of N
     recipients; reference: the same N rows in multi-row INSERTs into a
     scratch table with the same columns, in the same MariaDB.
  W3 latency: one-recipient submissions at 10 a second, submit to arrival
     at a sink (tests/harness/smtpsink.py); reference: the same through
     the private Postfix.
  W4 memory, W6 pacing: not measured yet.
  W5 cost: CPU seconds (user+sys) per 1,000 deliveries in W1: Hato's
     intake, gateway and mariadbd against every process of the private
     Postfix instance.

Everything listens on 127.0.0.1 (MariaDB on a unix socket); every process
started is stopped by PID; every wait is bounded and so is the whole run.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BENCH = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import peers  # noqa: E402
import profiling  # noqa: E402
from peers import BenchError  # noqa: E402

H = None  # tests/harness/hatotest, imported once the build is known

DOMAINS = [  # (route name in Hato, domain, relay name or None for the default route)
    ("docomo", "docomo.ne.jp", "docomo"),
    ("softbank", "i.softbank.jp", "softbank"),
    ("default", "example.com", "default"),
]
LOCAL = "u"          # smtp-source -N puts a sequence number before it: 1u@, 2u@, ...
SUBJECT = "週末限定セールのお知らせ"
DM_LINE = "いつも鳩マートをご利用いただき、誠にありがとうございます。週末限定のセールを開催いたします。"

GATEWAY_W1 = {        # the gateway settings of W1 and W3, stated in the results
    "[limits] connections": 10,
    "[limits] per_connection": 1000,
    "[gateway] claim_batch": 1000,
    "[gateway] poll_interval": "20ms",
    "[gateway] lease": "5m",
    "[log] level": "info",
}


def now():
    return time.time()


def say(*args):
    print(*args, flush=True)


# --------------------------------------------------------------------------
# Build and set-up.

def run_cmd(args, cwd=None, log=None, timeout=900):
    with open(log, "ab") if log else open(os.devnull, "wb") as out:
        r = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                           timeout=timeout)
    if r.returncode != 0:
        tail = ""
        if log:
            with open(log, "rb") as f:
                tail = "\n".join(f.read().decode("utf-8", "replace").splitlines()[-25:])
        raise BenchError("%s exited %d\n%s" % (" ".join(args), r.returncode, tail))


def build(args):
    """Build Hato (Release) in the benchmark's own build directory; returns
    (source dir, build dir, description). For --profile the build has debug
    information too (-g, same optimisation), in a directory of its own."""
    if args.rev:
        rev = subprocess.run(["git", "-C", SOURCE, "rev-parse", "--verify", args.rev + "^{commit}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if rev.returncode != 0:
            raise BenchError("no such revision: %s" % args.rev)
        sha = rev.stdout.decode().strip()
        top = os.path.join(SOURCE, "build-bench-rev", sha[:12])
        src = os.path.join(top, "src")
        if not os.path.exists(os.path.join(src, "CMakeLists.txt")):
            shutil.rmtree(src, ignore_errors=True)
            os.makedirs(src)
            # git archive only reads the repository.
            arch = subprocess.Popen(["git", "-C", SOURCE, "archive", "--format=tar", sha], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", src], stdin=arch.stdout, check=True, timeout=120)
            arch.stdout.close()
            if arch.wait(60) != 0:
                raise BenchError("git archive %s failed" % sha)
        bdir = os.path.join(top, "build")
        what = "revision %s" % sha[:12]
    else:
        src = SOURCE
        bdir = os.path.join(SOURCE, "build-bench")
        desc = subprocess.run(["git", "-C", SOURCE, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL).stdout.decode().strip()
        what = "work tree (%s)" % (desc or "?")
    extra = []
    if args.profile:
        bdir += "-prof"
        extra = ["-DCMAKE_C_FLAGS=-g -fno-omit-frame-pointer"]
        what += ", with -g"
    os.makedirs(bdir, exist_ok=True)
    log = os.path.join(bdir, "bench-build.log")
    if os.path.exists(log):
        os.unlink(log)
    say("== build %s in %s" % (what, os.path.relpath(bdir, SOURCE)))
    t0 = now()
    run_cmd(["cmake", "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release", "-DHATO_WERROR=OFF"] + extra, log=log)
    run_cmd(["cmake", "--build", bdir, "-j%d" % max(1, min(os.cpu_count() or 2, 4))], log=log)
    for b in ("intake/hato-intake", "gateway/hato-gateway", "ctl/hatoctl"):
        if not os.access(os.path.join(bdir, b), os.X_OK):
            raise BenchError("%s was not built" % b)
    say("   built in %.0fs" % (now() - t0))
    return src, bdir, what


def import_harness(src, bdir):
    global H
    os.environ["HATO_SOURCE"] = src
    os.environ["HATO_BUILD"] = bdir
    sys.path.insert(0, os.path.join(src, "tests", "harness"))
    import hatotest
    H = hatotest


def dm_body():
    """A Japanese DM whose outgoing copy is about 2 KB."""
    lines = []
    for i in range(9):
        lines.append("%d. %s" % (i + 1, DM_LINE))
    lines.append("")
    lines.append("配信停止はこちら: https://hato.example/unsub")
    return "\n".join(lines) + "\n"


def addresses(n):
    """n addresses over the three routes, in the form smtp-source -N makes."""
    per = [n // 3 + (1 if k < n % 3 else 0) for k in range(3)]
    out = []
    for k, (_, dom, _) in enumerate(DOMAINS):
        out.extend("%d%s@%s" % (i + 1, LOCAL, dom) for i in range(per[k]))
    return out, per


class Ctx:
    """What the workloads share: the Hato environment, the processes, the
    measured figures and the time budget."""

    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = peers.Procs()
        self.env = None
        self.db_admin = None
        self.figures = {}   # workload -> dict of raw figures
        self.rows = []
        self.notes = []
        self.deadline = time.monotonic() + args.time_limit
        self.dm_bytes = None
        self.gateway_mode = None
        self.loads = {}     # workload -> load average when it started

    def remaining(self):
        return self.deadline - time.monotonic()

    def budget(self, want):
        """A wait bound: want seconds, but never past the run's deadline."""
        r = self.remaining() - 20
        if r <= 5:
            raise BenchError("out of time (--time-limit %ds)" % self.args.time_limit)
        return min(want, r)


def setup_env(ctx):
    args = ctx.args
    say("== private MariaDB and Hato configuration")
    env = H.Env("bench")
    ctx.env = env
    db = env.db
    root = db.root()
    with root.cursor() as cur:
        # Stock MariaDB durability (the harness relaxes it for speed), and a
        # buffer pool that holds the benchmark's tables.
        cur.execute("SET GLOBAL innodb_flush_log_at_trx_commit = %d" % args.db_flush)
        cur.execute("SET GLOBAL innodb_buffer_pool_size = %d" % (args.db_pool_mb << 20))
        time.sleep(0.5)  # the pool grows in the background
        cur.execute("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size, @@innodb_log_file_size,"
                    " @@version")
        flush, pool, logsize, version = cur.fetchone()
    root.close()
    ctx.db_settings = {"version": version, "innodb_flush_log_at_trx_commit": int(flush),
                       "innodb_buffer_pool_size": "%dM" % (int(pool) >> 20),
                       "innodb_log_file_size": "%dM" % (int(logsize) >> 20),
                       "other": "the rest as tests/harness starts it (skip-log-bin, unix socket only)"}
    c = env.config
    c.section("log").update({"level": "info"})
    c.section("gateway").update({"claim_batch": 1000, "poll_interval": "20ms", "lease": "5m"})
    c.section("limits").update({"connections": 10, "per_connection": 1000})
    c.section("retry").update({"intervals": "1s", "max_attempts": 5, "max_age": "1h"})
    for name, dom, relay in DOMAINS:
        env.route(dom if relay != "default" else "*", "relay:%s" % relay)
    return env


def set_relays(ctx, ports, mode):
    """Point the three relays at these ports and (re)start the gateway."""
    env = ctx.env
    if env.gateway is not None and env.gateway.running():
        env.gateway.stop(timeout=30)
    for (name, _, relay), port in zip(DOMAINS, ports):
        env.config.section("relay %s" % relay).update({"host": "127.0.0.1", "port": port, "tls": "none"})
    env.write_config()
    ctx.gateway_mode = mode


def start_gateway(ctx):
    ctx.env.start_gateway()
    time.sleep(0.3)
    ctx.env.gateway.assert_running()


def stop_gateway(ctx):
    if ctx.env.gateway is not None and ctx.env.gateway.running():
        rc = ctx.env.gateway.stop(timeout=30)
        if rc not in (0, None):
            ctx.notes.append("hato-gateway exited %s on SIGTERM" % rc)


def truncate(ctx):
    c = ctx.env.db.root(ctx.env.db.database)
    try:
        with c.cursor() as cur:
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for t in ("delivery_log", "deliveries", "jobs"):
                cur.execute("TRUNCATE TABLE %s" % t)
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
    finally:
        c.close()


def hato_pids(ctx):
    env = ctx.env
    pids = {"mariadbd": env.db.proc.pid}
    if env.intake is not None and env.intake.running():
        pids["hato-intake"] = env.intake.pid
    if env.gateway is not None and env.gateway.running():
        pids["hato-gateway"] = env.gateway.pid
    return pids


def hato_cpu(ctx):
    pids = hato_pids(ctx)
    total, per = peers.cpu_of_pids(list(pids.values()))
    return total, {name: per.get(pid, 0.0) for name, pid in pids.items()}


def submission_bytes(ctx, rcpts=(), csv=None, body=None):
    atts = []
    if csv is not None:
        atts.append(("recipients.csv", "text/csv", csv))
    return ctx.env.submission(list(rcpts), SUBJECT, body or dm_body(), attachments=atts)


def lmtp_time_to_250(ctx, data, timeout):
    """One LMTP transaction; returns (seconds from connect to the reply
    after DATA, the reply, wall time of the connect)."""
    env = ctx.env
    t_wall = now()
    t0 = time.monotonic()
    with H.LMTPClient(("127.0.0.1", env.lmtp_port), timeout) as c:
        if c.greeting.code != 220:
            raise BenchError("LMTP greeting %r" % c.greeting)
        c.lhlo()
        r = c.mail(env.submitter)
        if not r.ok:
            raise BenchError("MAIL refused: %r" % r)
        r = c.rcpt(env.submit_address)
        if not r.ok:
            raise BenchError("RCPT refused: %r" % r)
        replies = c.data(data, 1)
        dt = time.monotonic() - t0
        c.quit()
    return dt, replies[0], t_wall


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


# --------------------------------------------------------------------------
# Preparation: one DM through Hato, to get the outgoing copy that the
# references send.

def prepare_message(ctx):
    from smtpsink import Sink
    env = ctx.env
    sinks = []
    for name, _, _ in DOMAINS:
        s = Sink(port=0, host="127.0.0.1", name=name).start()
        ctx.procs.add("python sink " + name, stopper=s.stop)
        sinks.append(s)
    ctx.py_sinks = sinks
    set_relays(ctx, [s.port for s in sinks], "python-sinks")
    env.init_db()
    if env.intake is None:
        env.start_intake()
    start_gateway(ctx)
    dt, reply, _ = lmtp_time_to_250(ctx, submission_bytes(ctx, ["1%s@%s" % (LOCAL, DOMAINS[0][1])]), 30)
    if reply.code != 250:
        raise BenchError("the first submission was refused: %r" % reply)
    deadline = time.monotonic() + 20
    while not sinks[0].messages():
        if time.monotonic() > deadline:
            raise BenchError("the first DM did not arrive at the docomo sink in 20s; gateway log:\n%s"
                             % H.tail(env.gateway.log_path, 20))
        env.gateway.assert_running()
        time.sleep(0.05)
    data = sinks[0].messages()[0]["data"]
    ctx.dm_bytes = data
    ctx.dm_file = os.path.join(ctx.tmp, "dm.eml")
    # smtp-source -F appends CRLF to each line itself.
    with open(ctx.dm_file, "wb") as f:
        f.write(data.replace(b"\r\n", b"\n"))
    say("   the outgoing DM is %d bytes (Hato's copy, sent as is by smtp-source for the references)" % len(data))
    truncate(ctx)


# --------------------------------------------------------------------------
# W3: latency.

def w3_latency(ctx):
    n = ctx.args.w3_count
    rate = 10.0
    env = ctx.env
    say("== W3 latency: %d one-recipient submissions at %.0f/s" % (n, rate))
    # Hato, with the Python sinks as the three relays.
    if ctx.gateway_mode != "python-sinks":
        set_relays(ctx, [s.port for s in ctx.py_sinks], "python-sinks")
        start_gateway(ctx)
    elif env.gateway is None or not env.gateway.running():
        start_gateway(ctx)
    for s in ctx.py_sinks:
        s.set_script({})
    base = {id(s): len(s.messages()) for s in ctx.py_sinks}
    rcpts = ["lat%d@%s" % (i + 1, DOMAINS[i % 3][1]) for i in range(n)]
    msgs = [submission_bytes(ctx, [r]) for r in rcpts]
    sent = {}
    accept = []
    t_start = time.monotonic()
    bound = ctx.budget(n / rate + 60)
    for i, (r, m) in enumerate(zip(rcpts, msgs)):
        delay = t_start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - t_start > bound:
            break
        dt, reply, t_wall = lmtp_time_to_250(ctx, m, 30)
        if reply.code != 250:
            raise BenchError("W3 submission %d refused: %r" % (i, reply))
        sent[r] = t_wall
        accept.append(dt)
    hato_lat = collect_arrivals(ctx.py_sinks, base, sent, ctx.budget(30))
    # Postfix, relaying to the same Python sinks.
    base = {id(s): len(s.messages()) for s in ctx.py_sinks}
    pf = peers.PostfixInstance(ctx.procs, ctx.tmp, "w3",
                               {DOMAINS[0][1]: ctx.py_sinks[0].port, DOMAINS[1][1]: ctx.py_sinks[1].port},
                               ctx.py_sinks[2].port, concurrency=10)
    pf.start()
    try:
        prcpts = ["plat%d@%s" % (i + 1, DOMAINS[i % 3][1]) for i in range(n)]
        psent = {}
        t_start = time.monotonic()
        for i, r in enumerate(prcpts):
            delay = t_start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if time.monotonic() - t_start > bound:
                break
            t_wall = now()
            smtp_send(pf.port, "dm-team@example.co.jp", r, ctx.dm_bytes)
            psent[r] = t_wall
        pf_lat = collect_arrivals(ctx.py_sinks, base, psent, ctx.budget(30))
    finally:
        ctx.procs.stop(pf.stop)
    f = {
        "submissions": len(sent), "arrived": len(hato_lat),
        "p50_ms": ms(pct(hato_lat, 50)), "p99_ms": ms(pct(hato_lat, 99)), "max_ms": ms(max(hato_lat or [0])),
        "submit_to_250_p50_ms": ms(pct(accept, 50)), "submit_to_250_p99_ms": ms(pct(accept, 99)),
        "postfix_submissions": len(psent), "postfix_arrived": len(pf_lat),
        "postfix_p50_ms": ms(pct(pf_lat, 50)), "postfix_p99_ms": ms(pct(pf_lat, 99)),
        "postfix_max_ms": ms(max(pf_lat or [0])),
    }
    ctx.figures["W3"] = f
    say("   Hato p50 %s ms p99 %s ms (%d/%d arrived; submit->250 p50 %s ms); Postfix p50 %s ms p99 %s ms (%d/%d)"
        % (f["p50_ms"], f["p99_ms"], len(hato_lat), len(sent), f["submit_to_250_p50_ms"],
           f["postfix_p50_ms"], f["postfix_p99_ms"], len(pf_lat), len(psent)))
    note = "%d submissions at 10/s; Hato submit->250 p50 %s ms" % (len(sent), f["submit_to_250_p50_ms"])
    if len(hato_lat) < len(sent):
        note += "; only %d of %d arrived" % (len(hato_lat), len(sent))
    ctx.rows.append(row("W3", "latency p50 (submit -> sink)", "ms", f["p50_ms"], f["postfix_p50_ms"],
                        "Postfix", "<= 50 ms", f["p50_ms"] is not None and f["p50_ms"] <= 50, note, lower=True))
    ctx.rows.append(row("W3", "latency p99 (submit -> sink)", "ms", f["p99_ms"], f["postfix_p99_ms"],
                        "Postfix", "<= 250 ms", f["p99_ms"] is not None and f["p99_ms"] <= 250, "", lower=True))


def ms(v):
    return None if v is None else round(v * 1000, 1)


def smtp_send(port, sender, rcpt, data):
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.test", timeout=30) as s:
        s.sendmail(sender, [rcpt], data)


def collect_arrivals(sinks, base, sent, timeout):
    """Latencies (s) of the recipients in sent {rcpt: submit time}, from the
    sinks' arrival records after base; waits up to timeout for all."""
    deadline = time.monotonic() + timeout
    lat = {}
    while True:
        for s in sinks:
            for m in s.messages()[base[id(s)]:]:
                for r in m["rcpts"]:
                    r = H.addr_of(r)
                    if r in sent and r not in lat:
                        lat[r] = m["t"] - sent[r]
        if len(lat) >= len(sent) or time.monotonic() > deadline:
            return list(lat.values())
        time.sleep(0.1)


# --------------------------------------------------------------------------
# W2: intake of a large list.

W2_ROUNDS = 2


def w2_intake(ctx):
    """Hato's intake and the raw INSERT alternate, W2_ROUNDS times each, on an
    emptied database; the best round of each is reported (the machines are
    noisy), every round is in the JSON."""
    n = ctx.args.w2_n
    env = ctx.env
    say("== W2 intake: one submission with %d recipients in a CSV attachment (best of %d rounds)" % (n, W2_ROUNDS))
    stop_gateway(ctx)   # nothing else touches the database meanwhile
    addrs, _ = addresses(n)
    csv = ("\n".join(addrs) + "\n").encode()
    data = submission_bytes(ctx, (), csv)
    rounds = []
    for i in range(W2_ROUNDS):
        truncate(ctx)
        c0, per0 = hato_cpu(ctx)
        dt, reply, _ = lmtp_time_to_250(ctx, data, ctx.budget(300))
        c1, per1 = hato_cpu(ctx)
        if reply.code != 250:
            raise BenchError("W2 submission refused: %r" % reply)
        job = H.job_id_of(reply)
        stored = int(env.db.scalar("SELECT COUNT(*) FROM deliveries WHERE job_id = %s", (job,)))
        if stored != n:
            raise BenchError("W2: %d of %d deliveries stored (%s)" % (stored, n, reply))
        # Reference: the same rows, multi-row INSERTs into a scratch table.
        ref = raw_insert(ctx, job, n)
        rounds.append({"time_to_250_s": round(dt, 3), "reply": str(reply), "cpu_s": round(c1 - c0, 2),
                       "cpu_by_process_s": {k: round(per1[k] - per0.get(k, 0), 2) for k in per1},
                       "reference": ref})
        say("   round %d: Hato %.2f s to 250 (%d rows/s); raw INSERT %.2f s (%d rows/s)"
            % (i + 1, dt, n / dt, ref["seconds"], ref["rows_per_s"]))
    truncate(ctx)
    dt = min(r["time_to_250_s"] for r in rounds)
    ref = min((r["reference"] for r in rounds), key=lambda r: r["seconds"])
    f = {"recipients": n, "submission_bytes": len(data), "time_to_250_s": dt, "rows_per_s": round(n / dt),
         "reference_seconds": ref["seconds"], "reference_rows_per_s": ref["rows_per_s"], "rounds": rounds}
    ctx.figures["W2"] = f
    ctx.rows.append(row("W2", "intake of %s recipients: time to 250" % fmt_n(n), "s", round(dt, 2),
                        round(ref["seconds"], 2), "multi-row INSERT", "<= 2 s" if n == 100000 else
                        "<= %.2f s (2 s per 100,000)" % (2.0 * n / 100000), dt <= 2.0 * n / 100000,
                        "submission %d KB, CSV attachment; best of %d rounds each (all in the JSON)"
                        % (len(data) // 1024, W2_ROUNDS), lower=True))
    ctx.rows.append(row("W2", "intake rate", "rows/s", round(n / dt), ref["rows_per_s"], "multi-row INSERT",
                        ">= 50% of raw", (n / dt) >= 0.5 * ref["rows_per_s"],
                        "raw: the rows intake wrote, %d a statement, one transaction" % ref["rows_per_statement"]))


def raw_insert(ctx, job_id, n, per_stmt=1000):
    """The reference of W2: the very rows intake wrote for the job (every
    column but the id), as multi-row INSERT statements built before the
    clock starts, into a scratch copy of the deliveries table, in one
    transaction."""
    db = ctx.env.db
    c = db.connect()
    try:
        with c.cursor() as cur:
            cur.execute("SELECT * FROM deliveries WHERE job_id = %s ORDER BY id", (job_id,))
            rows = cur.fetchall()
            cur.execute("DROP TABLE IF EXISTS bench_scratch")
            cur.execute("CREATE TABLE bench_scratch LIKE deliveries")
        if len(rows) != n:
            raise BenchError("W2 reference: %d rows stored for the job, want %d" % (len(rows), n))
        cols = [k for k in rows[0].keys() if k != "id"]
        head = "INSERT INTO bench_scratch (%s) VALUES " % ", ".join("`%s`" % k for k in cols)
        stmts = []
        for i in range(0, len(rows), per_stmt):
            stmts.append(head + ",".join("(%s)" % ",".join(c.escape(r[k]) for k in cols)
                                         for r in rows[i:i + per_stmt]))
        del rows
        c.autocommit(False)
        t0 = time.monotonic()
        with c.cursor() as cur:
            cur.execute("START TRANSACTION")
            for s in stmts:
                cur.execute(s)
        c.commit()
        dt = time.monotonic() - t0
        c.autocommit(True)
        with c.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM bench_scratch")
            got = cur.fetchone()["n"]
            cur.execute("DROP TABLE bench_scratch")
    finally:
        c.close()
    if got != n:
        raise BenchError("raw insert stored %d of %d rows" % (got, n))
    return {"seconds": round(dt, 3), "rows_per_s": round(n / dt), "rows_per_statement": per_stmt,
            "columns": cols, "statement_bytes": sum(len(s) for s in stmts),
            "table": "CREATE TABLE bench_scratch LIKE deliveries (same columns and indexes, no foreign key); "
                     "the rows intake wrote for the job, every column but id"}


# --------------------------------------------------------------------------
# W1: relay throughput (and W5, its CPU cost).

def start_smtp_sinks(ctx, tag):
    sinks = []
    for name, _, _ in DOMAINS:
        s = peers.SmtpSink(ctx.procs, "%s-%s" % (tag, name), ctx.tmp).start()
        sinks.append(s)
    return sinks


def stop_sinks(ctx, sinks):
    for s in sinks:
        s.stop()


def w1_hato(ctx, n):
    env = ctx.env
    say("-- W1 Hato: %s deliveries" % fmt_n(n))
    stop_gateway(ctx)
    truncate(ctx)
    sinks = start_smtp_sinks(ctx, "hato")
    try:
        set_relays(ctx, [s.port for s in sinks], "smtp-sink")
        start_gateway(ctx)
        addrs, per = addresses(n)
        data = submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
        c0, per0 = hato_cpu(ctx)
        dt, reply, t_sub = lmtp_time_to_250(ctx, data, ctx.budget(300))
        if reply.code != 250:
            raise BenchError("W1 submission refused: %r" % reply)
        # Per-thread CPU of the gateway and mariadbd while the gateway sends.
        tpids = {"hato-gateway": env.gateway.pid, "mariadbd": env.db.proc.pid}
        th0 = {k: peers.thread_cpu(p) for k, p in tpids.items()}
        tm0 = time.monotonic()
        t_commit = t_sub + dt   # the 250 comes right after the commit
        db0 = profiling.db_status(env)
        job = H.job_id_of(reply)
        bound = ctx.budget(ctx.args.w1_timeout)
        deadline = time.monotonic() + bound
        conn = env.db.connect()
        done = False
        try:
            while time.monotonic() < deadline:
                env.gateway.assert_running()
                with conn.cursor() as cur:
                    cur.execute("SELECT state FROM jobs WHERE id = %s", (job,))
                    st = cur.fetchone()["state"]
                if st == "done":
                    done = True
                    break
                time.sleep(0.25)
            c1, per1 = hato_cpu(ctx)
            db1 = profiling.db_status(env)
            tw = time.monotonic() - tm0
            threads = {k: peers.thread_delta(th0[k], peers.thread_cpu(p), tw) for k, p in tpids.items()}
            with conn.cursor() as cur:
                cur.execute("SELECT UNIX_TIMESTAMP(MAX(d.done_at)) AS last_done, UNIX_TIMESTAMP(j.created_at) AS created,"
                            " SUM(d.state = 'sent') AS sent, SUM(d.state = 'failed') AS failed,"
                            " SUM(d.state IN ('queued', 'deferred')) AS pending,"
                            " MAX(d.attempts) AS max_attempts"
                            " FROM jobs j JOIN deliveries d ON d.job_id = j.id WHERE j.id = %s", (job,))
                r = cur.fetchone()
        finally:
            conn.close()
        got, t_last = peers.wait_sinks(sinks, n, 2)
        sent = int(r["sent"] or 0)
        last_done = float(r["last_done"]) if r["last_done"] is not None else None
        created = float(r["created"])
        secs = (last_done - t_commit) if done and last_done else now() - t_commit
        secs_created = (last_done - created) if done and last_done else None
        dbd = profiling.status_delta(db0, db1)
        f = {"deliveries": n, "per_route": per, "sent": sent, "failed": int(r["failed"] or 0),
             "pending": int(r["pending"] or 0), "max_attempts": r["max_attempts"], "done": done,
             "seconds": round(secs, 3), "msg_per_s": round(sent / secs, 1) if secs > 0 else None,
             "seconds_from_created_at": round(secs_created, 3) if secs_created else None,
             "msg_per_s_from_created_at": round(sent / secs_created, 1) if secs_created else None,
             "intake_time_to_250_s": round(dt, 3), "sink_count": got,
             "db_counters_per_1000": {k: round(v * 1000.0 / max(1, sent), 1) for k, v in dbd.items()},
             "sink_last_arrival_after_250_s": round(t_last - t_commit, 3) if t_last else None,
             "sink_msg_per_s": round(got / (t_last - t_commit), 1) if t_last and t_last > t_commit else None,
             "record_lag_s": round(last_done - t_last, 3) if t_last and last_done else None,
             "cpu_s": round(c1 - c0, 2), "cpu_by_process_s": {k: round(per1.get(k, 0) - per0.get(k, 0), 2)
                                                               for k in per1},
             "busiest_threads": {k: [{"tid": t, "name": nm, "cpu_s": c, "share_of_wall": sh}
                                     for t, nm, c, sh in v] for k, v in threads.items()},
             "threads_window_s": round(tw, 2),
             "measured": "the job's commit (the 250 reply) to MAX(deliveries.done_at); jobs.created_at is set "
                         "when intake starts writing the job, so the created_at figure also holds the intake's "
                         "insert" if done else "incomplete after %.0fs: sent rows / time since the 250" % bound}
    finally:
        stop_gateway(ctx)
        stop_sinks(ctx, sinks)
    say("   Hato %s msg/s (%d sent in %.1f s%s; intake %.2f s; sinks got %d)"
        % (f["msg_per_s"], sent, secs, "" if done else ", INCOMPLETE", dt, got))
    return f


def w1_postfix(ctx, n):
    say("-- W1 Postfix: %s deliveries" % fmt_n(n))
    sinks = start_smtp_sinks(ctx, "pf")
    pf = peers.PostfixInstance(ctx.procs, ctx.tmp, "w1",
                               {DOMAINS[0][1]: sinks[0].port, DOMAINS[1][1]: sinks[1].port},
                               sinks[2].port, concurrency=ctx.args.pf_concurrency)
    try:
        pf.start()
        _, per = addresses(n)
        sess = ctx.args.source_sessions
        c0, _ = peers.cpu_of_session(pf.master_pid)
        t0 = now()
        srcs = [peers.smtp_source(ctx.procs, pf.port, per[k], sess, ctx.dm_file, "dm-team@example.co.jp",
                                  "%s@%s" % (LOCAL, dom), ctx.tmp, "pf-" + name)
                for k, (name, dom, _) in enumerate(DOMAINS)]
        bound = ctx.budget(ctx.args.w1_timeout)
        got, t_last = peers.wait_sinks(sinks, n, bound)
        t_inj = None
        for p in srcs:
            try:
                p.wait(max(1, bound))
            except subprocess.TimeoutExpired:
                pass
        t_empty = pf.wait_empty(ctx.budget(30)) if got >= n else None
        c1, per1 = peers.cpu_of_session(pf.master_pid)
        nprocs = len(per1)
        logged = pf.log_count("status=sent")
        rcs = [p.returncode for p in srcs]
        for p in srcs:
            ctx.procs.stop(p)
        done = got >= n and t_empty is not None
        t_end = t_empty if done else now()
        secs = t_end - t0
        f = {"deliveries": n, "per_route": per, "sink_count": got, "logged_sent": logged, "done": done,
             "seconds": round(secs, 3), "msg_per_s": round(got / secs, 1) if secs > 0 else None,
             "last_arrival_s": round(t_last - t0, 3) if t_last else None,
             "cpu_s": round(c1 - c0, 2), "processes_seen": nprocs, "smtp_source_exit": rcs,
             "settings": pf.settings(), "injection": "3 x smtp-source -d -N -s %d -F dm.eml" % sess,
             "measured": "first injection to an empty queue" if done else "incomplete"}
    finally:
        ctx.procs.stop(pf.stop)
        stop_sinks(ctx, sinks)
    say("   Postfix %s msg/s (%d in %.1f s%s)" % (f["msg_per_s"], got, secs, "" if done else ", INCOMPLETE"))
    return f


def w1_ceiling(ctx, n):
    say("-- W1 ceiling: smtp-source straight into smtp-sink, %s messages" % fmt_n(n))
    sinks = start_smtp_sinks(ctx, "ceil")
    try:
        _, per = addresses(n)
        sess = ctx.args.source_sessions
        t0 = now()
        srcs = [peers.smtp_source(ctx.procs, sinks[k].port, per[k], sess, ctx.dm_file, "dm-team@example.co.jp",
                                  "%s@%s" % (LOCAL, dom), ctx.tmp, "ceil-" + name)
                for k, (name, dom, _) in enumerate(DOMAINS)]
        got, t_last = peers.wait_sinks(sinks, n, ctx.budget(120), interval=0.005)
        for p in srcs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            ctx.procs.stop(p)
        secs = (t_last or now()) - t0
        f = {"messages": n, "sink_count": got, "seconds": round(secs, 3),
             "msg_per_s": round(got / secs, 1) if secs > 0 else None,
             "injection": "3 x smtp-source -d -N -s %d -F dm.eml, one per sink" % sess}
    finally:
        stop_sinks(ctx, sinks)
    say("   ceiling %s msg/s" % f["msg_per_s"])
    return f


def w1_throughput(ctx):
    n = ctx.args.n
    say("== W1 relay throughput: %s one-recipient deliveries over three routes" % fmt_n(n))
    hato = w1_hato(ctx, n)
    pf = w1_postfix(ctx, n)
    ceil = w1_ceiling(ctx, n)
    ctx.figures["W1"] = {"hato": hato, "postfix": pf, "ceiling": ceil, "gateway_settings": GATEWAY_W1}
    h, p, c = hato["msg_per_s"], pf["msg_per_s"], ceil["msg_per_s"]
    note = ("%s; Hato from the job's commit (250) to MAX(done_at) (%s msg/s from jobs.created_at); the last "
            "message reached its sink %s s after the 250 (%s msg/s at the sinks), its outcome was recorded %s s "
            "after that" % ("complete" if hato["done"] and pf["done"] else "INCOMPLETE: see JSON",
                             fmt_v(hato["msg_per_s_from_created_at"]), fmt_v(hato["sink_last_arrival_after_250_s"]),
                             fmt_v(hato["sink_msg_per_s"]), fmt_v(hato["record_lag_s"])))
    ctx.rows.append(row("W1", "relay throughput, %s deliveries" % fmt_n(n), "msg/s", h, p, "Postfix",
                        ">= 3x Postfix", ratio(h, p) is not None and ratio(h, p) >= 3, note))
    ctx.rows.append(row("W1", "share of the smtp-source -> smtp-sink ceiling", "msg/s", h, c, "ceiling",
                        ">= 50% of ceiling", ratio(h, c) is not None and ratio(h, c) >= 0.5, ""))
    # W5 comes from the same runs.
    hk = hato["cpu_s"] / max(1, hato["sent"]) * 1000
    pk = pf["cpu_s"] / max(1, pf["sink_count"]) * 1000
    ctx.figures["W5"] = {"hato_cpu_s_per_1000": round(hk, 3), "postfix_cpu_s_per_1000": round(pk, 3),
                         "hato_cpu_by_process_s": hato["cpu_by_process_s"], "hato_cpu_s": hato["cpu_s"],
                         "postfix_cpu_s": pf["cpu_s"]}
    byp = ", ".join("%s %.1f" % (k, v) for k, v in sorted(hato["cpu_by_process_s"].items()))
    ctx.rows.append(row("W5", "CPU (user+sys) per 1,000 deliveries in W1", "s", round(hk, 3), round(pk, 3),
                        "Postfix", "<= Postfix", hk <= pk,
                        "Hato from submission to job done: %s s; Postfix: all processes of the instance"
                        % byp, lower=True))


# --------------------------------------------------------------------------
# Not measured yet: each becomes one function.

def vm_hwm_kb(pid):
    """Peak resident set of a process (VmHWM), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def w4_memory(ctx):
    """Peak RSS of intake reading a submission of about 20 MB, and of the
    gateway with 1,000,000 deliveries queued behind a slow paced
    destination (it must stream from the database, never load a job)."""
    n_total = 100000 if ctx.args.quick else 1000000
    mail_mb = 4 if ctx.args.quick else 20
    scope = H._scope = H._Scope()
    try:
        env = H.Env("w4")
        env.relay_sink("slow")
        env.pace("slow", relay="slow", messages=1, interval="1s", connections=1, per_connection=1000)
        env.route("*", "pace:slow")
        env.config.section("log")["level"] = "notice"
        env.config.section("intake")["max_message_size"] = "100M"
        env.start(gateway=False)
        # A CSV whose base64 form makes a mail of about mail_mb MB.
        per = len("w4u0000000@example.com\n")
        n_first = min(n_total, int(mail_mb * 1e6 * 3 / 4 / per))
        say("== W4 memory: intake of a %d MB submission (%d recipients), gateway with %d queued"
            % (mail_mb, n_first, n_total))
        csv = "".join("w4u%07d@example.com\n" % i for i in range(n_first)).encode()
        data = env.submission([], SUBJECT, dm_body(), attachments=[("list.csv", "text/csv", csv)])
        base = vm_hwm_kb(env.intake.pid)
        r = env.submit(data).one()
        if r.code != 250:
            raise BenchError("W4 submission refused: %r" % r)
        intake_peak = vm_hwm_kb(env.intake.pid)
        if n_total > n_first:
            csv = "".join("w4v%07d@example.com\n" % i for i in range(n_total - n_first)).encode()
            r = env.submit(env.submission([], SUBJECT, dm_body(),
                                          attachments=[("list2.csv", "text/csv", csv)])).one()
            if r.code != 250:
                raise BenchError("W4 second submission refused: %r" % r)
        queued = env.db.scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'queued'")
        env.start_gateway()
        t_end = time.monotonic() + (10 if ctx.args.quick else 30)
        while time.monotonic() < t_end:
            env.gateway.assert_running()
            time.sleep(0.5)
        gw_peak = vm_hwm_kb(env.gateway.pid)
        sent = len(env.sinks["slow"].messages())
    finally:
        H._run_cleanups(scope)
    f = {"submission_bytes": len(data), "recipients_in_it": n_first, "intake_hwm_kb_before": base,
         "intake_hwm_kb": intake_peak, "queued": queued, "gateway_hwm_kb": gw_peak, "sent_meanwhile": sent}
    ctx.figures["W4"] = f
    size_mb = len(data) / 1e6
    say("   intake peak %.1f MB for a %.1f MB mail (%.2fx); gateway peak %.1f MB with %d queued (%d sent meanwhile)"
        % (intake_peak / 1024, size_mb, intake_peak * 1024 / len(data), gw_peak / 1024, queued, sent))
    ctx.rows.append(row("W4", "gateway peak RSS, %s deliveries queued behind a 1/s pace" % format(queued, ","),
                        "MB", round(gw_peak / 1024, 1), 64, "target", "<= 64 MB", gw_peak / 1024 <= 64,
                        "%d sent meanwhile" % sent, lower=True))
    ctx.rows.append(row("W4", "intake peak RSS, a %.1f MB submission" % size_mb, "MB", round(intake_peak / 1024, 1),
                        round(3 * size_mb, 1), "3x the mail", "<= 3x the message size",
                        intake_peak * 1024 <= 3 * len(data), "%d recipients; %.0f MB before" % (n_first, base / 1024),
                        lower=True))


def w6_pacing(ctx):
    """The pace of au (20 per 2 s) measured at the receiving sink, with one
    and with three gateways sharing one MariaDB: the worst window against
    the limit, the steady rate against the configured one, and the spread
    of the gaps between sends. The scenario and the measures are those of
    tests/integration/test_pacing.py."""
    import hatotest as H
    sys.path.insert(0, os.path.join(ctx.src, "tests", "integration"))
    import test_pacing as P
    n = 100 if ctx.args.quick else 300
    for gateways in (1, 3):
        say("== W6 pacing: %d au deliveries, 20 per 2 s, %d gateway(s)" % (n, gateways))
        scope = H._scope = H._Scope()
        try:
            env = P.au_env("w6-%d" % gateways, 20, "2s")
            env.config.section("gateway")["lease"] = "30s"
            env.config.section("log")["level"] = "notice"
            env.start(gateway=False)
            for i in range(gateways):
                env.config.section("hato")["node"] = "w6gw%d" % i
                path = env.config.path.replace(".ini", "-gw%d.ini" % i)
                with open(path, "w") as f:
                    f.write(env.config.text())
                H.Daemon(H.GATEWAY, path, env.dir, "hato-gateway-%d" % i).start()
            addrs = ["w6u%03d@ezweb.ne.jp" % i for i in range(n)]
            job = P.submit(env, addrs)
            env.wait_job_done(job, ctx.budget(n / 10.0 + 60))
            sink = env.sinks["au"]
            times = sorted(t for t, _ in sink.mail_times())
            got = P.rcpts_of(sink)
            worst = P.window_max(times, 2.0)
            rate = P.steady_rate(times)
            gaps = sorted(b - a for a, b in zip(times, times[1:]))
            dups = len(got) - len(set(got))
        finally:
            H._run_cleanups(scope)
        f = {"gateways": gateways, "deliveries": n, "sends": len(times), "duplicates": dups,
             "worst_window": worst, "limit": 20, "steady_rate": round(rate, 4), "configured_rate": 10.0,
             "gap_min_ms": ms(gaps[0]), "gap_median_ms": ms(gaps[len(gaps) // 2]), "gap_max_ms": ms(gaps[-1]),
             "gap_p99_ms": ms(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))])}
        ctx.figures["W6-%d" % gateways] = f
        say("   worst window %d of 20, steady rate %.3f/s of 10 (%.1f%%), gaps ms min %s median %s p99 %s max %s, %d duplicates"
            % (worst, rate, rate * 10, f["gap_min_ms"], f["gap_median_ms"], f["gap_p99_ms"], f["gap_max_ms"], dups))
        note = "gaps ms: min %s, median %s, p99 %s, max %s; %d duplicates" % (
            f["gap_min_ms"], f["gap_median_ms"], f["gap_p99_ms"], f["gap_max_ms"], dups)
        ctx.rows.append(row("W6", "pacing, %d gateway%s: windows over the limit" % (gateways, "s" if gateways > 1 else ""),
                            "sends in the worst 2 s", worst, 20, "limit", "0 violations", worst <= 20, note, lower=True))
        ctx.rows.append(row("W6", "pacing, %d gateway%s: steady rate" % (gateways, "s" if gateways > 1 else ""),
                            "msg/s", round(rate, 3), 10.0, "configured", ">= 98%", rate >= 9.8, ""))


WORKLOADS = [
    ("W3", w3_latency),
    ("W2", w2_intake),
    ("W1", w1_throughput),    # W5 is computed from W1's runs
    ("W4", w4_memory),
    ("W6", w6_pacing),
]
ORDER = ["W1", "W2", "W3", "W4", "W5", "W6"]


# --------------------------------------------------------------------------
# The table.

def ratio(h, r):
    if h is None or r in (None, 0):
        return None
    return h / r


def row(wid, name, unit, hato, ref, ref_name, target, met, note, lower=False):
    rt = ratio(hato, ref)
    return {"id": wid, "workload": name, "unit": unit, "hato": hato, "reference": ref, "reference_name": ref_name,
            "ratio": round(rt, 3) if rt is not None else None, "ratio_lower_is_better": lower,
            "target": target, "met": met, "note": note}


def fmt_n(n):
    return "{:,}".format(n)


def fmt_v(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return "{:,.0f}".format(v)
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.3g" % v
    if isinstance(v, int):
        return "{:,}".format(v)
    return str(v)


def fmt_ratio(r):
    if r["ratio"] is None:
        return "-"
    if r["unit"] == "msg/s" and "ceiling" in r["reference_name"] or r["unit"] == "rows/s":
        return "%.0f%%" % (r["ratio"] * 100)
    return "%.2fx" % r["ratio"]


def table(rows):
    out = ["| W | workload | unit | Hato | reference | ref. | Hato/ref. | target | met | note |",
           "|---|---|---|---:|---:|---|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: ORDER.index(r["id"]) if r["id"] in ORDER else 99):
        met = "-" if r["met"] is None else ("met" if r["met"] else "NOT met")
        if r["note"] == "not measured yet":
            met = "not measured yet"
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["id"], r["workload"], r["unit"], fmt_v(r["hato"]), fmt_v(r["reference"]), r["reference_name"],
            fmt_ratio(r), r["target"], met, r["note"]))
    return "\n".join(out)


def machine():
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
    except OSError:
        load = []
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(), "loadavg": load}


def write_results(ctx, started, what, status):
    args = ctx.args
    outdir = args.out
    os.makedirs(outdir, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(outdir, "bench-%s%s" % (stamp, "-quick" if args.quick else ""))
    tbl = table(ctx.rows)
    settings = {
        "size": {"W1 deliveries": args.n, "W2 recipients": args.w2_n, "W3 submissions": args.w3_count},
        "hato gateway (W1, W3)": GATEWAY_W1,
        "relays": "docomo.ne.jp -> [relay docomo], i.softbank.jp -> [relay softbank], * -> [relay default]; "
                  "each an smtp-sink (W1) or tests/harness/smtpsink.py (W3) on 127.0.0.1",
        "postfix": "private instance (own config_directory and queue_directory), inet_interfaces 127.0.0.1, "
                   "transport_maps for the three domains, default_destination_concurrency_limit %d, "
                   "maillog_file in its directory, otherwise Postfix 3.7 defaults" % args.pf_concurrency,
        "smtp-source sessions per route": args.source_sessions,
        "mariadb": getattr(ctx, "db_settings", {}),
    }
    doc = {"started": started.isoformat(timespec="seconds"), "status": status, "hato": what,
           "mode": "quick" if args.quick else "default", "machine": machine(),
           "elapsed_s": round(time.monotonic() - ctx.t0, 1), "settings": settings,
           "rows": ctx.rows, "figures": ctx.figures, "notes": ctx.notes, "load_at_start": ctx.loads,
           "dm_bytes": len(ctx.dm_bytes) if ctx.dm_bytes else None}
    with open(base + ".json.tmp", "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False, default=str)
    os.replace(base + ".json.tmp", base + ".json")
    md = ["# Hato benchmark, %s" % started.strftime("%Y-%m-%d %H:%M:%S"), "",
          "- Hato: %s, Release build" % what,
          "- mode: %s (W1 %s deliveries, W2 %s recipients, W3 %d submissions)" % (
              doc["mode"], fmt_n(args.n), fmt_n(args.w2_n), args.w3_count),
          "- status: %s; elapsed %.0f s" % (status, doc["elapsed_s"]),
          "- machine: %d CPUs (%s), load average at the end %s; when each workload started: %s" % (
              doc["machine"]["cpus"] or 0, doc["machine"]["cpu"], " ".join(doc["machine"]["loadavg"]),
              ", ".join("%s %s" % (k, v[0] if v else "?") for k, v in ctx.loads.items()) or "-"),
          "- the DM: %s bytes as sent (Hato's outgoing copy, replayed by smtp-source for Postfix)" % (
              doc["dm_bytes"],),
          "",
          tbl, "",
          "## Settings", ""]
    for k, v in settings.items():
        md.append("- %s: %s" % (k, json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v))
    if ctx.notes:
        md += ["", "## Notes", ""] + ["- " + n for n in ctx.notes]
    md += ["", "Raw figures: %s" % os.path.basename(base + ".json"), ""]
    with open(base + ".md.tmp", "w") as f:
        f.write("\n".join(md))
    os.replace(base + ".md.tmp", base + ".md")
    return base, tbl


# --------------------------------------------------------------------------
# Profiles (--profile): callgrind on smaller runs.

def profile(ctx):
    return profiling.run(ctx, sys.modules[__name__])


# --------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description="Hato's benchmark against references run beside it.")
    ap.add_argument("--quick", action="store_true", help="small sizes: about 1-2 minutes")
    ap.add_argument("--n", type=int, help="W1 deliveries (default 100,000; --quick 5,000)")
    ap.add_argument("--w2-n", type=int, help="W2 recipients (default 100,000; --quick 20,000)")
    ap.add_argument("--w3-count", type=int, help="W3 submissions at 10/s (default 200; --quick 100)")
    ap.add_argument("--only", help="comma-separated workloads to run, e.g. W1,W3")
    ap.add_argument("--rev", help="benchmark this git revision (extracted with git archive) instead of the work tree")
    ap.add_argument("--time-limit", type=int, help="bound on the whole run in seconds (default 1200; --quick 300)")
    ap.add_argument("--w1-timeout", type=int, help="bound on each W1 run in seconds (default 420; --quick 90)")
    ap.add_argument("--source-sessions", type=int, default=4, help="smtp-source sessions per route (default 4)")
    ap.add_argument("--pf-concurrency", type=int, default=10,
                    help="Postfix default_destination_concurrency_limit (default 10, as Hato's connections)")
    ap.add_argument("--db-flush", type=int, choices=(1, 2), default=1,
                    help="innodb_flush_log_at_trx_commit (default 1, MariaDB's stock setting)")
    ap.add_argument("--db-pool-mb", type=int, default=512, help="innodb_buffer_pool_size in MiB (default 512)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"), help="results directory")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the benchmark: callgrind profiles of hato-gateway (W1) and hato-intake (W2)")
    ap.add_argument("--profile-n", type=int, default=3000, help="deliveries in the profiled W1 (default 3,000)")
    ap.add_argument("--profile-w2-n", type=int, default=20000, help="recipients in the profiled W2 (default 20,000)")
    ap.add_argument("--profile-parts", default="native,batch,due,slowlog,poll,gateway,intake",
                    help="comma-separated parts of --profile to run (default: all): native, batch, due, slowlog, "
                    "poll, gateway, intake")
    ap.add_argument("--profile-slowlog-n", type=int, default=100000,
                    help="deliveries in the W1 run timed statement by statement with the slow log (default 100,000)")
    args = ap.parse_args(argv)
    q = args.quick
    args.n = args.n or (5000 if q else 100000)
    args.w2_n = args.w2_n or (20000 if q else 100000)
    args.w3_count = args.w3_count or (100 if q else 200)
    args.time_limit = args.time_limit or (300 if q else 1200)
    args.w1_timeout = args.w1_timeout or (90 if q else 420)
    if args.profile:
        args.time_limit = max(args.time_limit, 1500)
    for v, name in ((args.n, "--n"), (args.w2_n, "--w2-n"), (args.w3_count, "--w3-count")):
        if not 3 <= v <= 1000000:
            ap.error("%s: between 3 and 1,000,000" % name)
    return args


class Stop(BaseException):
    """A signal or the run's hard time bound: ends the run, not one workload."""


def _on_signal(signum, frame):
    raise Stop("stopped by signal %d" % signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now()
    if os.geteuid() != 0:
        raise SystemExit("bench/run needs root: it runs a private Postfix and smtp-sink (which switch users)")
    src, bdir, what = build(args)
    import_harness(src, bdir)
    tmp = tempfile.mkdtemp(prefix="hato-bench-", dir="/tmp")
    os.chmod(tmp, 0o711)
    ctx = Ctx(args, tmp)
    ctx.t0 = time.monotonic()
    ctx.src = src
    ctx.what = what
    status = "complete"
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # The hard bound: whatever happens, the run ends and cleans up.
    signal.signal(signal.SIGALRM, _on_signal)
    signal.alarm(args.time_limit + 120)
    only = set(x.strip().upper() for x in args.only.split(",")) if args.only else None
    try:
        setup_env(ctx)
        prepare_message(ctx)
        if args.profile:
            return profile(ctx)
        for wid, fn in WORKLOADS:
            if only and wid not in only and not (wid == "W1" and "W5" in only):
                continue
            ctx.loads[wid] = machine()["loadavg"]
            try:
                fn(ctx)
            except Exception as e:
                status = "partial"
                ctx.notes.append("%s failed: %s" % (wid, str(e).splitlines()[0]))
                say("!! %s failed: %s" % (wid, e))
                if "out of time" in str(e):
                    break
    except (KeyboardInterrupt, Stop) as e:
        status = "interrupted (%s)" % (e or "Ctrl-C")
        say("!! %s" % status)
    except Exception as e:
        status = "failed: %s" % e
        traceback.print_exc()
    finally:
        signal.alarm(0)
        say("== stopping everything this run started")
        try:
            ctx.procs.stop_all()
            env = ctx.env
            if env is not None:
                for d in (env.gateway, env.intake):
                    if d is not None:
                        d.stop(timeout=30)
                env.db.cleanup()
                shutil.rmtree(env.dir, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.profile:
        return 0 if status == "complete" else 1
    base, tbl = write_results(ctx, started, what, status)
    say("")
    say(tbl)
    say("")
    say("written: %s.md and %s.json" % (os.path.relpath(base, SOURCE), os.path.relpath(base, SOURCE)))
    return 0 if status == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
