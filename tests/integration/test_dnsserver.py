#!/usr/bin/python3
"""test_dnsserver: the test DNS server (tests/harness/dnsserver.py) checked
with a raw-socket client written here (dig and host are not installed on
these machines; when `dig` is, one more test asks it too): A, AAAA, MX,
TXT, PTR, CNAME, SOA in negative answers, response codes, DELAY, TCP,
truncation and EDNS, the query log, the command line.

Run: /usr/bin/python3 tests/integration/test_dnsserver.py
Prints one line per test and "N passed, M failed"; exits 1 on a failure.
"""

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

from dnsserver import DnsServer, reverse_name  # noqa: E402

TESTS = []

LONG_TXT = "v=DKIM1; k=rsa; p=" + "A" * 600	# a 2048-bit key is about this long

ZONE = {
    "example.test": {
        "MX": [(10, "mx1.example.test"), (20, "mx2.example.test")],
        "TXT": ["v=spf1 ip4:127.0.0.1 -all"],
        "SOA": {"ttl": 3600, "records": [("ns.example.test", "hostmaster.example.test", 7, 3600, 600, 86400, 120)]},
    },
    "mx1.example.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "mx2.example.test": {"A": {"ttl": 1, "records": ["127.0.0.2"]}, "TTL": 60, "AAAA": ["::2"]},
    "sel._domainkey.example.test": {"TXT": [LONG_TXT]},
    "parts.example.test": {"TXT": [["one", "two"]]},
    "alias.example.test": {"CNAME": "mx1.example.test"},
    "nullmx.test": {"MX": [(0, ".")]},
    "broken.test": "SERVFAIL",
    "refused.test": {"RCODE": "REFUSED"},
    "dropped.test": "DROP",
    "slow.test": {"DELAY": 0.6, "A": ["127.0.0.9"]},
    "*.wild.test": {"A": ["127.0.0.10"]},
    reverse_name("127.0.0.1"): {"PTR": ["mx1.example.test"]},
    reverse_name("::1"): {"PTR": ["mx1.example.test"]},
    "2.0.0.127.bl.test": {"A": ["127.0.0.2"], "TXT": ["listed"]},
}


def test(fn):
    TESTS.append(fn)
    return fn


# ---- a raw client ----

def query_bytes(name, qtype, qid=None, edns=None):
    qid = random.randrange(65536) if qid is None else qid
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
    return qid, q


def read_name(msg, off):
    labels, end = [], None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        off += 1
        if n == 0:
            return ".".join(labels), (end if end is not None else off)
        labels.append(msg[off:off + n].decode())
        off += n


def parse(msg):
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns, ar):
        rrs = []
        for _ in range(count):
            name, off = read_name(msg, off)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            rd = msg[off:off + rdlen]
            rrs.append({"name": name, "type": rtype, "class": rclass, "ttl": ttl,
                        "data": rdata(msg, off, rtype, rd)})
            off += rdlen
        sections.append(rrs)
    assert off == len(msg), "trailing bytes in the answer"
    return {"id": qid, "rcode": flags & 0xF, "tc": bool(flags & 0x0200), "aa": bool(flags & 0x0400),
            "qr": bool(flags & 0x8000), "answer": sections[0], "authority": sections[1],
            "additional": sections[2]}


def rdata(msg, off, rtype, rd):
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, rd)
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, rd)
    if rtype == 15:
        return (struct.unpack("!H", rd[:2])[0], read_name(msg, off + 2)[0])
    if rtype in (2, 5, 12):
        return read_name(msg, off)[0]
    if rtype == 16:
        out, i = [], 0
        while i < len(rd):
            out.append(rd[i + 1:i + 1 + rd[i]].decode())
            i += 1 + rd[i]
        return out
    if rtype == 6:
        mname, o = read_name(msg, off)
        rname, o = read_name(msg, o)
        return (mname, rname) + struct.unpack("!IIIII", msg[o:o + 20])
    return rd


def ask_udp(port, name, qtype, edns=None, timeout=3):
    qid, q = query_bytes(name, qtype, edns=edns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
    r = parse(data)
    assert r["id"] == qid and r["qr"], r
    return r


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def ask_tcp(port, names, qtype, timeout=3):
    """Several queries on one connection; the answers in order."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for name in names:
            qid, q = query_bytes(name, qtype)
            s.sendall(struct.pack("!H", len(q)) + q)
            n = struct.unpack("!H", recv_exactly(s, 2))[0]
            r = parse(recv_exactly(s, n))
            assert r["id"] == qid
            out.append(r)
    return out


A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


def data_of(r, rtype=None):
    return [rr["data"] for rr in r["answer"] if rtype is None or rr["type"] == rtype]


# ---- the tests ----

@test
def test_a_aaaa():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "mx1.example.test", A)
        assert r["rcode"] == NOERROR and r["aa"] and data_of(r) == ["127.0.0.1"], r
        assert r["answer"][0]["ttl"] == 300 and r["answer"][0]["name"] == "mx1.example.test"
        r = ask_udp(d.port, "mx1.example.test", AAAA)
        assert data_of(r) == ["::1"], r


@test
def test_mx_in_zone_order():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "example.test", MX)
        assert data_of(r) == [(10, "mx1.example.test"), (20, "mx2.example.test")], r
        r = ask_udp(d.port, "nullmx.test", MX)
        assert data_of(r) == [(0, "")], r


@test
def test_ttls():
    with DnsServer(ZONE) as d:
        assert ask_udp(d.port, "mx2.example.test", A)["answer"][0]["ttl"] == 1
        assert ask_udp(d.port, "mx2.example.test", AAAA)["answer"][0]["ttl"] == 60


@test
def test_txt():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "example.test", TXT)
        assert data_of(r) == [["v=spf1 ip4:127.0.0.1 -all"]], r
        r = ask_udp(d.port, "parts.example.test", TXT)
        assert data_of(r) == [["one", "two"]], r


@test
def test_long_txt_truncated_then_tcp():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "sel._domainkey.example.test", TXT)
        assert r["tc"] and r["answer"] == [], r
        [r] = ask_tcp(d.port, ["sel._domainkey.example.test"], TXT)
        assert not r["tc"]
        [strings] = data_of(r)
        assert all(len(s) <= 255 for s in strings) and "".join(strings) == LONG_TXT
        # With EDNS and a large enough payload, UDP carries it whole.
        r = ask_udp(d.port, "sel._domainkey.example.test", TXT, edns=4096)
        assert not r["tc"] and "".join(data_of(r)[0]) == LONG_TXT
        assert [rr["type"] for rr in r["additional"]] == [41]


@test
def test_ptr():
    with DnsServer(ZONE) as d:
        assert reverse_name("127.0.0.1") == "1.0.0.127.in-addr.arpa"
        r = ask_udp(d.port, "1.0.0.127.in-addr.arpa", PTR)
        assert data_of(r) == ["mx1.example.test"], r
        r = ask_udp(d.port, reverse_name("::1"), PTR)
        assert data_of(r) == ["mx1.example.test"], r
        assert ask_udp(d.port, "2.0.0.127.in-addr.arpa", PTR)["rcode"] == NXDOMAIN


@test
def test_blocklist_style():
    with DnsServer(ZONE) as d:
        assert data_of(ask_udp(d.port, "2.0.0.127.bl.test", A)) == ["127.0.0.2"]
        assert data_of(ask_udp(d.port, "2.0.0.127.bl.test", TXT)) == [["listed"]]
        assert ask_udp(d.port, "3.0.0.127.bl.test", A)["rcode"] == NXDOMAIN


@test
def test_cname():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "alias.example.test", A)
        assert [(rr["type"], rr["data"]) for rr in r["answer"]] == [
            (CNAME, "mx1.example.test"), (A, "127.0.0.1")], r
        r = ask_udp(d.port, "alias.example.test", CNAME)
        assert data_of(r) == ["mx1.example.test"], r


@test
def test_nxdomain_nodata_with_soa():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "nowhere.example.test", A)
        assert r["rcode"] == NXDOMAIN and r["answer"] == [], r
        [soa] = r["authority"]
        assert soa["type"] == SOA and soa["name"] == "example.test" and soa["ttl"] == 120, soa
        assert soa["data"][:3] == ("ns.example.test", "hostmaster.example.test", 7)
        r = ask_udp(d.port, "mx1.example.test", MX)
        assert r["rcode"] == NOERROR and r["answer"] == [] and r["authority"][0]["type"] == SOA, r
        # Outside any zone with a SOA: no authority.
        r = ask_udp(d.port, "nowhere.test", MX)
        assert r["rcode"] == NXDOMAIN and r["authority"] == [], r
        # An empty non-terminal exists: NODATA, not NXDOMAIN.
        r = ask_udp(d.port, "_domainkey.example.test", TXT)
        assert r["rcode"] == NOERROR and r["answer"] == [], r


@test
def test_rcodes():
    with DnsServer(ZONE) as d:
        assert ask_udp(d.port, "broken.test", MX)["rcode"] == SERVFAIL
        assert ask_udp(d.port, "refused.test", A)["rcode"] == REFUSED
        try:
            ask_udp(d.port, "dropped.test", A, timeout=0.5)
            raise AssertionError("dropped.test was answered")
        except socket.timeout:
            pass


@test
def test_case_and_wildcard():
    with DnsServer(ZONE) as d:
        r = ask_udp(d.port, "MX1.Example.TEST", A)
        assert data_of(r) == ["127.0.0.1"] and r["answer"][0]["name"] == "MX1.Example.TEST", r
        assert data_of(ask_udp(d.port, "a.b.wild.test", A)) == ["127.0.0.10"]
        assert ask_udp(d.port, "wild.test", A)["rcode"] == NOERROR	# a non-terminal


@test
def test_any():
    with DnsServer(ZONE) as d:
        types = sorted(rr["type"] for rr in ask_udp(d.port, "example.test", ANY)["answer"])
        assert types == [SOA, MX, MX, TXT], types


@test
def test_delay_does_not_block_others():
    with DnsServer(ZONE) as d:
        qid, q = query_bytes("slow.test", A)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            t0 = time.monotonic()
            s.sendto(q, ("127.0.0.1", d.port))
            # Answered meanwhile.
            assert data_of(ask_udp(d.port, "mx1.example.test", A)) == ["127.0.0.1"]
            assert time.monotonic() - t0 < 0.5
            data, _ = s.recvfrom(65535)
            assert time.monotonic() - t0 >= 0.55
            assert data_of(parse(data)) == ["127.0.0.9"]


@test
def test_tcp_several_queries():
    with DnsServer(ZONE) as d:
        rs = ask_tcp(d.port, ["mx1.example.test", "mx2.example.test", "nowhere.test"], A)
        assert [data_of(r) for r in rs] == [["127.0.0.1"], ["127.0.0.2"], []]
        assert rs[2]["rcode"] == NXDOMAIN


@test
def test_query_log_and_clear():
    with DnsServer(ZONE) as d:
        ask_udp(d.port, "Example.Test.", MX)
        ask_tcp(d.port, ["mx1.example.test"], AAAA)
        ask_udp(d.port, "broken.test", 99)
        assert d.queries == [("example.test", "MX"), ("mx1.example.test", "AAAA"), ("broken.test", "TYPE99")], d.queries
        d.clear_queries()
        assert d.queries == []


@test
def test_set_zone():
    with DnsServer(ZONE) as d:
        d.set_zone({"new.test": {"A": ["127.0.0.5"]}})
        assert data_of(ask_udp(d.port, "new.test", A)) == ["127.0.0.5"]
        assert ask_udp(d.port, "example.test", MX)["rcode"] == NXDOMAIN
        for bad in ({"x.test": {"A": ["not an address"]}}, {"x.test": "WHATEVER"}, {"x.test": {"BOGUS": []}}):
            try:
                d.set_zone(bad)
                raise AssertionError(f"accepted {bad}")
            except ValueError:
                pass


@test
def test_malformed_queries():
    with DnsServer(ZONE) as d:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            # Two questions: FORMERR.
            q = struct.pack("!HHHHHH", 77, 0x0100, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01"
            s.sendto(q, ("127.0.0.1", d.port))
            data, _ = s.recvfrom(512)
            assert struct.unpack("!H", data[:2])[0] == 77 and data[3] & 0xF == FORMERR
            # A label running past the end: FORMERR.
            q = struct.pack("!HHHHHH", 78, 0x0100, 1, 0, 0, 0) + b"\x3fabc"
            s.sendto(q, ("127.0.0.1", d.port))
            data, _ = s.recvfrom(512)
            assert data[3] & 0xF == FORMERR
            # Garbage shorter than a header: ignored, and the server lives on.
            s.sendto(b"\x01\x02", ("127.0.0.1", d.port))
        assert data_of(ask_udp(d.port, "mx1.example.test", A)) == ["127.0.0.1"]
        # A compression pointer in the question is followed.
        q = struct.pack("!HHHHHH", 79, 0x0100, 1, 0, 0, 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            # "mx1" then a pointer to "example.test" placed after the question.
            tail = b"\x07example\x04test\x00"
            qname = b"\x03mx1\xc0" + bytes([12 + 6 + 4])
            s.sendto(q + qname + struct.pack("!HH", A, 1) + tail, ("127.0.0.1", d.port))
            data, _ = s.recvfrom(512)
        assert data_of(parse(data)) == ["127.0.0.1"]


@test
def test_loopback_only():
    try:
        DnsServer(ZONE, host="0.0.0.0")
        raise AssertionError("accepted 0.0.0.0")
    except ValueError:
        pass
    with DnsServer(ZONE) as d:
        out = subprocess.run(["ss", "-lnu"], capture_output=True, text=True, check=False).stdout \
            if shutil.which("ss") else ""
        if out:
            mine = [line for line in out.splitlines() if f":{d.port} " in line]
            assert mine and all("127.0.0.1:" in line for line in mine), mine


@test
def test_stop_is_idempotent_and_frees_the_port():
    d = DnsServer(ZONE).start()
    port = d.port
    d.stop()
    d.stop()
    with DnsServer(ZONE, port=port) as d2:
        assert d2.port == port
        assert data_of(ask_udp(port, "mx1.example.test", A)) == ["127.0.0.1"]


@test
def test_cli():
    with tempfile.TemporaryDirectory() as tmp:
        zonef = os.path.join(tmp, "zone.json")
        portf = os.path.join(tmp, "port")
        logf = os.path.join(tmp, "queries.log")
        with open(zonef, "w") as f:
            json.dump(ZONE, f)
        p = subprocess.Popen([sys.executable, os.path.join(HARNESS, "dnsserver.py"), "--zone", zonef,
                              "--port", "0", "--port-file", portf, "--log", logf, "--max-time", "60"],
                             stdout=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline().strip()
            assert first.startswith("listening on 127.0.0.1:"), first
            port = int(first.rsplit(":", 1)[1])
            with open(portf) as f:
                assert int(f.read()) == port
            r = ask_udp(port, "example.test", MX)
            assert data_of(r) == [(10, "mx1.example.test"), (20, "mx2.example.test")]
            ask_udp(port, "nullmx.test", MX)
            with open(logf) as f:
                assert f.read() == "example.test MX\nnullmx.test MX\n"
            # SIGHUP reloads the zone.
            with open(zonef, "w") as f:
                json.dump({"reloaded.test": {"A": ["127.0.0.7"]}}, f)
            p.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if data_of(ask_udp(port, "reloaded.test", A)) == ["127.0.0.7"]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the zone was not reloaded")
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()


@test
def test_dig_if_installed():
    dig = shutil.which("dig")
    if dig is None:
        return
    with DnsServer(ZONE) as d:
        out = subprocess.run([dig, "+short", "+tries=1", "+time=2", "-p", str(d.port), "@127.0.0.1",
                              "example.test", "MX"], capture_output=True, text=True, timeout=10).stdout
        assert out.split("\n")[:2] == ["10 mx1.example.test.", "20 mx2.example.test."], out


def main():
    signal.alarm(120)	# nothing here may hang the test run
    passed = failed = 0
    for fn in TESTS:
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception:	# noqa: BLE001 - report and go on
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
