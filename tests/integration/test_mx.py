"""MX delivery end to end: intake by LMTP, MariaDB, the gateway resolving
MX hosts through c-ares against tests/harness/dnsserver.py on 127.0.0.1,
and SMTP sinks on other loopback addresses ([gateway] smtp_port is the
sinks' port; Linux routes all of 127.0.0.0/8 to loopback, so a sink
listens on 127.0.0.2 while nothing listens on 127.0.0.3).

- two MX hosts, the preferred one refusing connections: the second one
  gets the mail, in one attempt;
- no MX but an A record: the mail goes to that address;
- a null MX (MX 0 .): failed at once, 5.1.x, one attempt;
- SERVFAIL: deferred and retried, with a DNS reason;
- a domain in mx_tls_require whose MX offers no STARTTLS: deferred, and
  nothing is sent in clear; one whose MX offers STARTTLS with a certificate
  for its name, from the configured CA: delivered over verified TLS;
- any other domain whose MX offers STARTTLS: TLS without verification
  (opportunistic), even with a certificate from an unknown CA.
"""

import os
import re

import hatotest as H
from hatotest import check, check_eq
from dnsserver import DnsServer

from test_upstream import Certs, connected_lines, deliveries_by_addr, delivery_lines, describe, \
    mail_commands, arrived, start_sink, submit, wait_delivery


@H.timeout(70)
def test_mx_delivery():
    env = H.Env("mx")
    certs = Certs(os.path.join(env.dir, "pki"))
    mx_cert = certs.leaf("mx.verified.test")
    plain = start_sink(env, "mx-plain", host="127.0.0.2")
    port = plain.port
    secure = start_sink(env, "mx-tls", host="127.0.0.4", port=port, tls_cert=mx_cert[0], tls_key=mx_cert[1],
                        tls_mode="starttls")
    # Opportunistic TLS takes a certificate nobody can verify.
    anycert = start_sink(env, "mx-anycert", host="127.0.0.5", port=port, tls_cert=certs.untrusted[0],
                         tls_key=certs.untrusted[1], tls_mode="starttls")
    zone = {
        "two.test": {"MX": [(10, "mx1.two.test"), (20, "mx2.two.test")]},
        "mx1.two.test": {"A": ["127.0.0.3"]},     # nothing listens there
        "mx2.two.test": {"A": ["127.0.0.2"]},
        "amx.test": {"A": ["127.0.0.2"]},         # no MX: the A record
        "nullmx.test": {"MX": [(0, ".")]},
        "broken.test": "SERVFAIL",
        "secure.test": {"MX": [(10, "mx.secure.test")]},
        "mx.secure.test": {"A": ["127.0.0.2"]},   # offers no STARTTLS
        "verified.test": {"MX": [(10, "mx.verified.test")]},
        "mx.verified.test": {"A": ["127.0.0.4"]},
        "opportunistic.test": {"MX": [(10, "mx.opportunistic.test")]},
        "mx.opportunistic.test": {"A": ["127.0.0.5"]},
    }
    dns = DnsServer(zone).start()
    H.defer(dns.stop)
    env.config.section("gateway").update({
        "dns_servers": "127.0.0.1:%d" % dns.port, "smtp_port": port, "dns_timeout": "2s",
        "mx_tls": "opportunistic", "mx_tls_require": "secure.test, verified.test", "ca_file": certs.ca,
    })
    env.config.section("retry").update({"intervals": "2s", "max_attempts": 30})
    env.route("*", "mx")
    env.start()

    rcpts = ["user@two.test", "user@amx.test", "user@nullmx.test", "user@broken.test",
             "user@secure.test", "user@verified.test", "user@opportunistic.test"]
    job_id = submit(env, rcpts)

    check(plain.wait_for(2, 20), "MX sink on 127.0.0.2: %d of 2 messages", len(plain.messages()))
    check(secure.wait_for(1, 20), "MX sink on 127.0.0.4: no message")
    check(anycert.wait_for(1, 20), "MX sink on 127.0.0.5: no message")
    nullmx = wait_delivery(env, job_id, "user@nullmx.test", lambda d: d["state"] == "failed", 20,
                           "the null-MX delivery to fail")
    broken = wait_delivery(env, job_id, "user@broken.test",
                           lambda d: int(d["attempts"]) >= 2, 20, "the SERVFAIL delivery to be retried")
    must_tls = wait_delivery(env, job_id, "user@secure.test", lambda d: int(d["attempts"]) >= 1, 20,
                             "the delivery to secure.test to be tried")
    by = deliveries_by_addr(env, job_id)
    queries = dns.queries

    # The preferred MX refuses connections; the second one gets the mail.
    d = by["user@two.test"]
    check(d["state"] == "sent", "two.test: %s", describe(d))
    check_eq(int(d["attempts"]), 1, "attempts to two.test (both MX hosts in one attempt)")
    check_eq(len(arrived(plain, "user@two.test")), 1, "copies of user@two.test at 127.0.0.2")
    check(("two.test", "MX") in queries, "no MX query for two.test: %r", queries)
    log = env.gateway.log_text()
    check(re.search(r"dest=mx:two\.test host=mx1\.two\.test stage=connect\b", log),
          "no log line of the refused connection to mx1.two.test:\n%s", H.tail(env.gateway.log_path, 40))
    lines = delivery_lines(env, d["id"])
    check(len(lines) == 1 and lines[0]["host"] == "mx2.two.test" and lines[0]["status"] == "sent",
          "delivery log lines of user@two.test: %r", [l["line"] for l in lines])

    # No MX: the domain's own address.
    d = by["user@amx.test"]
    check(d["state"] == "sent", "amx.test: %s", describe(d))
    check_eq(len(arrived(plain, "user@amx.test")), 1, "copies of user@amx.test at 127.0.0.2")
    check(("amx.test", "A") in queries, "no A query for amx.test: %r", queries)

    # Null MX: failed at once.
    d = nullmx
    check_eq(int(d["attempts"]), 1, "attempts to nullmx.test")
    check(re.match(r"^5\.1\.\d+$", d["last_status"] or ""), "nullmx.test: last_status %r, want 5.1.x", d["last_status"])
    check("null mx" in (d["last_text"] or "").lower(), "nullmx.test: last_text %r does not say null MX", d["last_text"])
    check_eq([r["outcome"] for r in env.delivery_log(d["id"])], ["failed"], "delivery_log of nullmx.test")

    # SERVFAIL: deferred, retried, a DNS reason.
    d = deliveries_by_addr(env, job_id)["user@broken.test"]
    check(d["state"] in ("deferred", "queued"), "broken.test: after SERVFAIL the delivery must wait: %s", describe(d))
    check(re.search(r"(?i)dns|mx lookup|servfail|server fail", d["last_text"] or ""),
          "broken.test: last_text %r gives no DNS reason", d["last_text"])
    outcomes = [r["outcome"] for r in env.delivery_log(d["id"])]
    check(len(outcomes) >= 2 and set(outcomes) == {"deferred"}, "delivery_log of broken.test: %r", outcomes)
    check(("broken.test", "MX") in queries, "no MX query for broken.test: %r", queries)

    # mx_tls_require, no STARTTLS offered: deferred, nothing in clear.
    d = deliveries_by_addr(env, job_id)["user@secure.test"]
    check(d["state"] == "deferred", "secure.test: without STARTTLS the delivery must wait: %s", describe(d))
    check("STARTTLS" in (d["last_text"] or ""), "secure.test: last_text %r does not name STARTTLS", d["last_text"])
    check_eq(mail_commands(plain, d["id"]), 0, "MAIL commands in clear for secure.test")
    check_eq(arrived(plain, "user@secure.test"), [], "copies of user@secure.test")
    check(plain.stats()["connections"] >= 3, "the gateway did not connect to the MX of secure.test")

    # mx_tls_require, STARTTLS with a verified certificate: delivered.
    d = by["user@verified.test"]
    check(d["state"] == "sent", "verified.test: %s", describe(d))
    got = arrived(secure, "user@verified.test")
    check_eq(len(got), 1, "copies of user@verified.test")
    check(got[0]["tls"], "verified.test: the message came in clear")
    conns = connected_lines(env, "mx:verified.test")
    check(conns and conns[0][0] == "mx.verified.test" and conns[0][1].endswith(" verified")
          and conns[0][1].startswith(got[0]["tls"] + " ") and conns[0][2] == "CN=mx.verified.test",
          "connected lines of mx:verified.test: %r", conns)

    # Opportunistic: TLS with a certificate from an unknown CA, unverified.
    d = wait_delivery(env, job_id, "user@opportunistic.test", lambda d: d["state"] == "sent", 10,
                      "the delivery to opportunistic.test to be sent")
    got = arrived(anycert, "user@opportunistic.test")
    check_eq(len(got), 1, "copies of user@opportunistic.test")
    check(got[0]["tls"], "opportunistic.test: the message came in clear although STARTTLS was offered")
    conns = connected_lines(env, "mx:opportunistic.test")
    check(conns and conns[0][1].endswith(" unverified"), "connected lines of mx:opportunistic.test: %r", conns)

    # Only the MX hosts the zone names were used: nothing for the null MX
    # or the failed lookup reached a sink.
    for sink in (plain, secure, anycert):
        for dl in (nullmx, broken, must_tls):
            check_eq(mail_commands(sink, dl["id"]), 0, "MAIL commands at %s for %s" % (sink.name, dl["address"]))
    check(env.job(job_id)["state"] != "done", "job done while two deliveries wait")
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
