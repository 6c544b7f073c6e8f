"""Unsubscribe: RFC 8058 one-click POST to the gateway's HTTP endpoint, the
GET page that changes nothing, bad tokens, and the mailto of
List-Unsubscribe handled by intake. Both take the links from the header of a
message the sink received; a suppressed address is skipped by later jobs."""

import email
import email.policy
import re
import urllib.parse

import hatotest as H
from hatotest import check, check_eq

UNSUB_URL = "https://hato.test/u/"


def unsub_env(name):
    env = H.Env(name)
    env.relay_sink("default")
    env.route("*", "relay:default")
    env.http_port = H.free_port()
    env.config.section("gateway").update({"http_listen": "127.0.0.1:%d" % env.http_port,
                                          "unsubscribe_url": UNSUB_URL})
    return env


def submit_job(env, rcpts):
    reply = env.submit(env.submission(rcpts, "配信停止のテスト", "本文です。\n")).one()
    check(reply.code == 250, "submission not accepted: %r", reply)
    return H.job_id_of(reply), reply


def links(env, addrs):
    """{address: (mailto address, URL path)} from the List-Unsubscribe
    header of the last message each address got."""
    out = {}
    for m in env.sinks["default"].messages():
        rcpt = H.addr_of(m["rcpts"][0])
        if rcpt not in addrs:
            continue
        msg = email.message_from_bytes(m["data"], policy=email.policy.compat32)
        lu = re.sub(r"\s+", " ", msg["List-Unsubscribe"] or "")
        check(msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click",
              "List-Unsubscribe-Post of the message to %s: %r", rcpt, msg["List-Unsubscribe-Post"])
        mailto = re.search(r"<mailto:([^>]+)>", lu)
        url = re.search(r"<(https?://[^>]+)>", lu)
        check(mailto and url, "List-Unsubscribe of the message to %s: %r", rcpt, lu)
        check(url.group(1).startswith(UNSUB_URL), "one-click URL %r", url.group(1))
        out[rcpt] = (mailto.group(1), urllib.parse.urlsplit(url.group(1)).path)
    check_eq(sorted(out), sorted(addrs), "addresses with a List-Unsubscribe")
    return out


def request(env, method, path, body=None, headers=None):
    return H.http_request(env.http_port, method, path, body, headers, timeout=10)


ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def suppression(env, addr):
    rows = env.db.query("SELECT * FROM suppressions WHERE address = %s", (addr,))
    return rows[0] if rows else None


def state(env):
    return (env.db.query("SELECT * FROM suppressions ORDER BY address"),
            env.db.query("SELECT id, state FROM deliveries ORDER BY id"),
            env.db.scalar("SELECT COUNT(*) FROM delivery_log"))


def other_token(path, other_id):
    """The same MAC on another delivery id: /u/u<id>.<mac> -> /u/u<other>.<mac>."""
    return re.sub(r"/u(\d+)\.", "/u%d." % other_id, path)


@H.timeout(120)
def test_one_click_and_mailto():
    env = unsub_env("unsub")
    env.start()
    H.wait_port("127.0.0.1", env.http_port, 10, proc=env.gateway)
    addrs = ["click@example.com", "mail@example.com", "look@example.com", "keep@example.com"]
    job, _ = submit_job(env, addrs)
    env.wait_job_done(job, 25)
    check(env.sinks["default"].wait_for(len(addrs), 10), "not every message arrived")
    ln = links(env, addrs)
    ids = {d["address"]: int(d["id"]) for d in env.deliveries(job)}

    status, body, _ = request(env, "GET", "/healthz")
    check_eq(status, 200, "GET /healthz")

    # GET shows a form that POSTs, and changes nothing.
    before = state(env)
    status, body, hdrs = request(env, "GET", ln["look@example.com"][1])
    check_eq(status, 200, "GET of the one-click URL")
    check(re.search(r'<form method="post" action="%s"' % re.escape(ln["look@example.com"][1]), body) and
          'name="List-Unsubscribe" value="One-Click"' in body, "the GET page has no one-click form:\n%s", body)
    check(hdrs.get("Content-Type", "").startswith("text/html"), "Content-Type of the page: %r", hdrs)
    check(state(env) == before, "GET changed the database")
    check(suppression(env, "look@example.com") is None, "GET unsubscribed")

    # Bad tokens: 404 and nothing changes.
    good = ln["click@example.com"][1]
    bad_mac = good[:-1] + ("a" if good[-1] != "a" else "b")
    for path in (bad_mac, other_token(good, ids["keep@example.com"]), "/u/", "/u/u1",
                 other_token(good, ids["keep@example.com"] + 1000)):
        for method in ("POST", "GET"):
            status, _, _ = request(env, method, path, "List-Unsubscribe=One-Click", ONE_CLICK)
            check_eq(status, 404, "%s %s" % (method, path))
    status, _, _ = request(env, "POST", "/elsewhere", "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 404, "POST to another path")
    # A POST without List-Unsubscribe=One-Click is no one-click request.
    status, _, _ = request(env, "POST", good, "hello=world", ONE_CLICK)
    check_eq(status, 400, "POST without List-Unsubscribe=One-Click")
    status, _, _ = request(env, "PUT", good, "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 405, "PUT to the one-click URL")
    check(state(env) == before, "bad requests changed the database")

    # One-click POST (RFC 8058): suppressed, with the reason.
    status, body, _ = request(env, "POST", good, "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 200, "one-click POST")
    s = suppression(env, "click@example.com")
    check(s is not None, "click@example.com not suppressed after the one-click POST")
    check_eq((s["reason"], int(s["delivery_id"])), ("unsubscribed", ids["click@example.com"]), "suppression")
    check_eq(env.delivery_log(ids["click@example.com"])[-1]["outcome"], "unsubscribed",
             "delivery_log of the unsubscribed delivery")
    env.gateway.wait_log(r"unsubscribe dlv=%d address=click@example.com via=one-click status=suppressed"
                         % ids["click@example.com"])
    # Again: still 200, still one row.
    status, _, _ = request(env, "POST", good, "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 200, "a second one-click POST")
    check_eq(int(env.db.scalar("SELECT COUNT(*) FROM suppressions")), 1, "suppressions after two POSTs")

    # By mail, to the mailto address of the header.
    mailto = ln["mail@example.com"][0]
    check(mailto.lower().startswith("unsub+") and mailto.lower().endswith("@" + H.BOUNCE_DOMAIN),
          "mailto address %r", mailto)
    bad = re.sub(r"\.[a-z2-7]+@", ".aaaaaaaaaaaaaaaa@", mailto)
    before = state(env)
    r = env.submit(b"From: mail@example.com\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
                   mail_from="mail@example.com", rcpts=[bad])
    check_eq(r.one().code, 250, "reply to an unsubscribe mail with a bad token")
    check(state(env) == before, "an unsubscribe mail with a bad token changed the database")
    r = env.submit(b"From: mail@example.com\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
                   mail_from="mail@example.com", rcpts=[mailto])
    check_eq(r.one().code, 250, "reply to the unsubscribe mail")
    s = suppression(env, "mail@example.com")
    check(s is not None and s["reason"] == "unsubscribed", "mail@example.com after the unsubscribe mail: %r", s)

    # The next job skips both, and no mail reaches the sink for them.
    n_before = len(env.sinks["default"].messages())
    job2, reply = submit_job(env, ["click@example.com", "mail@example.com", "keep@example.com"])
    check(" 1 accepted, 0 rejected, 2 suppressed" in reply.text, "reply %r", reply.text)
    env.wait_job_done(job2, 25)
    check(env.sinks["default"].wait_for(n_before + 1, 10), "the message to keep@example.com did not arrive")
    new = [H.addr_of(r) for m in env.sinks["default"].messages()[n_before:] for r in m["rcpts"]]
    check_eq(new, ["keep@example.com"], "recipients of the next job at the sink")
    for a in ("click@example.com", "mail@example.com"):
        env.intake.wait_log(r"address=%s status=suppressed reason=unsubscribed" % re.escape(a))

    # The operators see them.
    out = env.ctl("suppress", "list").stdout
    for a in ("click@example.com", "mail@example.com"):
        check(re.search(r"(?m)^%s\s+unsubscribed\s" % re.escape(a), out), "suppress list lacks %s:\n%s", a, out)

    # The database away: 503, and the mail client tries again later.
    look = ln["look@example.com"][1]
    env.db.stop()
    status, _, hdrs = request(env, "POST", look, "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 503, "one-click POST while the database is away")
    check("Retry-After" in hdrs, "503 without Retry-After: %r", hdrs)
    status, _, _ = request(env, "GET", "/healthz")
    check_eq(status, 200, "GET /healthz while the database is away")
    env.db.start()
    status, _, _ = request(env, "POST", look, "List-Unsubscribe=One-Click", ONE_CLICK)
    check_eq(status, 200, "one-click POST once the database is back")
    check(suppression(env, "look@example.com") is not None, "look@example.com not suppressed")
    env.stop_clean()


@H.timeout(60)
def test_http_listen_must_be_loopback():
    env = unsub_env("unsubpub")
    env.start(gateway=False)
    # TEST-NET-1: not loopback, and never bound here even if it were taken.
    # (A configuration error, so hatoctl and intake refuse it too.)
    env.config.section("gateway")["http_listen"] = "192.0.2.1:%d" % env.http_port
    env.write_config()
    r = H.run([H.GATEWAY, "--config", env.config.path], check_rc=False, timeout=20)
    check(r.returncode != 0, "the gateway started with http_listen on 192.0.2.1")
    check("loopback" in r.stderr + r.stdout and "http_public" in r.stderr + r.stdout,
          "the refusal does not say why:\n%s%s", r.stdout, r.stderr)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
