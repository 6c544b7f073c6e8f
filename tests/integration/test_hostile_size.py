"""Hostile sizes: a message at the size limit and a list of a million
recipients. Each has a defined answer, and intake's memory stays bounded:
its peak resident size (VmHWM in /proc) is printed and checked against a
generous ceiling, as a safety net rather than a measurement.

HATO_HOSTILE_RECIPIENTS sets the size of the big list (default 1,000,000;
tools/test.sh makes it smaller for the sanitizer build). Under
AddressSanitizer the memory figures are printed but not checked: its
shadow memory and quarantine are not intake's."""

import base64
import os
import re
import time

import hatotest as H
from hatotest import check, check_eq

MB = 1024 * 1024
N = int(os.environ.get("HATO_HOSTILE_RECIPIENTS", "1000000"))


def _sanitized():
    try:
        with open(H.INTAKE, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = _sanitized()


def vm_hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise H.TestFailure("no VmHWM for pid %d" % pid)


def padded_submission(env, total):
    """A submission of exactly `total` octets once dot-stuffed and sent
    (CRLF line ends, without the final dot), its bulk a base64
    attachment that is not a list."""
    head = H.make_submission(env.submitter, env.token, ["big@example.com"], "大きなメール", "本文\n",
                             to=env.submit_address,
                             attachments=[("photo.jpg", "image/jpeg", b"\xff\xd8" + b"\0" * 100)])
    stuffed = H.dot_stuff(head)
    # Grow the attachment's base64 (76 + CRLF a line) until the size fits.
    marker = base64.encodebytes(b"\xff\xd8" + b"\0" * 100).replace(b"\n", b"\r\n")
    check(marker in stuffed, "no attachment body to grow")
    missing = total - len(stuffed)
    check(missing > 0, "the base message is already %d octets", len(stuffed))
    k, r = divmod(missing, 78)
    lines = [b"A" * 76] * k
    if r >= 3:
        lines.append(b"A" * (r - 2))
    elif r:
        lines[0] = b"A" * (76 + r)
    pad = b"".join(l + b"\r\n" for l in lines)
    data = stuffed.replace(marker, pad + marker, 1)
    check_eq(len(data), total, "size of the padded submission")
    return data


def send_raw(env, stuffed):
    with H.LMTPClient(("127.0.0.1", env.lmtp_port), timeout=180) as c:
        lhlo = c.lhlo()
        check(c.mail(env.submitter).ok, "MAIL")
        check(c.rcpt(env.submit_address).ok, "RCPT")
        r = c.command("DATA")
        check_eq(r.code, 354, "reply to DATA")
        c.sock.sendall(stuffed + b".\r\n")
        reply = c.reply()
        nop = c.command("NOOP")
        check_eq(nop.code, 250, "NOOP after the message")
        c.quit()
    return lhlo, reply


@H.timeout(240)
def test_message_at_the_size_limit():
    env = H.Env("bigmsg")
    env.config.section("intake")["max_message_size"] = "50M"
    env.start(gateway=False)
    with H.LMTPClient(("127.0.0.1", env.lmtp_port)) as c:
        lhlo = c.lhlo()
        size = int(re.search(r"^SIZE (\d+)$", "\n".join(lhlo.lines), re.M).group(1))
        check_eq(size, 50 * MB, "SIZE in the LHLO reply")
        # Declared too big: refused before any data.
        r = c.command("MAIL FROM:<%s> SIZE=%d" % (env.submitter, size + 1))
        check_eq(r.code, 552, "MAIL with SIZE=%d" % (size + 1))
        c.quit()
    before = vm_hwm_mb(env.intake.pid)

    t0 = time.monotonic()
    _, over = send_raw(env, padded_submission(env, size + 1))
    check_eq(over.code, 552, "reply to a message one octet over the limit (%s)" % over.text)
    check_eq(env.jobs(), [], "jobs after the refused message")
    over_hwm = vm_hwm_mb(env.intake.pid)

    _, under = send_raw(env, padded_submission(env, size - 4096))
    took = time.monotonic() - t0
    check_eq(under.code, 250, "reply to a message just under the limit (%s)" % under.text)
    check_eq(len(env.jobs()), 1, "jobs after the message under the limit")
    hwm = vm_hwm_mb(env.intake.pid)
    print("intake VmHWM: %.0f MB at start, %.0f MB after 50 MB + 1 (552), %.0f MB after 50 MB - 4 KiB "
          "(stored); %.1fs for both" % (before, over_hwm, hwm, took))
    # A refused message is not kept: reading it costs little more than
    # the buffers. A stored one is held once (GMime reads it in place,
    # and an attachment that is not a list is never decoded): within the
    # benchmark's target of 3x the message.
    if not SANITIZED:
        check(over_hwm - before < 120, "reading a refused 50 MB message took %.0f MB", over_hwm - before)
        check(hwm < 3 * 50, "intake peaked at %.0f MB for one 50 MB message", hwm)
    env.stop_clean()


@H.timeout(280)
def test_a_million_recipients():
    env = H.Env("million")
    env.start(gateway=False)
    rcpts = ["r%07d@example.com" % i for i in range(N)]
    csv = ("email\r\n" + "\r\n".join(rcpts) + "\r\n").encode()
    data = H.make_submission(env.submitter, env.token, [], "百万通", "本文\n", to=env.submit_address,
                             attachments=[("list.csv", "text/csv", csv)],
                             control=["Token: %s" % env.token, "Subject: 百万通"])
    before = vm_hwm_mb(env.intake.pid)
    t0 = time.monotonic()
    reply = env.submit(data).one()
    took = time.monotonic() - t0
    hwm = vm_hwm_mb(env.intake.pid)
    print("%d recipients (%.1f MB mail): %d %s in %.1fs; intake VmHWM %.0f MB (%.0f MB at start)" % (
        N, len(data) / MB, reply.code, reply.text, took, hwm, before))
    check_eq(reply.code, 250, "reply to a list of %d" % N)
    job = env.job(H.job_id_of(reply))
    check_eq(int(job["recipients"]), N, "jobs.recipients")
    check_eq(int(env.db.scalar("SELECT COUNT(*) FROM deliveries WHERE job_id = %s", (job["id"],))), N,
             "deliveries stored")
    check(re.search(r"\b%d accepted" % N, reply.text), "reply does not count them: %r", reply)
    # The list is read from the mail a chunk at a time and kept packed
    # (about its own length, and 4 to 8 octets a recipient for finding
    # duplicates); the rows are stored a chunk at a time: within the
    # benchmark's target of 3x the message.
    if not SANITIZED:
        check(hwm < 3 * len(data) / MB, "intake peaked at %.0f MB for %d recipients in a %.1f MB mail",
              hwm, N, len(data) / MB)
    env.intake.assert_log_clean()
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
