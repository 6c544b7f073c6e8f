"""Security checks: no open relay, root dropped after binding and refused
without a service user, secrets readable by others refused, TLS
verification never silently off, the HTTP listener loopback-only unless
said otherwise (refused with file and line).

(Every SQL statement prepared: test_sql_prepared.py; the unsubscribe
endpoint taking only valid tokens: test_unsubscribe.py; forged bounces:
test_bounces.py.)"""

import os
import re
import socket
import subprocess

import hatotest as H
from hatotest import check, check_eq

ROOT = os.geteuid() == 0


def refused_start(binary, env, want, what):
    """binary --config refuses to start, and says want (a regex)."""
    env.write_config()
    try:
        r = H.run([binary, "--config", env.config.path], check_rc=False, timeout=20)
    except subprocess.TimeoutExpired:
        raise H.TestFailure("%s started (and ran) with %s" % (os.path.basename(binary), what))
    out = r.stdout + r.stderr
    check(r.returncode != 0, "%s exited 0 with %s:\n%s", binary, what, out)
    check(re.search(want, out), "%s with %s: the refusal does not say %r:\n%s",
          os.path.basename(binary), what, want, out)
    return out


@H.timeout(60)
def test_no_open_relay():
    env = H.Env("relay")
    env.start(gateway=False)
    outside = [
        "victim@example.com",                        # another domain
        "victim@evil.example",
        "dm@hato.test@evil.example",                 # two @
        "@relay.example:victim@evil.example",        # source route
        "victim%evil.example@hato.test",             # percent hack
        "victim@evil.example@hato.test",
        "dm@hato.test.evil.example",                 # the domain as a prefix
        "\"dm@hato.test\"@evil.example",             # quoted local part
        "someone@hato.test",                         # the right domain, no such address
        "dm@" + H.BOUNCE_DOMAIN,
    ]
    with H.LMTPClient(("127.0.0.1", env.lmtp_port)) as c:
        check(c.lhlo().ok, "LHLO")
        check(c.mail("mallory@evil.example").ok, "MAIL")
        for rcpt in outside:
            r = c.rcpt(rcpt)
            check(r.code // 100 == 5, "RCPT TO:<%s> was not refused: %r", rcpt, r)
        r = c.command("DATA")
        check_eq(r.code, 503, "DATA with every recipient refused")
        c.quit()
    check_eq(env.jobs(), [], "jobs")
    env.stop_clean()


def privileged_port():
    """A free loopback port under 1024 (only root can bind it)."""
    for port in list(range(600, 700)) + list(range(900, 1000)):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise H.TestFailure("no free port under 1024")


def ids_of(pid):
    """(uids, gids, groups) of a process from /proc."""
    with open("/proc/%d/status" % pid) as f:
        st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return ([int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()],
            [int(x) for x in st.get("Groups", "").split()])


@H.timeout(90)
def test_root_dropped_after_binding():
    if not ROOT:
        print("(not root: the privilege drop cannot be checked here)")
        return
    env = H.Env("privdrop")
    env.relay_sink("default")
    env.route("*", "relay:default")
    lmtp, http = privileged_port(), None
    env.lmtp_port = lmtp
    env.config.section("intake")["lmtp_listen"] = "127.0.0.1:%d" % lmtp
    http = privileged_port() if lmtp != 999 else 998
    while http == lmtp:
        http += 1
    env.config.section("gateway")["http_listen"] = "127.0.0.1:%d" % http
    env.start()
    H.wait_port("127.0.0.1", http, 10, proc=env.gateway)
    for d in (env.intake, env.gateway):
        uids, gids, groups = ids_of(d.pid)
        check(0 not in uids and 0 not in gids and 0 not in groups,
              "%s still holds root: uids %r gids %r groups %r", d.name, uids, gids, groups)
    # Bound as root before the drop, and still serving.
    reply = env.submit(env.submission(["a@example.com"], "特権", "本文\n")).one()
    check_eq(reply.code, 250, "a submission to the intake on port %d" % lmtp)
    env.wait_job_done(H.job_id_of(reply), 20)
    env.stop_clean()


@H.timeout(90)
def test_root_without_user_refused():
    if not ROOT:
        print("(not root: the refusal to run as root cannot be checked here)")
        return
    env = H.Env("rootuser")
    env.write_config()
    env.init_db()
    # Unset or empty; "user = root" is the operator saying so in so many
    # words (core/daemon.c), and is taken.
    for value in (None, ""):
        if value is None:
            env.config.remove("hato", "user")
        else:
            env.config.set("hato", "user", value)
        for binary in (H.INTAKE, H.GATEWAY):
            refused_start(binary, env, r"running as root: set \[hato\] user", "[hato] user %r" % value)


@H.timeout(90)
def test_secrets_readable_by_others_refused():
    env = H.Env("secrets")
    env.write_config()
    env.init_db()
    for mode in (0o644, 0o640, 0o604):
        os.chmod(env.secret_file, mode)
        for binary in (H.INTAKE, H.GATEWAY):
            refused_start(binary, env, r"%s: readable by others \(mode %03o\)" % (re.escape(env.secret_file), mode),
                          "secret_file mode %03o" % mode)
    os.chmod(env.secret_file, 0o600)
    pw = env.db.password_file
    os.chmod(pw, 0o644)
    try:
        for binary in (H.INTAKE, H.GATEWAY):
            refused_start(binary, env, r"%s: readable by others" % re.escape(pw), "[db] password_file mode 644")
    finally:
        os.chmod(pw, 0o600)
    env.start(gateway=True)   # and with the modes right, both start
    env.gateway.wait_log(r"gateway ready", 10)
    env.stop_clean()


@H.timeout(60)
def test_tls_verification_never_silently_off():
    env = H.Env("verify")
    env.relay_sink("checked")
    env.relay_sink("unchecked")
    env.config.section("relay checked").update({"tls": "starttls"})
    env.config.section("relay unchecked").update({"tls": "starttls", "verify": "no"})
    env.route("*", "relay:checked")
    env.start()
    env.gateway.wait_log(r"warning: %s: \[relay unchecked\] verify = no: the relay's certificate is not checked"
                         % re.escape(env.config.path), 10)
    env.gateway.wait_log(r"gateway ready", 10)
    log = env.gateway.log_text()
    check(not re.search(r"\[relay checked\] verify", log), "a warning about the relay that verifies:\n%s", log)
    # Opportunistic TLS for MX delivery is the documented default.
    ini = open(os.path.join(H.SOURCE, "conf", "hato.ini"), encoding="utf-8").read()
    check(re.search(r"^mx_tls = opportunistic$", ini, re.M) and "opportunistic STARTTLS" in ini,
          "hato.ini does not document mx_tls = opportunistic")
    check(re.search(r"^; verify = yes$", ini, re.M), "hato.ini does not show verify = yes for relays")
    env.stop_clean()


@H.timeout(60)
def test_http_listen_loopback_only():
    env = H.Env("httppublic", db=False)
    path = env.config.path
    for addr in ("0.0.0.0:8025", "192.0.2.1:8025", "[::]:8025", "[2001:db8::1]:8025", "[::ffff:10.0.0.1]:8025"):
        env.config.set("gateway", "http_listen", addr)
        env.write_config()
        line = next(i + 1 for i, l in enumerate(open(path).read().split("\n")) if l.startswith("http_listen"))
        r = H.run([H.GATEWAY, "--config", path, "--check-config"], check_rc=False, timeout=20)
        out = r.stdout + r.stderr
        check(r.returncode != 0, "--check-config took http_listen = %s:\n%s", addr, out)
        want = "%s:%d: [gateway] http_listen: '%s' is not a loopback address" % (path, line, addr)
        check(want in out and "http_public = yes" in out, "refusal of %s does not say %r:\n%s", addr, want, out)
    for addr, public in (("127.0.0.1:8025", "no"), ("[::1]:8025", "no"), ("127.8.9.10:8025", "no"),
                         ("localhost:8025", "no"), ("0.0.0.0:8025", "yes")):
        env.config.set("gateway", "http_listen", addr)
        env.config.set("gateway", "http_public", public)
        env.write_config()
        r = H.run([H.GATEWAY, "--config", path, "--check-config"], check_rc=False, timeout=20)
        check(r.returncode == 0, "--check-config refused http_listen = %s, http_public = %s:\n%s%s",
              addr, public, r.stdout, r.stderr)


if __name__ == "__main__":
    H.main(globals())
