#!/usr/bin/python3
"""smtpsink: a scriptable SMTP sink on loopback, for Hato's tests and benchmark.

It speaks enough SMTP (RFC 5321) to be the far end of Hato's SMTP client:
EHLO (multi-line, advertising PIPELINING, SIZE, 8BITMIME and
ENHANCEDSTATUSCODES), HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY, QUIT, and
when it is given a certificate and users, STARTTLS (RFC 3207) or implicit
TLS (RFC 8314) and AUTH PLAIN and LOGIN (RFC 4954). It records every
message it accepts, and it can be told, per recipient and per stage, to
refuse, defer, hang or drop the connection. It is plain asyncio and the
ssl module, with no SMTP library underneath, so every reply is under the
test's control.

As a library (from a test; the harness folder is on PYTHONPATH under ctest):

    from smtpsink import Sink

    script = {
        "greeting": "220 sink ESMTP",
        "pipelining": True,
        "rules": [
            {"match": "*@fail.example", "rcpt": ["550 5.1.1 User unknown"]},
            {"match": "retry@*", "rcpt": ["451 4.3.0 Try again later", "250 2.1.5 Ok"]},
            {"match": "slow@*", "dot": ["hang"]},
        ],
    }
    with Sink(script=script, record="/tmp/sink.jsonl", name="au") as sink:
        ... connect to 127.0.0.1:sink.port ...
        assert sink.wait_for(2, timeout=10)
        for m in sink.messages():
            print(m["rcpts"], m["data"])

Sink(port=0, host="127.0.0.1", script=None, record=None, name=None, verbose=False,
     tls_cert=None, tls_key=None, tls_mode="starttls", tls_client_ca=None, users=None)
    port 0 picks a free port; after start(), sink.port is the real one. host
    must be a loopback address: the sink never listens anywhere else. record
    is a path: every accepted message is appended to it as one JSON line.
    name (default "sink") is put in the greeting, the EHLO reply and every
    record. verbose prints the dialogue on stderr (AUTH credentials masked).

    TLS, with tls_cert (PEM certificate, chain allowed) and tls_key (PEM
    key; default: in tls_cert): tls_mode "starttls" advertises STARTTLS and
    starts TLS on it; "smtps" makes the listening socket implicit TLS (the
    greeting comes under TLS; a client that fails the handshake never
    reaches the SMTP dialogue). tls_client_ca (PEM) asks clients for a
    certificate, checked against it (optional for the client; its subject
    is recorded). After STARTTLS the session starts over, as RFC 3207 says:
    EHLO again, and nothing the client sent in clear after STARTTLS is read.

    AUTH, with users ({"name": "password"}; the script's "users" replaces
    them): AUTH PLAIN (with or without an initial response) and AUTH LOGIN
    are advertised and checked: 235 2.7.0 on success, 535 5.7.8 on a wrong
    name or password, 503 once authenticated. AUTH is offered in clear
    too, unless the script says "auth_without_tls": false (then 538 5.7.11
    before TLS, and not advertised).

start() -> self      runs the sink in a background thread with its own
                     event loop; returns once it is listening (raises when
                     it cannot listen).
stop()               closes the listener and every connection (hanging ones
                     too) and joins the thread. Idempotent. The sink is also
                     a context manager (start on enter, stop on exit).
set_script(script)   replaces the script at run time and restarts its reply
                     lists from the beginning. Raises ValueError when the
                     script is malformed (unknown key, bad reply).
messages()           a copy of the accepted messages, in order of acceptance.
mail_times()         [(t, mail_from)] for every MAIL command received,
                     whatever its reply: for pacing tests.
wait_for(count, timeout) -> bool
                     waits until at least count messages were accepted.
stats()              {"connections": total accepted connections,
                      "concurrent": open now, "max_concurrent": the most open
                      at once, "commands": commands received}.

All accessors are thread-safe.

A message record is a dict:

    t            time.time() when the final "." was received
    mail_from    the envelope sender, without <> ("" for the null sender)
    rcpts        the accepted recipients, in order
    data         the content as bytes, dot-unstuffed, line ends as received
                 (CRLF, or bare LF from a sloppy client), without the "."
    helo         the EHLO/HELO argument
    peer_port    the client's port (one per connection)
    conn         the connection's serial number in this sink (1, 2, ...)
    pipelined    whether a command of this transaction arrived before the
                 reply to the previous one was sent (the client pipelined)
    name         the sink's name
    tls          the TLS version of the connection ("TLSv1.3"), or None
    tls_cipher   its cipher suite, or None
    tls_client   the subject of the client's certificate ("CN=x"), or None
    auth_user    the user the client authenticated as, or None

In the JSONL record file, data is a string: the bytes decoded as latin-1,
so data.encode("latin-1") gives them back exactly.

The script
----------
A dict (or a JSON file for the command line). Every key is optional.

    "greeting" (or "connect")   the reply on connect. Default "220 NAME ESMTP smtpsink".
    "ehlo", "helo", "rset", "quit"
                                replace the reply to that command.
    "pipelining": bool          advertise PIPELINING (default True).
    "size": int                 advertised and enforced SIZE (default 10485760;
                                0 advertises a bare SIZE and enforces 64 MiB).
    "8bitmime": bool            advertise 8BITMIME (default True).
    "extensions": [str]         more EHLO keywords to advertise ("STARTTLS",
                                "AUTH PLAIN"): advertised only; STARTTLS and
                                AUTH work only with a certificate or users
                                (else 502, unless "starttls"/"auth" says).
    "starttls", "auth"          replace the reply to STARTTLS (a 220 starts
                                TLS when there is a certificate, and is only
                                said when there is none) or the outcome of
                                a complete AUTH exchange (any reply; 2xx
                                counts as authenticated).
    "auth_mechanisms": [str]    the AUTH mechanisms advertised and taken
                                (default ["PLAIN", "LOGIN"]; only those two
                                are known).
    "auth_without_tls": bool    offer and take AUTH without TLS (default True).
    "users": {name: password}   the users for AUTH (replace the constructor's).
    "rules": [rule]             per-recipient behaviour, see below.

Each of the session-level values above that is a reply may be a string or a
list of strings: a list gives one reply per attempt (per connection for the
greeting, per command otherwise), in order, and its last reply repeats.

A rule is {"match": PATTERN, "from": PATTERN, STAGE: REPLIES, ...}:

    match   fnmatch pattern on the lower-cased recipient (default "*").
    from    fnmatch pattern on the lower-cased sender (default "*").
    STAGE   one of "mail" (the reply to MAIL; only "from" is looked at, no
            recipient is known yet), "rcpt" (the reply to RCPT for that
            recipient), "data" (the reply to DATA), "content" (what to do
            instead of reading the message after 354: only "freeze",
            "close" or "hang"; or "early REPLY": say REPLY at once, before
            the message, then read it and answer the dot as usual, as a
            broken server does), "dot" (the reply after the message). For
            "data", "content" and "dot", the rule applies when any accepted
            recipient of the transaction matches.

The first rule, in order, that matches and has the stage decides. Its list
of replies is consumed one per attempt, per rule and stage; the last one
repeats. Without a matching rule the sink answers the usual 250/354.

A reply is an SMTP reply ("451 4.3.0 Try again later"; "\\n" separates the
lines of a multi-line reply, each written with its own code) or a special:

    "hang"              never answer; read and discard until the client
                        goes away.
    "freeze"            never answer and stop reading, so that the client's
                        writes back up (to test its send timeouts); the
                        connection stays until the sink stops.
    "close"             drop the connection at once.
    "sleep SECS REPLY"  wait SECS seconds (a float), then answer REPLY.

After a 421 reply the sink closes the connection, as a server must.

The sink never exits because of a client: a line over 8 KiB (1 MiB in
DATA) gets an error reply, a message over the size limit gets 552, and an
unexpected error closes only that connection (and is printed on stderr).

The command line, for manual use and the benchmark:

    /usr/bin/python3 tests/harness/smtpsink.py --port N --record FILE.jsonl \\
        [--script FILE.json] [--port-file FILE] [--name NAME] [--max-time SECS] [--verbose]
        [--tls-cert FILE --tls-key FILE [--tls-mode starttls|smtps] [--tls-client-ca FILE]]
        [--users FILE.json]

prints "listening on 127.0.0.1:PORT" once listening (and writes PORT to the
--port-file, atomically), runs until SIGTERM or SIGINT (or --max-time
seconds), and reloads the script file on SIGHUP.
"""

import argparse
import asyncio
import base64
import binascii
import fnmatch
import ipaddress
import json
import ssl
import sys
import threading
import time
import traceback

import peerloop

LINE_LIMIT = 8192		# a command line
DATA_LINE_LIMIT = 1 << 20	# one line of message content
MAX_RCPTS = 1000		# recipients in one transaction
DEFAULT_SIZE = 10 * 1024 * 1024
UNBOUNDED_SIZE = 64 * 1024 * 1024	# what "size": 0 still enforces

SESSION_STAGES = ("greeting", "connect", "ehlo", "helo", "rset", "quit", "starttls", "auth")
RULE_STAGES = ("mail", "rcpt", "data", "content", "dot")
SPECIALS = ("hang", "freeze", "close")
SCRIPT_KEYS = set(SESSION_STAGES) | {"pipelining", "size", "8bitmime", "extensions", "rules",
                                     "auth_mechanisms", "auth_without_tls", "users"}
AUTH_MECHANISMS = ("PLAIN", "LOGIN")
TLS_MODES = ("starttls", "smtps")
RULE_KEYS = set(RULE_STAGES) | {"match", "from"}

_TOO_LONG = object()	# what _Lines.get returns for a line over the limit


def _check_reply(reply, where):
    """Raises ValueError unless reply is something the sink can say."""
    if not isinstance(reply, str):
        raise ValueError(f"{where}: reply {reply!r} is not a string")
    if reply in SPECIALS:
        return
    if where.endswith(".content"):
        if reply.startswith("early "):
            return _check_reply(reply[6:], where[:-len(".content")] + ".early")
        raise ValueError(f"{where}: only {', '.join(SPECIALS)} or \"early REPLY\" here, not {reply!r}")
    if reply.startswith("sleep "):
        parts = reply.split(" ", 2)
        try:
            secs = float(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"{where}: bad sleep in {reply!r}") from None
        if secs < 0 or len(parts) < 3:
            raise ValueError(f"{where}: bad sleep in {reply!r}")
        _check_reply(parts[2], where)
        return
    for line in reply.split("\n"):
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            raise ValueError(f"{where}: {line!r} is not an SMTP reply line")


def _reply_list(value, where):
    replies = [value] if isinstance(value, str) else value
    if not isinstance(replies, list) or not replies:
        raise ValueError(f"{where}: want a reply or a non-empty list of replies")
    for r in replies:
        _check_reply(r, where)
    return replies


def _check_script(script):
    """Validates a script; returns it normalised (every reply a list)."""
    if script is None:
        script = {}
    if not isinstance(script, dict):
        raise ValueError("script: want a dict")
    unknown = set(script) - SCRIPT_KEYS
    if unknown:
        raise ValueError(f"script: unknown keys {sorted(unknown)}")
    out = dict(script)
    for stage in SESSION_STAGES:
        if stage in script:
            out[stage] = _reply_list(script[stage], stage)
    if "connect" in out and "greeting" not in out:
        out["greeting"] = out["connect"]
    if not isinstance(script.get("size", 0), int) or script.get("size", 0) < 0:
        raise ValueError("size: want a non-negative integer")
    ext = script.get("extensions", [])
    if not isinstance(ext, list) or not all(isinstance(e, str) and e and "\n" not in e for e in ext):
        raise ValueError("extensions: want a list of keywords")
    mechs = script.get("auth_mechanisms", list(AUTH_MECHANISMS))
    if not isinstance(mechs, list) or not all(isinstance(m, str) and m.upper() in AUTH_MECHANISMS for m in mechs):
        raise ValueError(f"auth_mechanisms: want a list of {', '.join(AUTH_MECHANISMS)}")
    out["auth_mechanisms"] = [m.upper() for m in mechs]
    if not isinstance(script.get("auth_without_tls", True), bool):
        raise ValueError("auth_without_tls: want a bool")
    if "users" in script:
        _check_users(script["users"], "users")
    rules = []
    for i, rule in enumerate(script.get("rules", [])):
        if not isinstance(rule, dict):
            raise ValueError(f"rules[{i}]: want a dict")
        unknown = set(rule) - RULE_KEYS
        if unknown:
            raise ValueError(f"rules[{i}]: unknown keys {sorted(unknown)}")
        r = {"match": str(rule.get("match", "*")).lower(), "from": str(rule.get("from", "*")).lower()}
        for stage in RULE_STAGES:
            if stage in rule:
                r[stage] = _reply_list(rule[stage], f"rules[{i}].{stage}")
        rules.append(r)
    out["rules"] = rules
    return out


def _check_users(users, where):
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ValueError(f"{where}: want a dict of user name to password")
    return dict(users)


def _b64(text):
    """The base64 text of an AUTH exchange, decoded; None when it is not base64."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None


def _final_code(reply):
    """The code a reply ends up sending, or None for hang/close."""
    while reply.startswith("sleep "):
        reply = reply.split(" ", 2)[2]
    if reply in SPECIALS:
        return None
    return int(reply[:3])


def _addr(arg, keyword):
    """The address and parameters of "FROM:<a> SIZE=1"; None when malformed."""
    if not arg[:len(keyword)].upper() == keyword:
        return None
    rest = arg[len(keyword):].lstrip(" ")
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        return rest[1:end], rest[end + 1:].strip()
    # Sloppy clients send the path without <>.
    parts = rest.split(" ", 1)
    if not parts[0]:
        return None
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


class _Lines:
    """Line reader with a bound: the stream's own readline would either grow
    without limit or lose our place in the buffer on an overlong line."""

    def __init__(self, reader):
        self.reader = reader
        self.buf = bytearray()
        self.eof = False

    def pending(self):
        """Whether more input is already here (the client pipelined)."""
        return len(self.buf) > 0

    async def get(self, limit):
        """One line with its terminator (LF or CRLF), a partial line at EOF,
        None at EOF, or _TOO_LONG after discarding an overlong line."""
        discarding = False
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl + 1])
                del self.buf[:nl + 1]
                return _TOO_LONG if discarding or len(line) > limit else line
            if len(self.buf) > limit:
                discarding = True
                self.buf.clear()
            if self.eof:
                if self.buf and not discarding:
                    line = bytes(self.buf)
                    self.buf.clear()
                    return line
                return None
            data = await self.reader.read(65536)
            if not data:
                self.eof = True
            else:
                self.buf += data


class _Session:
    """One client connection: reads commands in order, answers each."""

    def __init__(self, sink, reader, writer, serial):
        self.sink = sink
        self.reader = reader
        self.writer = writer
        self.lines = _Lines(reader)
        self.serial = serial
        peer = writer.get_extra_info("peername")
        self.peer_port = peer[1] if peer else 0
        self.helo = None
        self.auth_user = None
        self.tls = self.tls_cipher = self.tls_client = None
        self.tls_note()
        self.reset()

    def tls_note(self):
        """Notes the connection's TLS (implicit, or after STARTTLS), if any."""
        obj = self.writer.get_extra_info("ssl_object")
        if obj is None:
            return
        self.tls = obj.version()
        cipher = obj.cipher()
        self.tls_cipher = cipher[0] if cipher else None
        cert = obj.getpeercert()
        if cert:
            self.tls_client = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        self.log("*", f"TLS {self.tls} {self.tls_cipher}")

    def reset(self):
        self.mail_from = None
        self.rcpts = []
        self.pipelined = False

    def log(self, direction, text):
        if self.sink.verbose:
            print(f"smtpsink[{self.sink.name}#{self.serial}] {direction} {text}", file=sys.stderr, flush=True)

    async def run(self):
        greeting = self.sink._session_reply("greeting") or f"220 {self.sink.name} ESMTP smtpsink"
        if not await self.reply(greeting):
            return
        while True:
            line = await self.lines.get(LINE_LIMIT)
            if line is None:
                return
            if line is _TOO_LONG:
                if not await self.reply("500 5.5.2 Error: line too long"):
                    return
                continue
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if cmd[:5].upper() == "AUTH ":
                self.log("<", " ".join(cmd.split()[:2]) + " (credentials)")
            else:
                self.log("<", cmd)
            self.sink._count_command()
            if not await self.command(cmd):
                return

    async def reply(self, text):
        """Says text (or hangs, closes, sleeps); False when the session is over."""
        if text == "hang":
            self.log(">", "(hang)")
            await self.hang()
            return False
        if text == "freeze":
            self.log(">", "(freeze)")
            await asyncio.Event().wait()	# until the sink stops
            return False
        if text == "close":
            self.log(">", "(close)")
            self.writer.transport.abort()
            return False
        if text.startswith("sleep "):
            _, secs, rest = text.split(" ", 2)
            await asyncio.sleep(float(secs))
            return await self.reply(rest)
        out = b""
        for line in text.split("\n"):
            line = line.rstrip("\r")
            self.log(">", line)
            out += line.encode("utf-8") + b"\r\n"
        self.writer.write(out)
        await self.writer.drain()
        if text.startswith("421"):
            # RFC 5321 §3.8: a 421 is the server closing the channel.
            self.writer.close()
            return False
        return True

    async def hang(self):
        """Answers nothing until the client goes away (or the sink stops)."""
        while await self.reader.read(65536):
            pass

    async def command(self, cmd):
        verb, _, arg = cmd.partition(" ")
        verb = verb.upper()
        handler = {
            "EHLO": self.do_ehlo, "HELO": self.do_helo, "MAIL": self.do_mail,
            "RCPT": self.do_rcpt, "DATA": self.do_data, "RSET": self.do_rset,
            "NOOP": self.do_noop, "QUIT": self.do_quit, "VRFY": self.do_vrfy,
            "STARTTLS": self.do_starttls, "AUTH": self.do_auth,
        }.get(verb)
        if handler is None:
            return await self.reply("502 5.5.2 Error: command not recognized")
        return await handler(arg.strip())

    async def do_ehlo(self, arg):
        if not arg:
            return await self.reply("501 5.5.4 Syntax: EHLO hostname")
        self.helo = arg
        self.reset()
        scripted = self.sink._session_reply("ehlo")
        if scripted:
            return await self.reply(scripted)
        return await self.reply(self.sink._ehlo_reply(self.tls is not None, self.auth_user is not None))

    async def do_helo(self, arg):
        if not arg:
            return await self.reply("501 5.5.4 Syntax: HELO hostname")
        self.helo = arg
        self.reset()
        return await self.reply(self.sink._session_reply("helo") or f"250 {self.sink.name}")

    async def do_mail(self, arg):
        pipelined = self.lines.pending()
        parsed = _addr(arg, "FROM:")
        if parsed is not None:
            self.sink._note_mail(parsed[0])
        if self.helo is None:
            return await self.reply("503 5.5.1 Error: send HELO/EHLO first")
        if self.mail_from is not None:
            return await self.reply("503 5.5.1 Error: nested MAIL command")
        if parsed is None:
            return await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
        sender, params = parsed
        for p in params.split():
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and v.isdigit() and int(v) > self.sink._max_size():
                return await self.reply("552 5.3.4 Message size exceeds fixed limit")
        reply = self.sink._rule_reply("mail", [], sender) or "250 2.1.0 Ok"
        if _final_code(reply) is not None and _final_code(reply) // 100 == 2:
            self.mail_from = sender
            self.pipelined = pipelined
        return await self.reply(reply)

    async def do_rcpt(self, arg):
        pipelined = self.lines.pending()
        if self.mail_from is None:
            return await self.reply("503 5.5.1 Error: need MAIL command")
        parsed = _addr(arg, "TO:")
        if parsed is None or not parsed[0]:
            return await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
        if len(self.rcpts) >= MAX_RCPTS:
            return await self.reply("452 4.5.3 Error: too many recipients")
        self.pipelined = self.pipelined or pipelined
        rcpt = parsed[0]
        reply = self.sink._rule_reply("rcpt", [rcpt], self.mail_from) or "250 2.1.5 Ok"
        if _final_code(reply) is not None and _final_code(reply) // 100 == 2:
            self.rcpts.append(rcpt)
        return await self.reply(reply)

    async def do_data(self, arg):
        if self.mail_from is None:
            return await self.reply("503 5.5.1 Error: need MAIL command")
        if not self.rcpts:
            return await self.reply("554 5.5.1 Error: no valid recipients")
        if arg:
            return await self.reply("501 5.5.4 Syntax: DATA")
        reply = self.sink._rule_reply("data", self.rcpts, self.mail_from) or \
            "354 End data with <CR><LF>.<CR><LF>"
        if _final_code(reply) != 354:
            return await self.reply(reply)
        special = self.sink._rule_reply("content", self.rcpts, self.mail_from)
        if special is not None and special.startswith("early "):
            # A broken server: it answers before the message (in the same
            # write as the 354, so that the client reads both at once),
            # then reads the message and answers again after the dot.
            if not await self.reply(reply + "\n" + special[6:]):
                return False
        else:
            if not await self.reply(reply):
                return False
            if special is not None:
                return await self.reply(special)
        got = await self.read_data()
        if got is None:
            return False
        data, t, problem = got
        if problem:
            self.reset()
            return await self.reply(problem)
        reply = self.sink._rule_reply("dot", self.rcpts, self.mail_from)
        if reply is None:
            reply = f"250 2.0.0 Ok: queued as {self.sink._next_queue_id()}"
        code = _final_code(reply)
        if code is not None and code // 100 == 2:
            self.sink._record({
                "t": t, "mail_from": self.mail_from, "rcpts": list(self.rcpts),
                "data": data, "helo": self.helo, "peer_port": self.peer_port,
                "conn": self.serial, "pipelined": self.pipelined, "name": self.sink.name,
                "tls": self.tls, "tls_cipher": self.tls_cipher, "tls_client": self.tls_client,
                "auth_user": self.auth_user,
            })
        self.reset()
        return await self.reply(reply)

    async def read_data(self):
        """The content up to ".": (data, t, problem) or None on EOF."""
        chunks = []
        size = 0
        limit = self.sink._max_size()
        problem = None
        while True:
            line = await self.lines.get(DATA_LINE_LIMIT)
            if line is None or (line is not _TOO_LONG and not line.endswith(b"\n")):
                return None
            if line is _TOO_LONG:
                problem = problem or "552 5.3.4 Error: message line too long"
                chunks = []
                continue
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > limit:
                problem = problem or "552 5.3.4 Message size exceeds fixed limit"
                chunks = []
                continue
            if problem is None:
                chunks.append(line)
        t = time.time()
        self.log("<", f"({size} octets of data)")
        return b"".join(chunks), t, problem

    async def do_rset(self, arg):
        self.reset()
        return await self.reply(self.sink._session_reply("rset") or "250 2.0.0 Ok")

    async def do_noop(self, arg):
        return await self.reply("250 2.0.0 Ok")

    async def do_vrfy(self, arg):
        return await self.reply("252 2.0.0 Cannot VRFY user")

    async def do_quit(self, arg):
        await self.reply(self.sink._session_reply("quit") or "221 2.0.0 Bye")
        return False

    async def do_starttls(self, arg):
        ctx = self.sink._starttls_ctx()
        scripted = self.sink._session_reply("starttls")
        if ctx is None and scripted is None:
            return await self.reply("502 5.5.2 Error: command not recognized")
        if self.tls is not None:
            return await self.reply("554 5.5.1 Error: TLS already active")
        if arg:
            return await self.reply("501 5.5.4 Syntax: STARTTLS")
        reply = scripted or "220 2.0.0 Ready to start TLS"
        if _final_code(reply) != 220 or ctx is None:
            return await self.reply(reply)
        if not await self.reply(reply):
            return False
        # RFC 3207 §4.2: what came in clear after STARTTLS is not a command.
        self.lines.buf.clear()
        try:
            await self.writer.start_tls(ctx)
        except (ssl.SSLError, OSError) as e:
            self.log("*", f"TLS handshake failed: {e}")
            return False
        self.tls_note()
        self.helo = None
        self.auth_user = None
        self.reset()
        return True

    async def auth_line(self, challenge):
        """Sends a 334 challenge; the client's answer, or None when the session is over."""
        if not await self.reply(f"334 {challenge}"):
            return None
        line = await self.lines.get(LINE_LIMIT)
        if line is None or line is _TOO_LONG:
            return None if line is None else ""
        self.log("<", "(credentials)")
        return line.rstrip(b"\r\n").decode("utf-8", "replace")

    async def auth_credentials(self, mech, initial):
        """(user, password) from the exchange; a reply text when it failed;
        None when the session is over."""
        if mech == "PLAIN":
            resp = initial if initial is not None else await self.auth_line("")
            if resp is None:
                return None
            if resp == "*":
                return "501 5.7.0 Authentication aborted"
            raw = _b64(resp)
            parts = raw.split(b"\0") if raw is not None else []
            if len(parts) != 3:
                return "501 5.5.2 Error: malformed AUTH PLAIN response"
            return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
        user = initial if initial is not None else await self.auth_line("VXNlcm5hbWU6")
        if user is None:
            return None
        password = await self.auth_line("UGFzc3dvcmQ6") if user != "*" else "*"
        if password is None:
            return None
        if "*" in (user, password):
            return "501 5.7.0 Authentication aborted"
        user, password = _b64(user), _b64(password)
        if user is None or password is None:
            return "501 5.5.2 Error: cannot decode AUTH LOGIN response"
        return user.decode("utf-8", "replace"), password.decode("utf-8", "replace")

    async def do_auth(self, arg):
        users = self.sink._users()
        if users is None and not self.sink._has_session_reply("auth"):
            return await self.reply("502 5.5.2 Error: command not recognized")
        if self.helo is None:
            return await self.reply("503 5.5.1 Error: send EHLO first")
        if self.auth_user is not None:
            return await self.reply("503 5.5.1 Error: already authenticated")
        if self.mail_from is not None:
            return await self.reply("503 5.5.1 Error: MAIL transaction in progress")
        if self.tls is None and not self.sink._auth_without_tls():
            return await self.reply("538 5.7.11 Encryption required for requested authentication mechanism")
        words = arg.split()
        mech = words[0].upper() if words else ""
        if mech not in self.sink._auth_mechanisms():
            return await self.reply("504 5.5.4 Unrecognized authentication type")
        got = await self.auth_credentials(mech, words[1] if len(words) > 1 else None)
        if got is None:
            return False
        if isinstance(got, str):
            return await self.reply(got)
        user, password = got
        ok = users is not None and user in users and users[user] == password
        reply = self.sink._session_reply("auth") or \
            ("235 2.7.0 Authentication successful" if ok else "535 5.7.8 Error: authentication failed")
        code = _final_code(reply)
        if code is not None and code // 100 == 2:
            self.auth_user = user
        self.log("*", f"AUTH {mech} as {user!r}: {reply.split(chr(10))[0]}")
        return await self.reply(reply)


class Sink:
    """A scriptable SMTP sink on loopback; see the module docstring."""

    def __init__(self, port=0, host="127.0.0.1", script=None, record=None, name=None, verbose=False,
                 tls_cert=None, tls_key=None, tls_mode="starttls", tls_client_ca=None, users=None):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"smtpsink listens on loopback only, not {host}")
        if tls_mode not in TLS_MODES:
            raise ValueError(f"tls_mode: want one of {', '.join(TLS_MODES)}, not {tls_mode!r}")
        if tls_mode == "smtps" and not tls_cert:
            raise ValueError("tls_mode smtps needs tls_cert")
        self._tls_mode = tls_mode
        self._tls_ctx = None
        if tls_cert:
            self._tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls_ctx.load_cert_chain(tls_cert, tls_key)
            if tls_client_ca:
                self._tls_ctx.load_verify_locations(tls_client_ca)
                self._tls_ctx.verify_mode = ssl.CERT_OPTIONAL
        self._users_arg = _check_users(users, "users") if users is not None else None
        self.host = host
        self.port = port
        self.name = name or "sink"
        self.verbose = verbose
        self._want_port = port
        self._record_path = record
        self._record_file = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._messages = []
        self._mail_times = []
        self._stats = {"connections": 0, "concurrent": 0, "max_concurrent": 0, "commands": 0}
        self._queue_id = 0
        self._script = _check_script(script)
        self._counts = {}
        self._thread = None
        self._loop = None
        self._stopping = None
        self._ready = threading.Event()
        self._error = None
        self._conns = set()

    # -- the owner's side (any thread) --

    def start(self):
        if self._thread is not None:
            raise RuntimeError("smtpsink: already started")
        if self._record_path:
            self._record_file = open(self._record_path, "a", encoding="utf-8")
        self._thread = threading.Thread(target=self._thread_main, name=f"smtpsink-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("smtpsink: did not start listening within 10 s")
        if self._error is not None:
            self._thread.join(5)
            self._close_record()
            raise self._error
        return self

    def stop(self):
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass	# the loop is already closed
        thread.join(10)
        if thread.is_alive():
            print(f"smtpsink[{self.name}]: thread did not stop within 10 s", file=sys.stderr)
        self._thread = None
        self._close_record()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_script(self, script):
        checked = _check_script(script)
        with self._lock:
            self._script = checked
            self._counts = {}

    def messages(self):
        with self._lock:
            return [dict(m, rcpts=list(m["rcpts"])) for m in self._messages]

    def mail_times(self):
        with self._lock:
            return list(self._mail_times)

    def wait_for(self, count, timeout):
        with self._cond:
            return self._cond.wait_for(lambda: len(self._messages) >= count, timeout)

    def stats(self):
        with self._lock:
            return dict(self._stats)

    # -- the loop's side --

    def _thread_main(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:	# noqa: BLE001 - reported to start()
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                traceback.print_exc()
        finally:
            loop.close()

    async def _main(self):
        self._stopping = asyncio.Event()
        try:
            implicit = self._tls_ctx if self._tls_mode == "smtps" else None
            server = await asyncio.start_server(self._accept, self.host, self._want_port,
                                                reuse_address=True, limit=LINE_LIMIT, ssl=implicit,
                                                ssl_handshake_timeout=10 if implicit else None)
        except OSError as e:
            self._error = e
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for conn in list(self._conns):
                conn.cancel()
            if self._conns:
                await asyncio.gather(*self._conns, return_exceptions=True)
            await server.wait_closed()

    async def _accept(self, reader, writer):
        me = asyncio.current_task()
        self._conns.add(me)
        with self._lock:
            self._stats["connections"] += 1
            serial = self._stats["connections"]
            self._stats["concurrent"] += 1
            self._stats["max_concurrent"] = max(self._stats["max_concurrent"], self._stats["concurrent"])
        session = _Session(self, reader, writer, serial)
        try:
            await session.run()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        except Exception:	# noqa: BLE001 - one bad client never stops the sink
            print(f"smtpsink[{self.name}#{serial}]: session failed:", file=sys.stderr)
            traceback.print_exc()
        finally:
            # A clean close flushes a last reply (221, 421); a client that
            # never reads it is cut off when the sink stops.
            if writer.transport.get_write_buffer_size() == 0:
                writer.close()
            else:
                writer.transport.abort()
            with self._lock:
                self._stats["concurrent"] -= 1
            self._conns.discard(me)

    def _session_reply(self, stage):
        with self._lock:
            replies = self._script.get(stage)
            if not replies:
                return None
            n = self._counts.get(("session", stage), 0)
            self._counts[("session", stage)] = n + 1
            return replies[min(n, len(replies) - 1)]

    def _rule_reply(self, stage, rcpts, sender):
        sender = (sender or "").lower()
        with self._lock:
            for i, rule in enumerate(self._script["rules"]):
                if stage not in rule:
                    continue
                if not fnmatch.fnmatchcase(sender, rule["from"]):
                    continue
                if stage != "mail" and not any(fnmatch.fnmatchcase(r.lower(), rule["match"]) for r in rcpts):
                    continue
                n = self._counts.get((i, stage), 0)
                self._counts[(i, stage)] = n + 1
                replies = rule[stage]
                return replies[min(n, len(replies) - 1)]
        return None

    def _ehlo_reply(self, tls=False, authed=False):
        with self._lock:
            s = self._script
            size = s.get("size", DEFAULT_SIZE)
            lines = [self.name]
            if s.get("pipelining", True):
                lines.append("PIPELINING")
            lines.append(f"SIZE {size}" if size else "SIZE")
            if s.get("8bitmime", True):
                lines.append("8BITMIME")
            ext = s.get("extensions", [])
            lines.extend(ext)
            known = {e.split()[0].upper() for e in ext}
            if self._tls_ctx is not None and self._tls_mode == "starttls" and not tls and "STARTTLS" not in known:
                lines.append("STARTTLS")
            users = s.get("users", self._users_arg)
            mechs = s["auth_mechanisms"]
            if users is not None and mechs and not authed and "AUTH" not in known and \
                    (tls or s.get("auth_without_tls", True)):
                lines.append("AUTH " + " ".join(mechs))
            lines.append("ENHANCEDSTATUSCODES")
        return "\n".join(f"250{'-' if i + 1 < len(lines) else ' '}{l}" for i, l in enumerate(lines))

    def _starttls_ctx(self):
        return self._tls_ctx if self._tls_mode == "starttls" else None

    def _users(self):
        with self._lock:
            users = self._script.get("users", self._users_arg)
            return dict(users) if users is not None else None

    def _auth_mechanisms(self):
        with self._lock:
            return list(self._script["auth_mechanisms"])

    def _auth_without_tls(self):
        with self._lock:
            return self._script.get("auth_without_tls", True)

    def _has_session_reply(self, stage):
        with self._lock:
            return bool(self._script.get(stage))

    def _max_size(self):
        with self._lock:
            return self._script.get("size", DEFAULT_SIZE) or UNBOUNDED_SIZE

    def _note_mail(self, sender):
        with self._lock:
            self._mail_times.append((time.time(), sender))

    def _count_command(self):
        with self._lock:
            self._stats["commands"] += 1

    def _next_queue_id(self):
        with self._lock:
            self._queue_id += 1
            return f"{self.name.upper()}{self._queue_id:06d}"

    def _record(self, msg):
        with self._cond:
            self._messages.append(msg)
            if self._record_file is not None:
                line = dict(msg, data=msg["data"].decode("latin-1"))
                self._record_file.write(json.dumps(line) + "\n")
                self._record_file.flush()
            self._cond.notify_all()

    def _close_record(self):
        with self._lock:
            if self._record_file is not None:
                self._record_file.close()
                self._record_file = None


def _load_script(path):
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Scriptable SMTP sink on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ap.add_argument("--record", help="append accepted messages to this JSONL file")
    ap.add_argument("--script", help="JSON script of replies (see the module docstring)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--name", default="sink", help="name in the greeting and the records")
    ap.add_argument("--max-time", type=float, default=0, help="exit after this many seconds (0: never)")
    ap.add_argument("--verbose", action="store_true", help="print the dialogue on stderr")
    ap.add_argument("--tls-cert", help="PEM certificate (and chain) for TLS")
    ap.add_argument("--tls-key", help="PEM key of --tls-cert (default: in that file)")
    ap.add_argument("--tls-mode", choices=TLS_MODES, default="starttls",
                    help="offer STARTTLS, or implicit TLS on the listening socket")
    ap.add_argument("--tls-client-ca", help="ask clients for a certificate from this PEM CA")
    ap.add_argument("--users", help="JSON file {user: password} for AUTH PLAIN and LOGIN")
    args = ap.parse_args(argv)

    try:
        script = _load_script(args.script)
        users = _load_script(args.users)
        sink = Sink(port=args.port, script=script, record=args.record, name=args.name, verbose=args.verbose,
                    tls_cert=args.tls_cert, tls_key=args.tls_key, tls_mode=args.tls_mode,
                    tls_client_ca=args.tls_client_ca, users=users)
        sink.start()
    except (OSError, ValueError) as e:
        print(f"smtpsink: {e}", file=sys.stderr)
        return 1

    return peerloop.serve("smtpsink", sink, "script", lambda: sink.set_script(_load_script(args.script)),
                          args.port_file, args.max_time)


if __name__ == "__main__":
    sys.exit(main())
