"""hatoctl doctor against a DNS server on loopback (tests/harness/
dnsserver.py): a good setup passes every check; a broken one (no PTR, no
MX, SPF that excludes the IP, a DKIM selector without a key and one with
another key, no DMARC, the IP on the test blocklist) gets each problem
reported with the right verdict and exit status 1. SPF softfail, a
neutral ~all, mechanisms not evaluated (exists) and the lookup limit are
warnings or failures as RFC 7208 asks."""

import base64
import json
import os
import subprocess

import hatotest as H
from hatotest import check, check_eq
from dnsserver import DnsServer, reverse_name

GOOD_IP = "192.0.2.10"
BAD_IP = "192.0.2.66"


def keypair(path):
    """A 2048-bit RSA key at path (mode 600); the base64 DER of its public half."""
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path],
                   check=True, capture_output=True)
    os.chmod(path, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return base64.b64encode(der).decode()


def zone(pub, other_pub):
    z = {
        # the sending IP: PTR and the name back to it
        reverse_name(GOOD_IP): {"PTR": ["gw.hato.test"]},
        "gw.hato.test": {"A": [GOOD_IP]},
        # an IP whose PTR name does not resolve back
        reverse_name("192.0.2.67"): {"PTR": ["elsewhere.hato.test"]},
        "elsewhere.hato.test": {"A": ["198.51.100.1"]},
        # the envelope domain
        H.BOUNCE_DOMAIN: {"MX": [(10, "mx.hato.test")], "TXT": ["v=spf1 include:_spf.hato.test -all",
                                                               "some-other=text"]},
        "mx.hato.test": {"A": ["198.51.100.25"]},
        "_spf.hato.test": {"TXT": ["v=spf1 mx:other.hato.test ip4:192.0.2.0/26 -all"]},
        "other.hato.test": {"MX": [(10, "mx.hato.test")]},
        # DKIM and DMARC of the From domain (the submitter's)
        "s1._domainkey.example.co.jp": {"TXT": ["v=DKIM1; k=rsa; p=" + pub]},
        "s3._domainkey.example.co.jp": {"TXT": ["v=DKIM1; k=rsa; p=" + other_pub]},
        "_dmarc.example.co.jp": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.co.jp"]},
        # a broken envelope/From domain: no MX, SPF that stops at /26
        "broken.test": {"TXT": ["v=spf1 ip4:192.0.2.0/26 -all"], "A": ["198.51.100.9"]},
        "soft.test": {"MX": [(10, "mx.hato.test")], "TXT": ["v=spf1 ip4:198.51.100.0/24 ~all"]},
        "neutral.test": {"MX": [(10, "mx.hato.test")], "TXT": ["v=spf1 exists:%{i}.x.neutral.test -all"]},
        "loop.test": {"MX": [(10, "mx.hato.test")], "TXT": ["v=spf1 include:loop.test -all"]},
        # the test blocklist: BAD_IP listed, with a reason
        "66.2.0.192.bl.test": {"A": ["127.0.0.2"], "TXT": ["Listed for spam traps, see https://bl.test/66"]},
        "bl.test": {"SOA": [("ns.bl.test", "hostmaster.bl.test", 1, 3600, 600, 86400, 60)]},
    }
    return z


def doctor_env(name, dns):
    env = H.Env(name, db=False)
    env.config.section("gateway").update({"dns_servers": "127.0.0.1:%d" % dns.port, "dns_timeout": "2s"})
    env.config.section("doctor").update({"blocklists": "bl.test", "ip": GOOD_IP})
    return env


def doctor(env, *args, rc):
    r = env.ctl("--json", "doctor", *args, check_rc=False, timeout=60)
    check_eq(r.returncode, rc, "exit code of doctor %s (stderr %r, stdout %s)" % (" ".join(args), r.stderr, r.stdout))
    out = json.loads(r.stdout)
    return out, {(c["check"], c["subject"]): c for c in out["checks"]}


@H.timeout(120)
def test_doctor():
    d = H.tempdir("doctor-keys")
    key = os.path.join(d, "s1.key")
    pub = keypair(key)
    other_pub = keypair(os.path.join(d, "other.key"))
    dns = DnsServer(zone(pub, other_pub)).start()
    H.defer(dns.stop)
    env = doctor_env("doctor", dns)
    env.config.section("dkim main").update({"domain": "example.co.jp", "selector": "s1", "key_file": key})
    env.write_config()

    # a good setup: every check passes
    out, checks = doctor(env, rc=0)
    check_eq(out["failed"], 0, "failures of the good setup: %r" % out)
    check_eq(out["warnings"], 0, "warnings of the good setup: %r" % out)
    check_eq(sorted(checks), sorted([("ptr", GOOD_IP), ("mx", H.BOUNCE_DOMAIN), ("spf", H.BOUNCE_DOMAIN),
                                     ("dkim", "s1._domainkey.example.co.jp"), ("dmarc", "example.co.jp"),
                                     ("blocklist", "bl.test")]), "checks made")
    check("gw.hato.test" in checks[("ptr", GOOD_IP)]["detail"], "PTR detail %r", checks[("ptr", GOOD_IP)])
    check("pass for" in checks[("spf", H.BOUNCE_DOMAIN)]["detail"], "SPF detail %r", checks[("spf", H.BOUNCE_DOMAIN)])
    check("matches" in checks[("dkim", "s1._domainkey.example.co.jp")]["detail"], "DKIM compared with the key file")
    check("reject" in checks[("dmarc", "example.co.jp")]["detail"], "DMARC policy shown")
    text = env.ctl("doctor").stdout
    check("0 failed, 0 warnings" in text and "CHECK" in text, "doctor text: %r", text)

    # a broken setup
    env.config.section("dkim missing").update({"domain": "example.co.jp", "selector": "s2", "key_file": key})
    env.config.section("dkim wrong").update({"domain": "example.co.jp", "selector": "s3", "key_file": key})
    env.write_config()
    out, checks = doctor(env, "--ip", BAD_IP, "--domain", "broken.test", rc=1)
    want = {("ptr", BAD_IP): "fail", ("mx", "broken.test"): "fail", ("spf", "broken.test"): "fail",
            ("dkim", "s1._domainkey.example.co.jp"): "pass", ("dkim", "s2._domainkey.example.co.jp"): "fail",
            ("dkim", "s3._domainkey.example.co.jp"): "fail", ("dmarc", "broken.test"): "fail",
            ("blocklist", "bl.test"): "fail"}
    check_eq({k: c["verdict"] for k, c in checks.items()}, want, "verdicts of the broken setup")
    for k, c in checks.items():
        if c["verdict"] != "pass":
            check(c["fix"], "a fix for %r", c)
    check("no PTR" in checks[("ptr", BAD_IP)]["detail"], "PTR detail %r", checks[("ptr", BAD_IP)])
    check(checks[("spf", "broken.test")]["detail"].startswith("fail for " + BAD_IP), "SPF detail %r",
          checks[("spf", "broken.test")])
    check("not the public half" in checks[("dkim", "s3._domainkey.example.co.jp")]["detail"], "DKIM mismatch")
    bl = checks[("blocklist", "bl.test")]["detail"]
    check("LISTED" in bl and "Listed for spam traps" in bl, "blocklist reason in %r", bl)
    check_eq(out["failed"], 7, "failures counted")
    r = env.ctl("doctor", "--ip", BAD_IP, "--domain", "broken.test", check_rc=False)
    check_eq(r.returncode, 1, "exit code of the text table")
    check("fail" in r.stdout and "->" in r.stdout, "text table with fixes: %r", r.stdout)

    # forward-confirmed reverse DNS that does not confirm
    _, checks = doctor(env, "--ip", "192.0.2.67", "--domain", "soft.test", rc=1)
    check_eq(checks[("ptr", "192.0.2.67")]["verdict"], "fail", "PTR without forward match")
    check("does not resolve back" in checks[("ptr", "192.0.2.67")]["detail"], "FCrDNS detail")
    # softfail and what is not evaluated: warnings, honestly named
    check_eq(checks[("spf", "soft.test")]["verdict"], "warn", "SPF softfail")
    check("softfail" in checks[("spf", "soft.test")]["detail"], "softfail named")
    _, checks = doctor(env, "--ip", GOOD_IP, "--domain", "neutral.test", rc=1)
    check_eq(checks[("spf", "neutral.test")]["verdict"], "warn", "SPF with exists and a macro")
    check("neutral/unknown" in checks[("spf", "neutral.test")]["detail"], "unknown named: %r",
          checks[("spf", "neutral.test")])
    # an include loop: permerror after 10 lookups
    _, checks = doctor(env, "--ip", GOOD_IP, "--domain", "loop.test", rc=1)
    check_eq(checks[("spf", "loop.test")]["verdict"], "fail", "SPF include loop")
    check("permerror" in checks[("spf", "loop.test")]["detail"], "permerror named: %r", checks[("spf", "loop.test")])

    # usage: no IP, a bad IP
    env.config.section("doctor")["ip"] = ""
    env.write_config()
    check_eq(env.ctl("doctor", check_rc=False).returncode, 2, "doctor without an IP")
    check_eq(env.ctl("doctor", "--ip", "300.1.1.1", check_rc=False).returncode, 2, "doctor with a bad IP")
    # every question went to the loopback server
    check(("gw.hato.test", "A") in dns.queries, "queries reached the test server: %r", dns.queries[:10])


if __name__ == "__main__":
    H.main(globals())
