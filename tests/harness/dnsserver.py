#!/usr/bin/python3
"""dnsserver: a tiny authoritative DNS server on loopback, for Hato's tests.

It answers from a zone given as a Python dict (or a JSON file on the command
line), over UDP and TCP on the same port of 127.0.0.1, and writes the DNS
wire format itself (RFC 1035), with no DNS library underneath, so every
answer is under the test's control: MX for delivery, A/AAAA for the
exchangers, TXT for SPF/DKIM/DMARC, PTR for reverse lookups and blocklists.

As a library (the harness folder is on PYTHONPATH under ctest):

    from dnsserver import DnsServer, reverse_name

    zone = {
        "example.test": {"MX": [(10, "mx1.example.test"), (20, "mx2.example.test")],
                         "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx1.example.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
        "short.test": {"MX": {"ttl": 1, "records": [(10, "mx1.example.test")]}},
        "nullmx.test": {"MX": [(0, ".")]},
        "broken.test": "SERVFAIL",
        "slow.test": {"DELAY": 10, "MX": [(10, "mx1.example.test")]},
        reverse_name("127.0.0.1"): {"PTR": ["mx1.example.test"]},
    }
    with DnsServer(zone) as dns:
        ... ask 127.0.0.1:dns.port ...
        print(dns.queries)          # [("example.test", "MX"), ...]

DnsServer(zone, port=0, host="127.0.0.1", verbose=False)
    port 0 picks a port free for both UDP and TCP; after start(), .port is
    the real one. host must be a loopback address: the server never listens
    anywhere else.

start() -> self      runs the server in a background thread with its own
                     event loop; returns once it is listening (raises when
                     it cannot listen).
stop()               closes the sockets, drops delayed answers, joins the
                     thread. Idempotent. Also a context manager.
set_zone(zone)       replaces the zone at run time (ValueError when malformed).
queries              a copy of [(name, type)] for every query received, in
                     order: name lower-cased without the final dot, type as
                     "A", "MX", ... or "TYPE99" for an unknown one.
clear_queries()      empties that list.

The zone
--------
Keys are owner names (case-insensitive, with or without the final dot; a
leading "*." makes a wildcard that answers for names below it that are not in
the zone). A value is either a string, the response code for every question
about that name ("SERVFAIL", "REFUSED", "NXDOMAIN", "NOTIMP", "FORMERR") or
"DROP" (never answer), or a dict of record sets and behaviours:

    "A": ["127.0.0.1", ...]          "AAAA": ["::1", ...]
    "MX": [(pref, "host"), ...]      host "." (or "") is the root: a null MX
    "TXT": ["text", ...]             a text longer than 255 bytes is split
                                     into several strings of one record; a
                                     list of strings gives them explicitly
    "PTR": ["host", ...]             "NS": ["host", ...]
    "CNAME": "target"                answers for every type but CNAME with
                                     the CNAME, then the target's records
                                     when the target is in the zone
    "SOA": [(mname, rname, serial, refresh, retry, expire, minimum)]
    "TTL": seconds                   default TTL of this name's record sets
    "DELAY": seconds                 answer only after that long (a float;
                                     the client will have timed out)
    "RCODE": "SERVFAIL", ...         the same as a plain string value

A record set may also be {"ttl": seconds, "records": [...]} to give it its
own TTL. The default TTL is 300. In JSON, tuples are lists.

A name absent from the zone is NXDOMAIN; a name present without the asked
type, or with names below it in the zone, is NOERROR with no answer (NODATA). Both carry, in the authority
section, the SOA of the closest enclosing name that has one (its TTL is
min(SOA TTL, minimum), as RFC 2308 asks), when there is one.

Over UDP, an answer longer than 512 bytes (or the EDNS payload size the
query advertises) is sent truncated (TC) with no records, so the client
retries over TCP. A query with an OPT record gets one back. ANY is answered
with every record set of the name.

The command line, for tests written in C:

    /usr/bin/python3 tests/harness/dnsserver.py --zone FILE.json [--port N]
        [--port-file FILE] [--log FILE] [--max-time SECS] [--verbose]

prints "listening on 127.0.0.1:PORT" once listening (and writes PORT to the
--port-file, atomically), appends "name TYPE" for each query received to the
--log file (flushed at once, before the answer is sent), runs until SIGTERM
or SIGINT (or --max-time seconds), and reloads the zone file on SIGHUP.
"""

import argparse
import asyncio
import ipaddress
import json
import socket
import struct
import sys
import threading

import peerloop

DEFAULT_TTL = 300

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
         "AAAA": 28, "OPT": 41, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
RECORD_TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "NS", "CNAME", "SOA")
BEHAVIOURS = ("TTL", "DELAY", "RCODE")
CLASS_IN = 1


def type_name(t):
    return TYPE_NAMES.get(t, f"TYPE{t}")


def reverse_name(ip):
    """The PTR owner name of an address: "1.0.0.127.in-addr.arpa", "...ip6.arpa"."""
    return ipaddress.ip_address(ip).reverse_pointer


def norm(name):
    return name.rstrip(".").lower()


# ---- the wire format ----

class FormatError(Exception):
    pass


def encode_name(name):
    """A domain name as labels, uncompressed; "" and "." are the root."""
    out = bytearray()
    name = name.rstrip(".")
    if name:
        for label in name.split("."):
            raw = label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


def decode_name(msg, off):
    """(name, offset after it) at off in msg, following compression pointers."""
    labels = []
    end = None
    hops = 0
    while True:
        if off >= len(msg):
            raise FormatError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise FormatError("cut pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 64:
                raise FormatError("pointer loop")
            continue
        if n & 0xC0:
            raise FormatError("bad label type")
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise FormatError("label runs past the message")
        labels.append(msg[off:off + n].decode("latin-1"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def _txt_strings(value):
    if isinstance(value, (list, tuple)):
        parts = [p.encode() if isinstance(p, str) else bytes(p) for p in value]
    else:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        parts = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    for p in parts:
        if len(p) > 255:
            raise ValueError("a TXT string is at most 255 bytes")
    return parts


def encode_rdata(rtype, value):
    if rtype == "A":
        return ipaddress.IPv4Address(value).packed
    if rtype == "AAAA":
        return ipaddress.IPv6Address(value).packed
    if rtype == "MX":
        pref, host = value
        return struct.pack("!H", int(pref)) + encode_name(host)
    if rtype == "TXT":
        return b"".join(bytes([len(p)]) + p for p in _txt_strings(value))
    if rtype in ("PTR", "NS", "CNAME"):
        return encode_name(value)
    if rtype == "SOA":
        mname, rname, serial, refresh, retry, expire, minimum = value
        return (encode_name(mname) + encode_name(rname) +
                struct.pack("!IIIII", serial, refresh, retry, expire, minimum))
    raise ValueError(f"unknown record type {rtype}")


def encode_rr(name, rtype, ttl, rdata, rclass=CLASS_IN):
    return (encode_name(name) + struct.pack("!HHIH", TYPES[rtype], rclass, ttl, len(rdata)) + rdata)


def parse_query(msg):
    """(id, flags, qname, qtype, qclass, question bytes, edns payload or None).
    Raises FormatError when the question cannot be read."""
    if len(msg) < 12:
        raise FormatError("short header")
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    if qd != 1:
        raise FormatError("not one question")
    qname, off = decode_name(msg, 12)
    if off + 4 > len(msg):
        raise FormatError("cut question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    question = encode_name(qname) + msg[off:off + 4]
    off += 4
    payload = None
    # Skip answers and authority, look for an OPT in the additional section.
    try:
        for i in range(an + ns + ar):
            _, off = decode_name(msg, off)
            if off + 10 > len(msg):
                break
            rtype, rclass, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10 + rdlen
            if i >= an + ns and rtype == TYPES["OPT"]:
                payload = max(512, rclass)
    except FormatError:
        pass
    return qid, flags, qname, qtype, qclass, question, payload


def header(qid, flags, rcode, qd, an, ns, ar):
    return struct.pack("!HHHHHH", qid, flags | rcode, qd, an, ns, ar)


# ---- the zone ----

def _check_zone(zone):
    """A normalised copy: {name: str | {type: (ttl, [records])} plus behaviours}."""
    if not isinstance(zone, dict):
        raise ValueError("the zone is a dict of names")
    out = {}
    for name, value in zone.items():
        key = norm(name)
        encode_name(key.replace("*", "x"))
        if isinstance(value, str):
            if value != "DROP" and value not in RCODES:
                raise ValueError(f"{name}: unknown response {value!r}")
            out[key] = value
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{name}: a dict or a response code")
        entry = {}
        default_ttl = int(value.get("TTL", DEFAULT_TTL))
        for k, v in value.items():
            if k in BEHAVIOURS:
                continue
            if k not in RECORD_TYPES:
                raise ValueError(f"{name}: unknown key {k!r}")
            ttl = default_ttl
            if isinstance(v, dict):
                ttl = int(v.get("ttl", default_ttl))
                v = v.get("records", [])
            if k == "CNAME" and isinstance(v, str):
                v = [v]
            if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
                raise ValueError(f"{name} {k}: a list of records")
            records = [tuple(r) if isinstance(r, list) and k in ("MX", "SOA") else r for r in v]
            for r in records:
                encode_rdata(k, r)	# raises on a bad record
            entry[k] = (ttl, records)
        if "DELAY" in value:
            entry["DELAY"] = float(value["DELAY"])
        if "RCODE" in value:
            if value["RCODE"] != "DROP" and value["RCODE"] not in RCODES:
                raise ValueError(f"{name}: unknown RCODE")
            entry["RCODE"] = value["RCODE"]
        out[key] = entry
    return out


def _find(zone, name):
    """The zone entry answering for name: exact, else the closest wildcard."""
    if name in zone:
        return zone[name]
    labels = name.split(".")
    for i in range(1, len(labels)):
        wild = "*." + ".".join(labels[i:])
        if wild in zone:
            return zone[wild]
    return None


def _soa_for(zone, name):
    labels = name.split(".") if name else []
    for i in range(len(labels) + 1):
        owner = ".".join(labels[i:])
        entry = zone.get(owner)
        if isinstance(entry, dict) and "SOA" in entry and entry["SOA"][1]:
            ttl, records = entry["SOA"]
            soa = records[0]
            return owner, min(ttl, int(soa[6])), soa
    return None


def answer(zone, qname, qtype):
    """(rcode name, [answer rrs], [authority rrs], delay) for one question;
    rcode "DROP" means no answer at all."""
    name = norm(qname)
    entry = _find(zone, name)
    if entry is None:
        # A name with names below it exists, without records (an empty
        # non-terminal, such as "_domainkey.example.test"): NODATA.
        if name and any(k.endswith("." + name) for k in zone):
            return "NOERROR", [], _negative(zone, name), 0.0
        return "NXDOMAIN", [], _negative(zone, name), 0.0
    if isinstance(entry, str):
        return entry, [], [], 0.0
    delay = entry.get("DELAY", 0.0)
    if "RCODE" in entry:
        return entry["RCODE"], [], [], delay
    answers = []
    owner = qname.rstrip(".")
    seen = set()
    while True:
        if "CNAME" in entry and qtype != TYPES["CNAME"]:
            ttl, records = entry["CNAME"]
            target = records[0]
            answers.append(encode_rr(owner, "CNAME", ttl, encode_rdata("CNAME", target)))
            seen.add(norm(owner))
            nxt = _find(zone, norm(target))
            if norm(target) in seen or not isinstance(nxt, dict) or "RCODE" in nxt:
                return "NOERROR", answers, [], delay
            entry, owner = nxt, target.rstrip(".")
            continue
        for rtype in RECORD_TYPES:
            if rtype not in entry or not (qtype == TYPES["ANY"] or TYPES[rtype] == qtype):
                continue
            ttl, records = entry[rtype]
            for r in records:
                answers.append(encode_rr(owner, rtype, ttl, encode_rdata(rtype, r)))
        break
    if not answers:
        return "NOERROR", [], _negative(zone, name), delay
    return "NOERROR", answers, [], delay


def _negative(zone, name):
    found = _soa_for(zone, name)
    if found is None:
        return []
    owner, ttl, soa = found
    return [encode_rr(owner, "SOA", ttl, encode_rdata("SOA", soa))]


def build_response(zone, msg, udp):
    """(response bytes or None for no answer, delay, (name, type) or None)."""
    try:
        qid, flags, qname, qtype, qclass, question, payload = parse_query(msg)
    except FormatError:
        if len(msg) < 12:
            return None, 0.0, None
        qid, flags = struct.unpack("!HH", msg[:4])
        resp_flags = 0x8000 | (flags & 0x7900)
        return header(qid, resp_flags, RCODES["FORMERR"], 0, 0, 0, 0), 0.0, None
    logged = (norm(qname), type_name(qtype))
    if flags & 0x8000:
        return None, 0.0, None		# a response: never answer those
    # QR, AA, the opcode and RD copied; recursion is not available.
    resp_flags = 0x8000 | 0x0400 | (flags & 0x7900)
    opcode = (flags >> 11) & 0xF
    edns = b""
    if payload is not None:
        edns = b"\x00" + struct.pack("!HHIH", TYPES["OPT"], 4096, 0, 0)
    ar = 1 if edns else 0
    if opcode != 0 or qclass != CLASS_IN:
        return header(qid, resp_flags, RCODES["NOTIMP"], 1, 0, 0, ar) + question + edns, 0.0, logged
    rcode, answers, authority, delay = answer(zone, qname, qtype)
    if rcode == "DROP":
        return None, 0.0, logged
    body = question + b"".join(answers) + b"".join(authority)
    resp = header(qid, resp_flags, RCODES[rcode], 1, len(answers), len(authority), ar) + body + edns
    limit = payload if payload is not None else 512
    if udp and len(resp) > limit:
        resp = header(qid, resp_flags | 0x0200, RCODES[rcode], 1, 0, 0, ar) + question + edns
    return resp, delay, logged


# ---- the server ----

class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.server._handle(data, True, lambda resp: self.transport.sendto(resp, addr))


class DnsServer:
    def __init__(self, zone, port=0, host="127.0.0.1", verbose=False):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the test DNS server listens on loopback only")
        self.host = host
        self.port = port
        self.verbose = verbose
        self._zone = _check_zone(zone)
        self._lock = threading.Lock()
        self._queries = []
        self._log = None
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None
        self._stopping = None
        self._timers = set()
        self._writers = set()
        self._tasks = set()

    # -- public --

    def start(self):
        self._thread = threading.Thread(target=self._run, name="dnsserver", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread.join(5)
            raise self._error
        if not self._ready.is_set():
            raise OSError("the DNS server did not start")
        return self

    def stop(self):
        if self._loop is None or self._thread is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
        self._thread = None
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_zone(self, zone):
        checked = _check_zone(zone)
        with self._lock:
            self._zone = checked

    @property
    def queries(self):
        with self._lock:
            return list(self._queries)

    def clear_queries(self):
        with self._lock:
            self._queries.clear()

    def log_to(self, path):
        """Append "name TYPE" lines for every query to path."""
        with self._lock:
            self._log = open(path, "a", encoding="utf-8")

    # -- the loop thread --

    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception as e:	# noqa: BLE001 - handed to start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self):
        self._stopping = asyncio.Event()
        udp, tcp = await self._listen()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for h in list(self._timers):
                h.cancel()
            udp.close()
            tcp.close()
            for w in list(self._writers):
                w.close()
            # Let the connection handlers see their end, so none is left
            # pending when the loop closes.
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await tcp.wait_closed()

    async def _listen(self):
        loop = asyncio.get_running_loop()
        # Port 0: take a UDP port, then the same TCP port; retry when that
        # one is taken for TCP.
        for _ in range(50):
            usock = socket.socket(socket.AF_INET if ":" not in self.host else socket.AF_INET6,
                                  socket.SOCK_DGRAM)
            try:
                usock.bind((self.host, self.port))
                port = usock.getsockname()[1]
                tsock = socket.socket(usock.family, socket.SOCK_STREAM)
                tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    tsock.bind((self.host, port))
                except OSError:
                    tsock.close()
                    usock.close()
                    if self.port:
                        raise
                    continue
            except OSError:
                usock.close()
                raise
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=usock)
            tcp = await asyncio.start_server(self._tcp_client, sock=tsock)
            self.port = port
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    async def _tcp_client(self, reader, writer):
        self._writers.add(writer)
        self._tasks.add(asyncio.current_task())
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(reader.readexactly(2), 30)
                    msg = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", raw)[0]), 10)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return

                def send(resp, w=writer):
                    if not w.is_closing():
                        w.write(struct.pack("!H", len(resp)) + resp)
                self._handle(msg, False, send)
        finally:
            self._tasks.discard(asyncio.current_task())
            self._writers.discard(writer)
            writer.close()

    def _handle(self, msg, udp, send):
        with self._lock:
            zone = self._zone
        resp, delay, logged = build_response(zone, msg, udp)
        if logged is not None:
            with self._lock:
                self._queries.append(logged)
                if self._log is not None:
                    self._log.write(f"{logged[0]} {logged[1]}\n")
                    self._log.flush()
        if self.verbose:
            print(f"dnsserver: {'udp' if udp else 'tcp'} {logged} -> "
                  f"{'no answer' if resp is None else len(resp)} delay={delay}",
                  file=sys.stderr, flush=True)
        if resp is None:
            return
        if delay > 0:
            def later():
                self._timers.discard(handle)
                try:
                    send(resp)
                except OSError:
                    pass
            handle = self._loop.call_later(delay, later)
            self._timers.add(handle)
        else:
            try:
                send(resp)
            except OSError:
                pass


def _load_zone(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Authoritative test DNS server on 127.0.0.1.")
    ap.add_argument("--zone", required=True, help="the zone as a JSON file (see the module docstring)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--log", help="append 'name TYPE' for each query received to this file")
    ap.add_argument("--max-time", type=float, default=0, help="exit after this many seconds (0: never)")
    ap.add_argument("--verbose", action="store_true", help="print each query on stderr")
    args = ap.parse_args(argv)

    try:
        server = DnsServer(_load_zone(args.zone), port=args.port, verbose=args.verbose)
        if args.log:
            server.log_to(args.log)
        server.start()
    except (OSError, ValueError) as e:
        print(f"dnsserver: {e}", file=sys.stderr)
        return 1

    return peerloop.serve("dnsserver", server, "zone", lambda: server.set_zone(_load_zone(args.zone)),
                          args.port_file, args.max_time)


if __name__ == "__main__":
    sys.exit(main())
