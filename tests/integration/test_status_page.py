"""The gateway's status page and /metrics.

- The page in headless Chromium (Debian's), driven over the DevTools
  protocol (a websocket client written here with the standard library): with
  a job going out through a slow paced au destination, the job's progress
  and the au destination's queue depth change in the DOM without the page
  being reloaded; a subject with markup stays text; the page fits a phone's
  width; a screenshot is saved under the build tree.
- /metrics parsed by python3-prometheus-client's text parser and by the
  stricter checks below; its counters grow as mail is sent.
- A 421 at au: suspended and counted on /metrics, with its reason on the
  page's data.
- With the job store down, the page's data and /metrics answer from the
  last snapshot with the error, and recover.
- Basic auth: the page, its data and /metrics answer 401 with
  WWW-Authenticate without the credentials, 200 with them; /healthz and the
  one-click unsubscribe stay open; a password file others may read is
  refused at start-up.
"""

import base64
import email
import email.policy
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.parse

import hatotest as H
from hatotest import check, check_eq

CHROMIUM = "/usr/bin/chromium"
OUTPUT = os.path.join(H.BUILD, "test-output", "status_page")
HOSTILE = "<b>bold</b><img src=x onerror=\"document.title='owned'\">"


def status_env(name, messages=1, interval="1s"):
    env = H.Env(name)
    env.relay_sink("au")
    env.relay_sink("default")
    env.pace("au", relay="au", messages=messages, interval=interval, connections=1, per_connection=1000)
    env.route("ezweb.ne.jp", "pace:au")
    env.route("*", "relay:default")
    env.http_port = H.free_port()
    env.config.section("gateway").update({"http_listen": "127.0.0.1:%d" % env.http_port,
                                          "unsubscribe_url": "https://hato.test/u/"})
    return env


def request(env, method, path, body=None, headers=None):
    return H.http_request(env.http_port, method, path, body, headers, timeout=15)


def submit(env, rcpts, subject):
    reply = env.submit(env.submission(rcpts, subject, "本文です。\n")).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply)


# ---- Prometheus text format ----

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def strict_check(text):
    """What the parser forgives: every sample under its own # TYPE, families
    not split, counters named *_total, label values escaped, numbers that
    parse. Returns {(name, frozenset(labels)): value}."""
    types, seen_done, samples, current = {}, set(), {}, None
    check(text.endswith("\n"), "the exposition does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            check(name not in types, "line %d: second # TYPE for %s", n, name)
            check(typ in ("counter", "gauge", "histogram", "summary", "untyped"), "line %d: type %r", n, typ)
            if typ == "counter":
                check(name.endswith("_total"), "line %d: counter %s does not end in _total", n, name)
            if current:
                seen_done.add(current)
            types[name], current = typ, name
            continue
        m = METRIC_LINE.match(line)
        check(m, "line %d does not parse: %r", n, line)
        name = m.group(1)
        family = name
        if types.get(current) == "histogram" and re.sub(r"_(bucket|sum|count)$", "", name) == current:
            family = current
        check(family == current, "line %d: sample %s outside its family's block (%s)", n, name, current)
        labels = {}
        rest = m.group(3) or ""
        while rest:
            lm = LABEL.match(rest)
            check(lm, "line %d: labels do not parse: %r", n, m.group(3))
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        float(m.group(4))
        samples[(name, frozenset(labels.items()))] = float(m.group(4))
    return samples


def scrape(env, headers=None):
    from prometheus_client.parser import text_string_to_metric_families
    status, body, hdrs = request(env, "GET", "/metrics", headers=headers)
    check_eq(status, 200, "GET /metrics")
    check(hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4"), "Content-Type %r", hdrs)
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = strict_check(body)
    return families, samples, body


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


@H.timeout(150)
def test_metrics_parse_and_grow():
    env = status_env("metrics", messages=2, interval="1s")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    families, before, _ = scrape(env)
    for f in ("hato_gateway_deliveries", "hato_gateway_retries", "hato_gateway_suspensions",
              "hato_gateway_bounces", "hato_db_task_seconds", "hato_jobs", "hato_dest_queue",
              "hato_dest_pace_factor", "hato_dest_suspended", "hato_dest_connections",
              "hato_dest_in_flight_messages"):
        check(f in families, "/metrics has no %s family: %s", f, sorted(families))
    check_eq(families["hato_db_task_seconds"].type, "histogram", "type of hato_db_task_seconds")
    check_eq(families["hato_gateway_deliveries"].type, "counter", "type of hato_gateway_deliveries_total")

    au = ["m%02d@ezweb.ne.jp" % i for i in range(12)]
    job = submit(env, au + ["other@example.com"], "メトリクス")
    H.wait_until(lambda: len(env.sinks["au"].messages()) >= 3, 20, what="the first au messages")
    _, during, _ = scrape(env)
    sent_during = sample(during, "hato_gateway_deliveries_total", dest="pace:au", outcome="sent") or 0
    check(sent_during >= 1, "no au delivery counted while sending: %r", sent_during)
    depth = sum(sample(during, "hato_dest_queue", dest="pace:au", state=s) or 0
                for s in ("queued", "leased", "deferred"))
    check(depth >= 1, "au queue depth while sending: %r", depth)
    check_eq(sample(during, "hato_dest_pace_factor", dest="pace:au"), 1.0, "au pace factor")
    check_eq(sample(during, "hato_dest_suspended", dest="pace:au"), 0.0, "au suspended")
    env.wait_job_done(job, 40)
    # The snapshot is at most a second behind.
    def done():
        _, s, _ = scrape(env)
        return (sample(s, "hato_jobs", state="done") or 0) >= 1 and s
    after = H.wait_until(done, 10, what="the job counted as done in /metrics")
    check_eq(sample(after, "hato_gateway_deliveries_total", dest="pace:au", outcome="sent"), 12.0,
             "au sends counted after the job")
    check(sample(after, "hato_gateway_deliveries_total", dest="relay:default", outcome="sent") == 1.0,
          "default relay sends counted")
    check(sent_during < 12, "the scrape during the job already counted everything (%r)", sent_during)
    n_before = sample(before, "hato_db_task_seconds_count", worker="gateway-db") or 0
    n_after = sample(after, "hato_db_task_seconds_count", worker="gateway-db")
    check(n_after and n_after > n_before, "database tasks not counted: %r -> %r", n_before, n_after)
    inf = sample(after, "hato_db_task_seconds_bucket", worker="gateway-db", le="+Inf")
    check_eq(inf, n_after, "the +Inf bucket equals the count")
    check_eq(sum(sample(after, "hato_dest_queue", dest="pace:au", state=s) or 0
                 for s in ("queued", "leased", "deferred")), 0, "au queue depth after the job")
    check(sample(after, "hato_status_db_up") == 1, "hato_status_db_up")
    env.stop_clean()


@H.timeout(150)
def test_metrics_failures():
    """A refusing relay: a deferred attempt counts as a retry, 5xx as
    failures by bounce class; the failures are on the page's data."""
    env = H.Env("metricsfail")
    env.relay_sink("bad", script={"rules": [{"match": "gone*@*", "rcpt": ["550 5.1.1 User unknown"]},
                                            {"match": "later@*", "rcpt": ["451 4.3.0 Try again later", "250 2.1.5 Ok"]}]})
    env.route("*", "relay:bad")
    env.http_port = H.free_port()
    env.config.section("gateway").update({"http_listen": "127.0.0.1:%d" % env.http_port})
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    job = submit(env, ["gone1@example.com", "gone2@example.com", "later@example.com"], "失敗")
    env.wait_job_done(job, 30)

    def failed():
        _, s, _ = scrape(env)
        return (sample(s, "hato_gateway_deliveries_total", dest="relay:bad", outcome="failed") or 0) == 2 and s
    s = H.wait_until(failed, 10, what="two failures counted")
    check_eq(sample(s, "hato_gateway_bounces_total", **{"class": "unknown-user"}), 2.0, "bounces by class")
    check_eq(sample(s, "hato_gateway_retries_total"), 1.0, "retries (the 451 then 250)")
    check_eq(sample(s, "hato_gateway_deliveries_total", dest="relay:bad", outcome="sent"), 1.0, "sent after the retry")
    # The counters move when an outcome is known, the snapshot once it is
    # recorded and read again.
    def logged():
        status, body, _ = request(env, "GET", "/status.json")
        check_eq(status, 200, "GET /status.json")
        fails = [f for f in json.loads(body)["failures"] if f["job"] == job]
        return len(fails) >= 3 and fails
    fails = H.wait_until(logged, 10, interval=0.2, what="the failures on the page's data")
    check_eq(sorted((f["outcome"], f["code"], f["address"]) for f in fails),
             [("deferred", 451, "later@example.com"), ("failed", 550, "gone1@example.com"),
              ("failed", 550, "gone2@example.com")], "recent failures of the job on the page's data")
    check(all(f["dest"] == "relay:bad" for f in fails), "failure rows: %r", fails)
    env.stop_clean()


@H.timeout(120)
def test_suspension_shown():
    """A 421 from au: suspended 1 and one suspension counted on /metrics,
    the suspension and its reason on the page's data, the factor halved."""
    env = status_env("statussusp", messages=5, interval="1s")
    env.pace("au", relay="au", messages=5, interval="1s", connections=1, per_connection=1000, suspend="6s")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    env.sinks["au"].set_script({"rules": [{"match": "*", "mail":
                                ["250 2.1.0 Ok"] * 2 + ["421 4.7.0 Too many mails, slow down"] + ["250 2.1.0 Ok"]}]})
    job = submit(env, ["s%02d@ezweb.ne.jp" % i for i in range(10)], "一時停止")

    def suspended():
        _, s, _ = scrape(env)
        return sample(s, "hato_dest_suspended", dest="pace:au") == 1 and s
    s = H.wait_until(suspended, 20, interval=0.2, what="pace:au suspended on /metrics")
    check_eq(sample(s, "hato_gateway_suspensions_total", dest="pace:au"), 1.0, "suspensions counted")
    check(sample(s, "hato_dest_pace_factor", dest="pace:au") <= 0.5, "the factor was not halved: %r",
          sample(s, "hato_dest_pace_factor", dest="pace:au"))
    live = [d for d in json.loads(request(env, "GET", "/status.json")[1])["dests"] if d["dest"] == "pace:au"]
    check(live and live[0]["suspended_s"] > 0, "the live suspension on the page's data: %r", live)

    def shared():
        data = json.loads(request(env, "GET", "/status.json")[1])
        au = next(d for d in data["dests"] if d["dest"] == "pace:au")
        return au["suspended_until"] and au
    # The shared suspension shows with the next snapshot.
    au = H.wait_until(shared, 5, interval=0.2, what="the shared suspension on the page's data")
    check("421" in au["reason"] and "slow down" in au["reason"], "suspension reason: %r", au)
    env.wait_job_done(job, 60)
    s = H.wait_until(lambda: (lambda x: sample(x, "hato_dest_suspended", dest="pace:au") == 0 and x)(scrape(env)[1]),
                     10, what="the suspension to end on /metrics")
    check_eq(sample(s, "hato_gateway_suspensions_total", dest="pace:au"), 1.0, "suspensions after the job")
    env.stop_clean()


@H.timeout(150)
def test_database_away():
    """With the job store down the page's data and /metrics still answer,
    from the last snapshot, with the error; they recover when it is back."""
    env = status_env("statusdbdown")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    job = submit(env, ["a@example.com"], "データベース")
    env.wait_job_done(job, 20)
    H.wait_until(lambda: any(j["id"] == job for j in json.loads(request(env, "GET", "/status.json")[1])["jobs"]),
                 10, what="the job on the page's data")
    env.db.stop()
    def away():
        status, body, _ = request(env, "GET", "/status.json")
        check_eq(status, 200, "GET /status.json with the database down")
        data = json.loads(body)
        return data["db_error"] and data
    data = H.wait_until(away, 30, interval=0.5, what="the page's data to report the database away")
    H.log("db_error: %s" % data["db_error"])
    check(any(j["id"] == job for j in data["jobs"]), "the last snapshot's jobs are gone while the database is away")
    _, samples, _ = scrape(env)
    check_eq(sample(samples, "hato_status_db_up"), 0.0, "hato_status_db_up with the database down")
    # The loop never waits for the database: /healthz answers at once
    # while the status worker's refreshes fail.
    for _ in range(5):
        t = time.monotonic()
        check_eq(request(env, "GET", "/healthz")[0], 200, "GET /healthz with the database down")
        check(time.monotonic() - t < 1.0, "/healthz took %.2fs with the database down", time.monotonic() - t)
    check("status: refresh failed" in env.gateway.log_text(), "the failed refresh is not logged")
    env.db.start()
    H.wait_until(lambda: json.loads(request(env, "GET", "/status.json")[1])["db_error"] == "", 40, interval=0.5,
                 what="the page's data to recover")
    _, samples, _ = scrape(env)
    check_eq(sample(samples, "hato_status_db_up"), 1.0, "hato_status_db_up once the database is back")
    env.gateway.assert_running()
    env.stop_clean()


# ---- Chromium over the DevTools protocol ----

class DevTools:
    """A DevTools protocol client over one websocket (RFC 6455, client
    side: masked frames out, plain frames in)."""

    def __init__(self, url, timeout=20):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path, u.hostname, u.port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            check(chunk, "DevTools closed the websocket handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        check(head.startswith(b"HTTP/1.1 101"), "websocket handshake: %r", head[:200])
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            check(chunk, "DevTools closed the websocket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self):
        data = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            op = b0 & 0x0f
            if op == 8:
                raise H.TestFailure("DevTools closed the websocket")
            if op in (9, 10):
                continue
            data += payload
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        n = len(payload)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                check("error" not in msg, "%s: %r", method, msg.get("error"))
                return msg["result"]
            self.events.append(msg)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        check("exceptionDetails" not in r, "page script %r: %r", expr, r.get("exceptionDetails"))
        return r["result"].get("value")


def start_chromium(env, url, width=412, height=915):
    check(os.access(CHROMIUM, os.X_OK), "%s is missing: run tools/deps.sh", CHROMIUM)
    profile = os.path.join(env.dir, "chromium-profile")
    os.makedirs(profile)
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            # Nothing but loopback: no proxy, no name resolves, no
            # background fetches of updates, translations or metrics.
            "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
            "--disable-domain-reliability", "--no-default-browser-check", "--metrics-recording-only",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            "--user-data-dir=" + profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            "--window-size=%d,%d" % (width, height), url]
    log_path = os.path.join(env.dir, "chromium.log")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    H._watch("pid", proc.pid)

    def stop():
        # By PID, then whatever is left of its process group (renderers,
        # the GPU and network services).
        H._stop_pid(proc, timeout=5, kill_timeout=5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        H._watch("unpid", proc.pid)
    H.defer(stop)
    H.on_failure(lambda: "--- chromium log (tail)\n%s" % H.tail(log_path, 30))
    port_file = os.path.join(profile, "DevToolsActivePort")
    H.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1, 30,
                 what="Chromium's DevTools port")
    port = int(open(port_file).read().split("\n")[0])

    def page():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", "/json/list")
            targets = json.loads(c.getresponse().read())
        finally:
            c.close()
        return next((t for t in targets if t.get("type") == "page" and t.get("url", "").startswith(url)), None)
    target = H.wait_until(page, 20, what="the status page's DevTools target")
    return proc, DevTools(target["webSocketDebuggerUrl"])


READ_DOM = """(() => {
  const q = (s) => document.querySelector(s);
  const t = (s) => { const e = q(s); return e ? e.textContent : null; };
  return {
    updates: Number(document.body.getAttribute('data-updates') || 0),
    marker: window.__hatoMarker || null,
    sent: t('[data-job="JOB"] dd.sent'), queued: t('[data-job="JOB"] dd.queued'),
    title: t('[data-job="JOB"] .title'),
    markup: q('[data-job="JOB"] .title b, [data-job="JOB"] img, #jobs img') !== null,
    depth: t('[data-dest="pace:au"] dd.depth'),
    rate: t('[data-job="JOB"] dd.rate'), eta: t('[data-job="JOB"] dd.eta'),
    line: q('#svg polyline[data-dest="pace:au"]') !== null,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    doctitle: document.title,
  };
})()"""


def num(s):
    return int(s) if s is not None and s.isdigit() else None


@H.timeout(200)
def test_status_page_in_chromium():
    # 1 message a second: the job takes about twenty seconds at au.
    env = status_env("statuspage", messages=1, interval="1s")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    au = ["p%02d@ezweb.ne.jp" % i for i in range(20)]
    job = submit(env, au, "状況ページ " + HOSTILE)
    url = "http://127.0.0.1:%d/" % env.http_port
    proc, dt = start_chromium(env, url)
    H.defer(dt.close)
    dt.call("Runtime.enable")
    # A phone: 412 CSS pixels wide, touch, mobile viewport rules.
    dt.call("Emulation.setDeviceMetricsOverride", width=412, height=915, deviceScaleFactor=2, mobile=True)
    # Our document, loaded and drawn once (not the blank one before it).
    H.wait_until(lambda: dt.eval("document.readyState === 'complete' && location.href === %s && "
                                 "Number(document.body.getAttribute('data-updates') || 0) >= 1" % json.dumps(url)),
                 20, what="the page to load")
    # A mark a reload would wipe out.
    dt.eval("window.__hatoMarker = 'kept'")
    samples = []

    def progressed():
        s = dt.eval(READ_DOM.replace("JOB", str(job)))
        if num(s["sent"]) is not None:
            samples.append(s)
        sent = sorted({num(x["sent"]) for x in samples})
        depths = sorted({num(x["depth"]) for x in samples if num(x["depth"]) is not None})
        return len(sent) >= 3 and len(depths) >= 3
    H.wait_until(progressed, 60, interval=0.3, what="the job's progress and au's depth to change on the page")
    first, last = samples[0], samples[-1]
    H.log("page samples: %d, sent %s -> %s, depth %s -> %s, updates %d -> %d" % (
        len(samples), first["sent"], last["sent"], first["depth"], last["depth"], first["updates"], last["updates"]))
    check(num(last["sent"]) > num(first["sent"]), "sent did not grow: %r", [s["sent"] for s in samples])
    check(num(last["depth"]) < num(first["depth"]), "au depth did not fall: %r", [s["depth"] for s in samples])
    check(last["updates"] > first["updates"], "the page did not update itself")
    check(all(s["marker"] == "kept" for s in samples), "the page was reloaded (its window state is gone)")
    sent_db = env.db.scalar("SELECT COUNT(*) FROM deliveries WHERE job_id = %s AND state = 'sent'", (job,))
    check(num(last["sent"]) <= sent_db, "the page shows more sent (%s) than the database (%s)", last["sent"], sent_db)
    check(len(env.sinks["au"].messages()) < len(au), "the job finished before the page could be watched")
    # The subject is text, its markup not interpreted.
    check(HOSTILE in (last["title"] or ""), "the subject is not shown as text: %r", last["title"])
    check(not last["markup"] and last["doctitle"] != "owned", "markup of the subject reached the DOM")
    check(last["rate"] and last["eta"], "rate or time left missing: %r", last)
    check(last["overflow"] <= 0, "the page is wider than a phone's screen by %dpx", last["overflow"])

    env.wait_job_done(job, 60)
    H.wait_until(lambda: dt.eval(READ_DOM.replace("JOB", str(job)))["sent"] == str(len(au)), 10,
                 what="the page to show every message sent")
    end = dt.eval(READ_DOM.replace("JOB", str(job)))
    check(end["line"], "no au line on the sends-per-minute chart")
    check_eq(end["marker"], "kept", "window state at the end")
    shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    os.makedirs(OUTPUT, exist_ok=True)
    path = os.path.join(OUTPUT, "status-page.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    with open(path, "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
    H.log("screenshot: %s (%d bytes)" % (path, os.path.getsize(path)))
    env.stop_clean()


# ---- basic auth ----

def auth_env(name, mode=0o600):
    env = status_env(name)
    pw = os.path.join(env.dir, "http.password")
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, b"s3cret pass\n")
    os.close(fd)
    os.chmod(pw, mode)
    env.config.section("gateway").update({"http_user": "ops", "http_password_file": pw})
    return env


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


@H.timeout(120)
def test_basic_auth():
    env = auth_env("statusauth")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    for path in ("/", "/status", "/status.json", "/metrics", "/status.json?x=1"):
        status, _, hdrs = request(env, "GET", path)
        check_eq(status, 401, "GET %s without credentials" % path)
        check(hdrs.get("WWW-Authenticate", "").startswith("Basic realm="), "WWW-Authenticate of %s: %r", path, hdrs)
        for bad in (basic("ops", "wrong"), basic("other", "s3cret pass"), basic("ops", "s3cret pass2"),
                    {"Authorization": "Basic !!!!"}, {"Authorization": "Bearer x"}):
            status, _, _ = request(env, "GET", path, headers=bad)
            check_eq(status, 401, "GET %s with %r" % (path, bad))
    ok = basic("ops", "s3cret pass")
    status, body, hdrs = request(env, "GET", "/", headers=ok)
    check_eq(status, 200, "GET / with credentials")
    check("<title>Hato status</title>" in body and hdrs.get("Content-Type", "").startswith("text/html"),
          "not the status page: %r", hdrs)
    check("default-src 'none'" in hdrs.get("Content-Security-Policy", ""), "no CSP: %r", hdrs)
    status, body, _ = request(env, "GET", "/status.json", headers=ok)
    check_eq(status, 200, "GET /status.json with credentials")
    check("jobs" in json.loads(body), "status.json: %r", body[:200])
    scrape(env, headers=ok)
    status, _, _ = request(env, "POST", "/metrics", headers=ok)
    check_eq(status, 405, "POST /metrics")
    status, _, _ = request(env, "GET", "/healthz")
    check_eq(status, 200, "GET /healthz without credentials")

    # The one-click unsubscribe of a message sent, without credentials.
    job = submit(env, ["leave@example.com"], "認証")
    env.wait_job_done(job, 25)
    msg = email.message_from_bytes(env.sinks["default"].messages()[-1]["data"], policy=email.policy.compat32)
    url = re.search(r"<(https?://[^>]+)>", re.sub(r"\s+", " ", msg["List-Unsubscribe"]))
    check(url, "List-Unsubscribe: %r", msg["List-Unsubscribe"])
    path = urllib.parse.urlsplit(url.group(1)).path
    status, _, _ = request(env, "POST", path, "List-Unsubscribe=One-Click",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    check_eq(status, 200, "one-click POST without credentials")
    check(env.db.scalar("SELECT COUNT(*) FROM suppressions WHERE address = 'leave@example.com'") == 1,
          "the one-click POST did not suppress the address")
    log = env.gateway.log_text()
    check("s3cret" not in log, "the password is in the gateway's log")
    env.stop_clean()


@H.timeout(60)
def test_password_file_others_can_read_is_refused():
    env = auth_env("statusauthmode", mode=0o644)
    env.start(gateway=False)
    r = H.run([H.GATEWAY, "--config", env.config.path], check_rc=False, timeout=20)
    out = r.stdout + r.stderr
    check(r.returncode != 0, "the gateway started with a password file others can read")
    check("http_password_file" in out, "the refusal does not name the key:\n%s", out)
    env.config.section("gateway").pop("http_password_file")
    env.write_config()
    r = H.run([H.GATEWAY, "--config", env.config.path], check_rc=False, timeout=20)
    check(r.returncode != 0 and "go together" in r.stdout + r.stderr,
          "http_user without a password file was not refused:\n%s%s", r.stdout, r.stderr)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
