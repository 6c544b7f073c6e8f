#!/usr/bin/python3
"""test_sink: the scriptable SMTP sink (tests/harness/smtpsink.py) checked
with smtplib and raw sockets: recording, scripted replies, hang, close,
sleep, pipelining, bad clients, the command line.

Run: /usr/bin/python3 tests/integration/test_sink.py
Prints one line per test and "N passed, M failed"; exits 1 on a failure.
"""

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

from smtpsink import Sink  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def smtp(sink, timeout=5):
    return smtplib.SMTP("127.0.0.1", sink.port, local_hostname="client.test", timeout=timeout)


class Raw:
    """A raw SMTP client: for what smtplib will not do (pipelining, bare LF)."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def reply(self):
        """The lines of one reply."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines

    def close(self):
        self.sock.close()


@test
def records_messages():
    with tempfile.TemporaryDirectory() as d:
        rec = os.path.join(d, "rec.jsonl")
        with Sink(record=rec, name="t1") as sink:
            with smtp(sink) as c:
                c.sendmail("sender@example.org", ["a@example.net", "b@example.net"],
                           b"Subject: one\r\n\r\nhello\r\n.dotted\r\n")
                c.sendmail("", ["c@example.net"], b"Subject: two\r\n\r\nbye\r\n")
            assert sink.wait_for(2, 5)
            m = sink.messages()
            assert len(m) == 2, m
            assert m[0]["mail_from"] == "sender@example.org"
            assert m[0]["rcpts"] == ["a@example.net", "b@example.net"]
            # smtplib dot-stuffs; the sink must unstuff.
            assert m[0]["data"] == b"Subject: one\r\n\r\nhello\r\n.dotted\r\n", m[0]["data"]
            assert m[0]["helo"] == "client.test"
            assert m[0]["name"] == "t1"
            assert m[0]["peer_port"] == m[1]["peer_port"]
            assert m[0]["conn"] == m[1]["conn"] == 1
            assert m[1]["mail_from"] == ""
            assert m[0]["t"] <= m[1]["t"]
            times = sink.mail_times()
            assert [s for _, s in times] == ["sender@example.org", ""], times
        with open(rec, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f]
        assert len(lines) == 2
        assert lines[0]["data"].encode("latin-1") == b"Subject: one\r\n\r\nhello\r\n.dotted\r\n"
        assert lines[1]["rcpts"] == ["c@example.net"]


@test
def scripted_rcpt_replies():
    script = {"rules": [
        {"match": "*@fail.example", "rcpt": ["550 5.1.1 User unknown"]},
        {"match": "retry@*", "rcpt": ["451 4.3.0 Try again later", "250 2.1.5 Ok"]},
    ]}
    with Sink(script=script) as sink, smtp(sink) as c:
        c.ehlo()
        c.mail("s@example.org")
        assert c.rcpt("Who@FAIL.example") == (550, b"5.1.1 User unknown")
        assert c.rcpt("retry@x.example") == (451, b"4.3.0 Try again later")
        assert c.rcpt("retry@x.example")[0] == 250
        assert c.rcpt("retry@x.example")[0] == 250	# the last one repeats
        assert c.rcpt("ok@x.example")[0] == 250
        assert c.data(b"x\r\n")[0] == 250
        assert sink.wait_for(1, 5)
        assert sink.messages()[0]["rcpts"] == ["retry@x.example", "retry@x.example", "ok@x.example"]


@test
def scripted_mail_data_dot():
    script = {"rules": [
        {"from": "bad@*", "mail": "553 5.7.1 Sender refused"},
        {"match": "nodata@*", "data": "554 5.3.0 No data today"},
        {"match": "later@*", "dot": ["451 4.3.0 Later", "250 2.0.0 Fine now"]},
    ]}
    with Sink(script=script) as sink, smtp(sink) as c:
        c.ehlo()
        assert c.mail("bad@example.org")[0] == 553
        assert c.mail("good@example.org")[0] == 250
        c.rcpt("nodata@x.example")
        assert c.docmd("DATA")[0] == 554
        c.rset()
        c.mail("good@example.org")
        c.rcpt("later@x.example")
        assert c.data(b"first\r\n") == (451, b"4.3.0 Later")
        c.mail("good@example.org")
        c.rcpt("later@x.example")
        assert c.data(b"second\r\n")[0] == 250
        assert sink.wait_for(1, 5)
        msgs = sink.messages()
        assert len(msgs) == 1 and msgs[0]["data"] == b"second\r\n", msgs
        assert len(sink.mail_times()) == 4


@test
def hang_then_timeout():
    with Sink(script={"rules": [{"match": "slow@*", "dot": "hang"}]}) as sink:
        c = smtp(sink, timeout=0.5)
        c.ehlo()
        c.mail("s@example.org")
        c.rcpt("slow@x.example")
        t0 = time.monotonic()
        try:
            c.data(b"x\r\n")
            raise AssertionError("the hanging server answered")
        except (socket.timeout, smtplib.SMTPServerDisconnected):
            pass
        assert 0.4 < time.monotonic() - t0 < 3
        c.close()
        assert sink.messages() == []
        # The sink still serves others.
        with smtp(sink) as c2:
            assert c2.noop()[0] == 250


@test
def hang_greeting_and_stop():
    # stop() must not wait for a hanging connection.
    sink = Sink(script={"greeting": "hang"}).start()
    s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
    time.sleep(0.1)
    t0 = time.monotonic()
    sink.stop()
    assert time.monotonic() - t0 < 3
    s.settimeout(2)
    assert s.recv(100) == b""	# closed by the sink
    s.close()


@test
def content_freeze_and_close():
    script = {"rules": [{"match": "frozen@*", "content": "freeze"},
                        {"match": "dropped@*", "content": "close"}]}
    with Sink(script=script) as sink:
        for rcpt, want in (("frozen@x.example", socket.timeout), ("dropped@x.example", ConnectionError)):
            r = Raw(sink.port, timeout=0.5)
            r.reply()
            r.send(b"EHLO raw.test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
            r.reply()
            for _ in range(3):
                r.reply()
            t0 = time.monotonic()
            try:
                # More than any socket buffers hold: a frozen peer makes it stall.
                r.send((b"x" * 998 + b"\r\n") * 20000)
                r.send(b".\r\n")
                r.reply()
                raise AssertionError(f"{rcpt}: the message went through")
            except want:
                pass
            except ConnectionError:
                assert want is ConnectionError
            assert time.monotonic() - t0 < 5
            r.close()
        assert sink.messages() == []
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3	# stop() did not wait for the frozen one
    try:
        Sink(script={"rules": [{"match": "*", "content": "250 Ok"}]})
        raise AssertionError("content took a reply")
    except ValueError:
        pass


@test
def greeting_421_and_list():
    with Sink(script={"greeting": ["421 4.3.2 Busy", "220 ok now"]}) as sink:
        try:
            smtp(sink)
            raise AssertionError("421 greeting accepted")
        except smtplib.SMTPConnectError as e:
            assert e.smtp_code == 421
        with smtp(sink) as c:
            assert c.noop()[0] == 250


@test
def close_special():
    with Sink(script={"rules": [{"match": "drop@*", "rcpt": "close"}]}) as sink:
        c = smtp(sink)
        c.ehlo()
        c.mail("s@example.org")
        try:
            c.rcpt("drop@x.example")
            raise AssertionError("no disconnect")
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            pass
        c.close()


@test
def sleep_special():
    with Sink(script={"rules": [{"match": "*", "rcpt": "sleep 0.3 250 2.1.5 Slowly"}]}) as sink, smtp(sink) as c:
        c.ehlo()
        c.mail("s@example.org")
        t0 = time.monotonic()
        assert c.rcpt("a@x.example") == (250, b"2.1.5 Slowly")
        assert time.monotonic() - t0 >= 0.29


@test
def ehlo_features():
    with Sink(script={"extensions": ["STARTTLS", "AUTH PLAIN LOGIN"], "size": 1000}) as sink, smtp(sink) as c:
        c.ehlo()
        for kw in ("pipelining", "8bitmime", "size", "starttls", "auth", "enhancedstatuscodes"):
            assert c.has_extn(kw), kw
        assert c.esmtp_features["size"] == "1000"
        assert c.mail("s@example.org", ["SIZE=2000"])[0] == 552
        assert c.mail("s@example.org", ["SIZE=20"])[0] == 250
        c.rcpt("a@x.example")
        assert c.data(b"x" * 1200 + b"\r\n")[0] == 552
        assert sink.messages() == []
    with Sink(script={"pipelining": False, "8bitmime": False}) as sink, smtp(sink) as c:
        c.ehlo()
        assert not c.has_extn("pipelining")
        assert not c.has_extn("8bitmime")


@test
def ehlo_refused_helo_works():
    with Sink(script={"ehlo": "502 5.5.2 No EHLO here"}) as sink, smtp(sink) as c:
        assert c.ehlo()[0] == 502
        assert c.helo()[0] == 250
        c.sendmail("s@example.org", ["a@x.example"], b"x\r\n")
        assert sink.wait_for(1, 5)
        assert sink.messages()[0]["helo"] == "client.test"


@test
def pipelined_and_bare_lf():
    with Sink() as sink:
        r = Raw(sink.port)
        assert r.reply()[0].startswith("220")
        r.send(b"EHLO raw.test\r\n")
        assert r.reply()[-1].startswith("250 ")
        r.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@x.example>\r\nDATA\r\n")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("354")
        # Bare LF is accepted and recorded as received.
        r.send(b"line1\n..dot\r\nline3\n.\n")
        assert r.reply()[0].startswith("250")
        r.send(b"MAIL FROM:<s@example.org>\r\n")
        assert r.reply()[0].startswith("250")
        r.send(b"RCPT TO:<b@x.example>\r\n")
        assert r.reply()[0].startswith("250")
        r.send(b"DATA\r\n")
        assert r.reply()[0].startswith("354")
        r.send(b"x\r\n.\r\nQUIT\r\n")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("221")
        r.close()
        assert sink.wait_for(2, 5)
        m = sink.messages()
        assert m[0]["data"] == b"line1\n.dot\r\nline3\n", m[0]["data"]
        assert m[0]["pipelined"] is True
        assert m[1]["pipelined"] is False


@test
def bad_clients():
    with Sink(script={"size": 100000}) as sink:
        r = Raw(sink.port)
        r.reply()
        r.send(b"X" * 20000 + b"\r\n")
        assert r.reply()[0].startswith("500"), "overlong line"
        r.send(b"FROB\r\n")
        assert r.reply()[0].startswith("502")
        r.send(b"MAIL FROM:<a@b>\r\n")
        assert r.reply()[0].startswith("503"), "MAIL before EHLO"
        r.send(b"HELO x\r\nRCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<broken\r\n")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("503")
        assert r.reply()[0].startswith("503")
        assert r.reply()[0].startswith("501")
        r.send(b"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("503"), "nested MAIL"
        assert r.reply()[0].startswith("250")
        assert r.reply()[0].startswith("354")
        r.send(b"partial data, then gone\r\n")
        r.close()
        # Binary junk, then gone without a word.
        r = Raw(sink.port)
        r.reply()
        r.send(bytes(range(256)) * 4 + b"\r\n")
        assert r.reply()[0][:1] == "5"
        r.close()
        time.sleep(0.2)
        with smtp(sink) as c:
            c.sendmail("s@example.org", ["a@x.example"], b"still here\r\n")
        assert sink.wait_for(1, 5)
        assert len(sink.messages()) == 1
        assert sink.stats()["connections"] == 3


@test
def set_script_at_runtime():
    with Sink() as sink, smtp(sink) as c:
        c.ehlo()
        c.mail("s@example.org")
        assert c.rcpt("a@x.example")[0] == 250
        sink.set_script({"rules": [{"match": "a@*", "rcpt": "452 4.2.2 Full"}]})
        assert c.rcpt("a@x.example")[0] == 452
        try:
            sink.set_script({"rules": [{"match": "a@*", "rcpt": "nonsense"}]})
            raise AssertionError("bad script accepted")
        except ValueError:
            pass
        try:
            sink.set_script({"rulez": []})
            raise AssertionError("unknown key accepted")
        except ValueError:
            pass
        assert c.rcpt("a@x.example")[0] == 452	# the old script stays


@test
def multiline_scripted_reply():
    script = {"rules": [{"match": "*", "rcpt": "550-5.1.1 first line\n550 5.1.1 second line"}]}
    with Sink(script=script) as sink, smtp(sink) as c:
        c.ehlo()
        c.mail("s@example.org")
        code, text = c.rcpt("a@x.example")
        assert code == 550 and text == b"5.1.1 first line\n5.1.1 second line", text


@test
def wait_for_times_out():
    with Sink() as sink:
        t0 = time.monotonic()
        assert sink.wait_for(1, 0.2) is False
        assert time.monotonic() - t0 < 2


@test
def loopback_only():
    try:
        Sink(host="0.0.0.0")
        raise AssertionError("listened beyond loopback")
    except ValueError:
        pass


@test
def command_line():
    sink_py = os.path.join(HARNESS, "smtpsink.py")
    with tempfile.TemporaryDirectory() as d:
        rec, portf, scr = (os.path.join(d, n) for n in ("r.jsonl", "port", "s.json"))
        with open(scr, "w") as f:
            json.dump({"rules": [{"match": "no@*", "rcpt": "550 5.1.1 No"}]}, f)
        p = subprocess.Popen([sys.executable, sink_py, "--port", "0", "--record", rec, "--script", scr,
                              "--port-file", portf, "--max-time", "60", "--name", "cli"],
                             stdout=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline()
            assert first.startswith("listening on 127.0.0.1:"), first
            port = int(first.rsplit(":", 1)[1])
            with open(portf) as f:
                assert int(f.read()) == port
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
                c.ehlo()
                c.mail("s@example.org")
                assert c.rcpt("no@x.example")[0] == 550
                assert c.rcpt("yes@x.example")[0] == 250
                assert c.data(b"cli\r\n")[0] == 250
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
            with open(rec) as f:
                r = json.loads(f.readline())
            assert r["data"] == "cli\r\n" and r["name"] == "cli" and r["rcpts"] == ["yes@x.example"]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stdout.close()


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
