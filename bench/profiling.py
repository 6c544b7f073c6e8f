"""bench/run --profile: where Hato's time goes, on smaller runs.

- hato-gateway under valgrind --tool=callgrind for a W1 run of --profile-n
  deliveries into three smtp-sinks (the intake runs natively);
- hato-intake under callgrind for one W2 submission of --profile-w2-n
  recipients (the gateway is stopped);
- for both, the server side: MariaDB's statement counters (SHOW GLOBAL
  STATUS deltas) and the CPU seconds of mariadbd and of each Hato daemon in
  a native run of the same size, so that the database's share is known.

callgrind_annotate's top functions (self and inclusive, as file:function)
go to bench/results/profile-DATE.txt.
"""

import os
import re
import shutil
import subprocess
import time

import peers
from peers import BenchError

VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
ANNOTATE = shutil.which("callgrind_annotate") or "/usr/bin/callgrind_annotate"

STATUS_KEYS = ("Questions", "Com_stmt_execute", "Com_stmt_prepare", "Com_select", "Com_insert",
               "Com_insert_select", "Com_update", "Com_delete", "Com_commit", "Com_begin", "Com_rollback",
               "Innodb_data_fsyncs", "Bytes_received", "Bytes_sent",
               "Handler_read_key", "Handler_read_next", "Handler_read_rnd_next", "Handler_update",
               "Handler_write")


def db_status(env):
    c = env.db.root()
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS")
            rows = dict(cur.fetchall())
    finally:
        c.close()
    out = {}
    for k in STATUS_KEYS:
        try:
            out[k] = int(rows.get(k, 0))
        except ValueError:
            pass
    return out


def status_delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in STATUS_KEYS}


def callgrind(procs, tag, outdir, binary, config, logdir):
    out = os.path.join(outdir, "callgrind.%s.out" % tag)
    log = open(os.path.join(logdir, "%s-callgrind.log" % tag), "ab")
    try:
        p = procs.popen(tag + " (callgrind)",
                        [VALGRIND, "--tool=callgrind", "--callgrind-out-file=" + out, "--separate-threads=no",
                         binary, "--config", config],
                        stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    return p, out


def annotate(path, inclusive, top=25, strip=None):
    args = [ANNOTATE, "--inclusive=%s" % ("yes" if inclusive else "no"), "--threshold=99", path]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    lines = r.stdout.decode("utf-8", "replace").splitlines()
    # Keep the header totals and the first `top` function lines.
    out, body, seen = [], False, set()
    for line in lines:
        if line.startswith("Ir") or "PROGRAM TOTALS" in line:
            out.append(line)
        if line.startswith("-" * 20) and out:
            body = True
            continue
        if body and line.strip() and ":" in line:
            line = re.sub(r" \[[^\]]*\]$", "", line)
            for pre in strip or ():
                line = line.replace(pre.rstrip("/") + "/", "")
            if line in seen:
                continue
            seen.add(line)
            out.append(line)
            if len(out) > top + 4:
                break
    return "\n".join(out)


def wait_job(env, job, timeout, alive):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        st = env.db.scalar("SELECT state FROM jobs WHERE id = %s", (job,))
        if st == "done":
            return True
        time.sleep(0.5)
    return False


def native_w1(ctx, B, n):
    """A native W1 run of n deliveries: CPU per process and DB counters."""
    env = ctx.env
    B.stop_gateway(ctx)
    B.truncate(ctx)
    sinks = B.start_smtp_sinks(ctx, "prof-native")
    try:
        B.set_relays(ctx, [s.port for s in sinks], "smtp-sink")
        B.start_gateway(ctx)
        addrs, _ = B.addresses(n)
        data = B.submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
        s0 = db_status(env)
        c0, per0 = B.hato_cpu(ctx)
        t0 = time.monotonic()
        dt, reply, _ = B.lmtp_time_to_250(ctx, data, 120)
        s1 = db_status(env)
        job = B.H.job_id_of(reply)
        tp = {"hato-gateway": env.gateway.pid, "mariadbd": env.db.proc.pid}
        th0 = {k: peers.thread_cpu(p) for k, p in tp.items()}
        t1 = time.monotonic()
        ok = wait_job(env, job, ctx.budget(300), env.gateway.assert_running)
        wall = time.monotonic() - t0
        threads = {k: peers.thread_delta(th0[k], peers.thread_cpu(p), time.monotonic() - t1) for k, p in tp.items()}
        c1, per1 = B.hato_cpu(ctx)
        s2 = db_status(env)
    finally:
        B.stop_gateway(ctx)
        B.stop_sinks(ctx, sinks)
    return {"done": ok, "wall_s": round(wall, 2), "intake_s": round(dt, 3), "threads": threads,
            "cpu_s": {k: round(per1.get(k, 0) - per0.get(k, 0), 2) for k in per1},
            "db_intake": status_delta(s0, s1), "db_gateway": status_delta(s1, s2)}


SLOW_RX = re.compile(r"^# Thread_id: (\d+).*?^# Query_time: ([0-9.]+)\s+Lock_time: ([0-9.]+)"
                     r".*?Rows_examined: (\d+).*?^(?!#)(?:SET timestamp=\d+;\n)?(.*?);\n", re.M | re.S)


def normalise(sql):
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "?", sql)
    s = re.sub(r"\b\d+(?:\.\d+)?\b", "?", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\((?:\s*\?\s*,)+\s*\?\s*\)", "(?,...)", s)
    s = re.sub(r"(\([^()]*\))(?:\s*,\s*\([^()]*\))+", r"\1,...", s)
    return s[:150]


def slow_log_summary(path, threads=None):
    """{statement shape: [count, total server seconds]} from a slow log
    written with long_query_time = 0."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}, 0
    agg = {}
    n = 0
    for m in SLOW_RX.finditer(text):
        tid = int(m.group(1))
        if threads is not None and tid not in threads:
            continue
        q = m.group(5)
        if q.startswith("SET timestamp") or q.startswith("SHOW ") or "slow_query_log" in q:
            continue
        key = normalise(q)
        a = agg.setdefault(key, [0, 0.0, tid, 0])
        a[0] += 1
        a[1] += float(m.group(2))
        a[3] += int(m.group(4))
        n += 1
    return agg, n


def native_w1_slowlog(ctx, B, n):
    """W1 of n deliveries with every statement in the slow log: server time
    by statement shape (the log costs some speed itself)."""
    env = ctx.env
    path = os.path.join(env.db.dir, "slow.log")
    B.stop_gateway(ctx)
    B.truncate(ctx)
    sinks = B.start_smtp_sinks(ctx, "prof-slow")
    root = env.db.root()
    try:
        B.set_relays(ctx, [s.port for s in sinks], "smtp-sink")
        # long_query_time is copied into a session when it connects: set it
        # before the gateway connects (the intake's connection keeps 10 s).
        with root.cursor() as cur:
            cur.execute("SET GLOBAL slow_query_log_file = %s", (path,))
            cur.execute("SET GLOBAL long_query_time = 0")
            cur.execute("SET GLOBAL log_slow_verbosity = ''")
            cur.execute("SET GLOBAL slow_query_log = 1")
        B.start_gateway(ctx)
        addrs, _ = B.addresses(n)
        data = B.submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
        dt, reply, _ = B.lmtp_time_to_250(ctx, data, 120)
        job = B.H.job_id_of(reply)
        t0 = time.monotonic()
        ok = wait_job(env, job, ctx.budget(300), env.gateway.assert_running)
        wall = time.monotonic() - t0
        with root.cursor() as cur:
            cur.execute("SET GLOBAL slow_query_log = 0")
            cur.execute("SET GLOBAL long_query_time = 10")
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (env.db.user,))
    finally:
        root.close()
        B.stop_gateway(ctx)
        B.stop_sinks(ctx, sinks)
    agg, count = slow_log_summary(path)
    # The gateway's connection is the thread with the most statements
    # (the other application connection is the status poll of this run).
    by_thread = {}
    for key, (c, t, tid, _) in agg.items():
        by_thread[tid] = by_thread.get(tid, 0) + c
    gw_tid = max(by_thread, key=by_thread.get) if by_thread else None
    agg = {k: v for k, v in agg.items() if v[2] == gw_tid}
    return {"done": ok, "wall_s": wall, "statements": sum(v[0] for v in agg.values()),
            "rows_examined": sum(v[3] for v in agg.values()),
            "server_s": sum(v[1] for v in agg.values()), "shapes": agg}


def w3_poll_experiment(ctx, B, polls=("100ms", "10ms"), count=50):
    """W3's latency with the gateway's poll_interval changed (configuration
    only): how much of it is the wait for the next poll."""
    out = {}
    env = ctx.env
    saved = env.config.section("gateway")["poll_interval"]
    try:
        for poll in polls:
            env.config.section("gateway")["poll_interval"] = poll
            B.stop_gateway(ctx)
            B.set_relays(ctx, [s.port for s in ctx.py_sinks], "python-sinks")
            B.start_gateway(ctx)
            base = {id(s): len(s.messages()) for s in ctx.py_sinks}
            rcpts = ["poll%s-%d@%s" % (poll, i, B.DOMAINS[i % 3][1]) for i in range(count)]
            msgs = [B.submission_bytes(ctx, [r]) for r in rcpts]
            sent = {}
            t_start = time.monotonic()
            for i, (r, m) in enumerate(zip(rcpts, msgs)):
                delay = t_start + i / 10.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _, reply, t_wall = B.lmtp_time_to_250(ctx, m, 30)
                sent[r] = t_wall
            lat = B.collect_arrivals(ctx.py_sinks, base, sent, 30)
            out[poll] = {"n": len(lat), "min_ms": B.ms(min(lat)), "p10_ms": B.ms(B.pct(lat, 10)),
                         "p50_ms": B.ms(B.pct(lat, 50)), "p90_ms": B.ms(B.pct(lat, 90)),
                         "p99_ms": B.ms(B.pct(lat, 99)), "max_ms": B.ms(max(lat))}
            say("   poll_interval %s: %s" % (poll, out[poll]))
    finally:
        env.config.section("gateway")["poll_interval"] = saved
        B.stop_gateway(ctx)
    return out


BINDS_C = r"""
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <mysql.h>
#define MAXP %d
struct binds { MYSQL_BIND b[MAXP]; unsigned long len[MAXP]; my_bool null[MAXP]; unsigned n; };
static void use(struct binds *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
int main(void) {
	struct timespec a, b;
	int rounds = 20000;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < rounds; i++) { struct binds p = { .n = 0 }; use(&p); }
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / rounds;
	printf("%%zu %%zu %%.0f\n", sizeof(MYSQL_BIND), sizeof(struct binds), ns);
	return 0;
}
"""


def binds_cost(src, tmp):
    """sizeof(struct binds) in sql/store.c and what zeroing one costs here:
    (sizeof MYSQL_BIND, sizeof struct binds, ns per `struct binds p = { .n = 0 }`)."""
    try:
        with open(os.path.join(src, "sql", "store.c")) as f:
            maxp = int(re.search(r"#define MAXP (\d+)", f.read()).group(1))
        cflags = subprocess.run(["pkg-config", "--cflags", "libmariadb"], stdout=subprocess.PIPE,
                                check=True).stdout.decode().split()
        c = os.path.join(tmp, "binds.c")
        exe = os.path.join(tmp, "binds")
        with open(c, "w") as f:
            f.write(BINDS_C % maxp)
        subprocess.run(["cc", "-O2", "-o", exe, c] + cflags, check=True, timeout=60)
        out = subprocess.run([exe], stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode().split()
        return maxp, int(out[0]), int(out[1]), float(out[2])
    except Exception as e:  # a measurement that cannot be made is reported as such
        return None, None, None, str(e)


def due_dests_cost(ctx, B, extra_rows):
    """The time and rows read of the gateway's SQL_DUE_DESTS query (run on
    every claim, busy or idle) at the table's present size, then after
    extra_rows more finished deliveries are added."""
    env = ctx.env
    queries = {
        "as the gateway runs it": "SELECT dest, MIN(next_attempt) AS due FROM deliveries GROUP BY dest"
                                  " HAVING due <= NOW(6) LIMIT 64",
        "with WHERE next_attempt <= NOW(6) instead of HAVING": "SELECT dest, MIN(next_attempt) AS due FROM deliveries"
                                  " WHERE next_attempt <= NOW(6) GROUP BY dest LIMIT 64",
        "one MIN() index dive per known destination": " UNION ALL ".join(
            "SELECT '%s', MIN(next_attempt) FROM deliveries WHERE dest = '%s' AND next_attempt IS NOT NULL"
            " HAVING MIN(next_attempt) <= NOW(6)" % (d, d)
            for d in ("relay:docomo", "relay:softbank", "relay:default")),
    }

    def measure(label):
        res = []
        c = env.db.root(env.db.database)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM deliveries")
                rows = cur.fetchone()[0]
                for qname, q in queries.items():
                    cur.execute("EXPLAIN " + q)
                    plan = " | ".join("%s key=%s rows=%s extra=%s" % (r[3], r[5], r[8], r[9]) for r in cur.fetchall())
                    cur.execute(q)
                    answer = sorted((r[0], str(r[1])) for r in cur.fetchall())
                    cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
                    h0 = dict((k, int(v)) for k, v in cur.fetchall())
                    t0 = time.monotonic()
                    k = 20
                    for _ in range(k):
                        cur.execute(q)
                        cur.fetchall()
                    dt = (time.monotonic() - t0) / k
                    cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
                    h1 = dict((kk, int(v)) for kk, v in cur.fetchall())
                    reads = sum(h1[x] - h0.get(x, 0) for x in h1) / k
                    res.append({"label": label, "query": qname, "table_rows": rows, "ms_per_query": round(dt * 1000, 2),
                                "handler_reads_per_query": round(reads), "plan": plan, "answer": answer})
        finally:
            c.close()
        return res

    out = measure("after the native run")
    # More finished deliveries, as a table with some history holds.
    B.stop_gateway(ctx)
    addrs = ["hist%d@%s" % (i, B.DOMAINS[i % 3][1]) for i in range(extra_rows)]
    data = B.submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
    B.lmtp_time_to_250(ctx, data, 300)
    c = env.db.root(env.db.database)
    try:
        with c.cursor() as cur:
            cur.execute("UPDATE deliveries SET state = 'sent', next_attempt = NULL, done_at = NOW(6)"
                        " WHERE state = 'queued'")
            cur.execute("UPDATE jobs SET state = 'done'")
    finally:
        c.close()
    # Some due work too, so that both forms have something to find.
    c = env.db.root(env.db.database)
    try:
        with c.cursor() as cur:
            cur.execute("UPDATE deliveries SET state = 'queued', next_attempt = NOW(6) - INTERVAL 1 SECOND,"
                        " done_at = NULL ORDER BY id DESC LIMIT 300")
    finally:
        c.close()
    out += measure("+%d finished, 300 due, before purge" % extra_rows)
    # InnoDB keeps delete-marked index entries of updated rows until purge
    # has run; wait for it (MariaDB 10.5+) and measure again.
    c = env.db.root(env.db.database)
    try:
        with c.cursor() as cur:
            t0 = time.monotonic()
            cur.execute("SET GLOBAL innodb_max_purge_lag_wait = 0")
            purge_s = time.monotonic() - t0
    finally:
        c.close()
    out += measure("same after purge (waited %.1f s)" % purge_s)
    return out


def batch_alternatives(ctx, B, job_rows=None):
    """What the gateway's per-delivery statements would cost batched, on the
    same tables (the finished rows of the last native run, put back into a
    leased state): server-side cost per delivery of
      - the lease UPDATE as the gateway writes it (next_attempt moves, so
        two secondary indexes change), 100 ids a statement;
      - the same without moving next_attempt (no indexed column changes);
      - recording 'sent' for 256 deliveries as one UPDATE ... WHERE id IN
        plus one multi-row INSERT INTO delivery_log, one commit."""
    env = ctx.env
    c = env.db.connect()
    out = {}
    try:
        with c.cursor() as cur:
            cur.execute("SELECT id, job_id, attempts, dest FROM deliveries ORDER BY id LIMIT 20000")
            rows = cur.fetchall()
        if not rows:
            return {}
        ids = [r["id"] for r in rows]
        idlist = lambda chunk: ",".join(str(i) for i in chunk)

        def reset():
            with c.cursor() as cur:
                cur.execute("UPDATE deliveries SET state = 'queued', next_attempt = NOW(6), lease_owner = NULL,"
                            " lease_until = NULL, done_at = NULL WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))

        def timed(stmts_for_chunk, chunk, label):
            reset()
            t0 = time.monotonic()
            with c.cursor() as cur:
                for i in range(0, len(ids), chunk):
                    part = rows[i:i + chunk]
                    cur.execute("START TRANSACTION")
                    for st in stmts_for_chunk(part):
                        cur.execute(st)
                    cur.execute("COMMIT")
            dt = time.monotonic() - t0
            out[label] = round(dt / len(ids) * 1e6, 1)

        timed(lambda part: ["UPDATE deliveries SET lease_owner = 'bench', lease_until = NOW(6) + INTERVAL 5 MINUTE,"
                            " next_attempt = NOW(6) + INTERVAL 5 MINUTE WHERE id IN (%s)"
                            % idlist(r["id"] for r in part)], 100,
              "lease, as the gateway does (next_attempt moves), 100 ids a statement")
        timed(lambda part: ["UPDATE deliveries SET lease_owner = 'bench', lease_until = NOW(6) + INTERVAL 5 MINUTE"
                            " WHERE id IN (%s)" % idlist(r["id"] for r in part)], 100,
              "lease without moving next_attempt, 100 ids a statement")

        def record(part):
            upd = ("UPDATE deliveries SET state = 'sent', attempts = attempts + 1, next_attempt = NULL,"
                   " lease_owner = NULL, lease_until = NULL, last_code = 250, last_status = '2.0.0',"
                   " last_text = '2.0.0 Ok: queued', updated_at = NOW(6), done_at = NOW(6)"
                   " WHERE id IN (%s)" % idlist(r["id"] for r in part))
            vals = ",".join("(%d,%d,NOW(6),%d,'sent','dot',250,'2.0.0','2.0.0 Ok: queued',%s,'127.0.0.1','bench')"
                            % (r["id"], r["job_id"], r["attempts"] + 1, c.escape(r["dest"])) for r in part)
            ins = ("INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, code, status,"
                   " text, destination, host, gateway) VALUES " + vals)
            return [upd, ins]
        def record_rows(part):
            out = []
            for r in part:
                out.append("UPDATE deliveries SET state = 'sent', attempts = attempts + 1, next_attempt = NULL,"
                           " lease_owner = NULL, lease_until = NULL, last_code = 250, last_status = '2.0.0',"
                           " last_text = '2.0.0 Ok: queued', updated_at = NOW(6), done_at = NOW(6)"
                           " WHERE id = %d" % r["id"])
                out.append("INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, code,"
                           " status, text, destination, host, gateway) SELECT %d, %d, NOW(6), attempts, 'sent',"
                           " 'dot', 250, '2.0.0', '2.0.0 Ok: queued', %s, '127.0.0.1', 'bench'"
                           " FROM deliveries WHERE id = %d" % (r["id"], r["job_id"], c.escape(r["dest"]), r["id"]))
            return out
        timed(record_rows, 256, "record 'sent' per row as the gateway does (UPDATE + INSERT ... SELECT a "
                                "delivery), 256 a transaction, same client")
        timed(record, 256, "record 'sent': one UPDATE ... IN (256 ids) + one multi-row INSERT INTO delivery_log")
        with c.cursor() as cur:
            cur.execute("DELETE FROM delivery_log WHERE gateway = 'bench'")
            cur.execute("UPDATE deliveries SET state = 'sent', next_attempt = NULL, lease_owner = NULL,"
                        " lease_until = NULL, done_at = NOW(6) WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
        out["rows"] = len(ids)
    finally:
        c.close()
    return out


def run(ctx, B):
    env = ctx.env
    args = ctx.args
    if not os.access(VALGRIND, os.X_OK):
        raise BenchError("valgrind is not installed (bench/run --profile installs it)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    strips = [ctx.src, os.path.relpath(ctx.src)]
    # The daemons stay root here: callgrind creates its output file at
    # start and writes it at exit, after a privilege drop could not.
    env.config.section("hato")["user"] = "root"
    env.write_config()
    pdir = os.path.join(ctx.tmp, "profiles")
    os.makedirs(pdir)
    os.chmod(pdir, 0o777)  # the daemons write their profile after dropping root
    report = ["# Hato profile, %s" % time.strftime("%Y-%m-%d %H:%M:%S"), "", "Hato: %s, Release build" % ctx.what, "",
              "valgrind --tool=callgrind (perf has no hardware counters on this machine).", ""]
    n = args.profile_n
    parts = set(args.profile_parts.split(","))
    gw_out = it_out = ""

    # 1. A native W1 run: CPU split, busiest threads, statements per delivery.
    nn = max(20000, n)
    if "native" in parts:
        report += native_section(ctx, B, nn)

    if "batch" in parts:
        report += batch_section(ctx, B)
    if "due" in parts:
        report += due_section(ctx, B)
    if "slowlog" in parts:
        report += slowlog_section(ctx, B, args.profile_slowlog_n)
    if "poll" in parts:
        report += poll_section(ctx, B, args.profile_slowlog_n if "slowlog" in parts else 0)
    if "gateway" in parts:
        gw_out, sect = gateway_section(ctx, B, pdir, n, strips)
        report += sect
    if "intake" in parts:
        it_out, sect = intake_section(ctx, B, pdir, args.profile_w2_n, strips)
        report += sect
    return write_report(ctx, report, stamp, gw_out, it_out)


def native_section(ctx, B, nn):
    report = []
    say("== native W1, %d deliveries: CPU by process and thread, MariaDB counters" % nn)
    nat = native_w1(ctx, B, nn)
    report += ["## Native W1 run, %d deliveries (gateway settings as in W1)" % nn, "",
               "wall %.2f s from submission to job done (intake %.3f s); CPU seconds: %s" % (
                   nat["wall_s"], nat["intake_s"], ", ".join("%s %.2f" % kv for kv in sorted(nat["cpu_s"].items()))),
               "", "busiest threads while the gateway sent (CPU s, share of the wall time):"]
    for proc, rows in nat["threads"].items():
        report.append("    %s: %s" % (proc, "; ".join("tid %d (%s) %.2f s %.0f%%" % (t, nm, c, 100 * (sh or 0))
                                                 for t, nm, c, sh in rows)))
    report += ["", "MariaDB counters per 1,000 deliveries (gateway phase, after the 250):", ""]
    for k, v in nat["db_gateway"].items():
        report.append("    %-24s %10.1f" % (k, v * 1000.0 / nn))
    report += ["", "MariaDB counters for the intake of the %d-recipient list:" % nn, ""]
    for k, v in nat["db_intake"].items():
        report.append("    %-24s %10d" % (k, v))
    report.append("")

    return report


def batch_section(ctx, B):
    # Batched forms of the gateway's statements, on the same tables.
    report = []
    say("== the gateway's statements batched (server-side cost per delivery)")
    ba = batch_alternatives(ctx, B)
    report += ["## The gateway's per-delivery statements done in batches (wall time of the statements from a "
               "client on the same socket, per delivery, %s rows; compare with the per-statement server "
               "times in the slow-log section below)" % ba.get("rows"), ""]
    for k, v in ba.items():
        if k != "rows":
            report.append("    %7.1f us  %s" % (v, k))
    report.append("")

    return report


def due_section(ctx, B):
    # The claim's destination query against the table's size.
    report = []
    say("== cost of the due-destinations query against the table size")
    dd = due_dests_cost(ctx, B, 100000)
    report += ["## The due-destinations query (sql/store.c SQL_DUE_DESTS in store_due_dests, run on every claim, "
               "busy or idle), against the table size (finished rows keep next_attempt NULL in deliveries_dest_due)", ""]
    for m in dd:
        report.append("    %-46s %-52s table rows %7d: %7.2f ms a query, %6d handler reads; plan: %s; answer: %s" % (
            m["label"], m["query"], m["table_rows"], m["ms_per_query"], m["handler_reads_per_query"], m["plan"],
            m["answer"]))
    report.append("")
    B.truncate(ctx)

    return report


def slowlog_section(ctx, B, sn):
    # The gateway's statements, timed by the server.
    report = []
    say("== W1 of %d deliveries with MariaDB's slow log at long_query_time = 0" % sn)
    sl = native_w1_slowlog(ctx, B, sn)
    report += ["## Server time of the gateway's statements, W1 of %d deliveries (slow log on)" % sn, "",
               "%d statements on the gateway's connection in %.2f s of wall time; the server spent %.2f s "
               "executing them (%.0f%% of the wall time), %.1f statements and %.0f us of server time per delivery." % (
                   sl["statements"], sl["wall_s"], sl["server_s"], 100 * sl["server_s"] / max(sl["wall_s"], 1e-9),
                   sl["statements"] / sn, 1e6 * sl["server_s"] / sn), "",
               "    %8s %8s %9s %9s %10s  %s" % ("count", "per dlv", "server s", "us each", "rows exam.", "statement"),
               ""]
    for key, (c, t, _, rx) in sorted(sl["shapes"].items(), key=lambda kv: -kv[1][1])[:15]:
        report.append("    %8d %8.3f %9.3f %9.1f %10d  %s" % (c, c / sn, t, 1e6 * t / c, rx, key))
    report.append("")

    return report


def poll_section(ctx, B, sn):
    # W3: the poll interval's part in the latency, on the table the
    # slow-log run left (its deliveries all finished) and on an empty one.
    report = ["## W3 latency against the gateway's poll_interval (50 submissions at 10/s each)", ""]
    labels = ("with %d finished deliveries in the table" % sn,) if sn else ()
    for label in labels + ("on an empty table",):
        if label.startswith("on an empty"):
            B.truncate(ctx)
        say("== W3 latency with poll_interval 100ms and 10ms (configuration only), %s" % label)
        pe = w3_poll_experiment(ctx, B)
        for poll, f in pe.items():
            report.append("    %-42s poll_interval %-6s %s" % (label, poll, ", ".join("%s %s" % kv for kv in f.items())))
    report.append("")

    return report


def gateway_section(ctx, B, pdir, n, strips):
    # The gateway under callgrind.
    env = ctx.env
    report = []
    say("== hato-gateway under callgrind, W1 with %d deliveries" % n)
    B.stop_gateway(ctx)
    B.truncate(ctx)
    sinks = B.start_smtp_sinks(ctx, "prof")
    gw = None
    try:
        B.set_relays(ctx, [s.port for s in sinks], "smtp-sink")
        gw, gw_out = callgrind(ctx.procs, "hato-gateway", pdir, B.H.GATEWAY, env.config.path, ctx.tmp)
        time.sleep(3)  # valgrind start-up
        if gw.poll() is not None:
            raise BenchError("hato-gateway under callgrind exited %s" % gw.returncode)
        addrs, _ = B.addresses(n)
        data = B.submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
        t0 = time.monotonic()
        dt, reply, _ = B.lmtp_time_to_250(ctx, data, 120)
        job = B.H.job_id_of(reply)

        def alive():
            if gw.poll() is not None:
                raise BenchError("hato-gateway under callgrind exited %s" % gw.returncode)
        ok = wait_job(env, job, ctx.budget(900), alive)
        wall = time.monotonic() - t0
        got = peers.sinks_total(sinks)
        gw.send_signal(15)
        gw.wait(120)
    finally:
        if gw is not None:
            ctx.procs.stop(gw)
        B.stop_sinks(ctx, sinks)
    say("   %s in %.0f s under callgrind (sinks got %d)" % ("done" if ok else "NOT done", wall, got))
    report += ["## hato-gateway, W1 with %d deliveries (%s in %.0f s under callgrind)" % (
        n, "done" if ok else "not done", wall), "", "### self cost", "", annotate(gw_out, False, strip=strips), "",
        "### inclusive cost", "", annotate(gw_out, True, 40, strip=strips), ""]
    return gw_out, report


def intake_section(ctx, B, pdir, m, strips):
    # The intake under callgrind.
    env = ctx.env
    report = []
    say("== hato-intake under callgrind, W2 with %d recipients" % m)
    B.truncate(ctx)
    env.intake.stop(timeout=30)
    it = None
    try:
        it, it_out = callgrind(ctx.procs, "hato-intake", pdir, B.H.INTAKE, env.config.path, ctx.tmp)
        peers.wait_port(env.lmtp_port, 60, it)
        addrs, _ = B.addresses(m)
        data = B.submission_bytes(ctx, (), ("\n".join(addrs) + "\n").encode())
        s0 = db_status(env)
        dt, reply, _ = B.lmtp_time_to_250(ctx, data, ctx.budget(600))
        s1 = db_status(env)
        it.send_signal(15)
        it.wait(120)
    finally:
        if it is not None:
            ctx.procs.stop(it)
    say("   250 after %.1f s under callgrind: %s" % (dt, reply))
    report += ["## hato-intake, one submission of %d recipients (%.1f s to 250 under callgrind)" % (m, dt), "",
               "MariaDB counters for it:", ""]
    for k, v in status_delta(s0, s1).items():
        report.append("    %-24s %10d" % (k, v))
    report += ["", "### self cost", "", annotate(it_out, False, strip=strips), "",
               "### inclusive cost", "", annotate(it_out, True, 40, strip=strips), ""]
    return it_out, report


def write_report(ctx, report, stamp, gw_out, it_out):
    args = ctx.args
    maxp, bsz, sz, ns = binds_cost(ctx.src, ctx.tmp)
    if maxp:
        report += ["## Zeroing `struct binds` (sql/store.c)", "",
                   "MAXP %d: sizeof(MYSQL_BIND) %d, sizeof(struct binds) %d bytes; `struct binds p = { .n = 0 }` "
                   "zero-fills all of it: %.0f ns each here (callgrind counts the rep stosb of that memset once "
                   "a byte, so its share of Ir overstates its share of time)." % (maxp, bsz, sz, ns), ""]
    else:
        report += ["(struct binds cost not measured: %s)" % ns, ""]

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "profile-%s.txt" % stamp)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(report) + "\n")
    os.replace(path + ".tmp", path)
    for tag, src in (("gateway", gw_out), ("intake", it_out)):
        if src and os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, "callgrind-%s-%s.out" % (tag, stamp)))
    say("written: %s (and the callgrind.out files beside it)" % path)
    return 0


def say(*a):
    print(*a, flush=True)
