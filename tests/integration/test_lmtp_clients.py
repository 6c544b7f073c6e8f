"""Intake against LMTP clients written elsewhere: Python's smtplib.LMTP over
TCP and over the unix socket, swaks over TCP and over the unix socket."""

import os
import smtplib
import shutil

import hatotest as H
from hatotest import check, check_eq

RCPTS = ["taro@docomo.ne.jp", "jiro@i.softbank.jp", "hanako@ezweb.ne.jp"]
SUBJECT = "LMTPクライアントのテスト"
BODY = "本文です。\n二行目。\n"


def socket_env(name):
    env = H.Env(name)
    env.config.section("intake")["lmtp_socket"] = env.lmtp_socket
    env.route("*", "mx")
    env.start(gateway=False)
    return env


def check_one_job(env, count=1):
    jobs = env.jobs()
    check_eq(len(jobs), count, "number of jobs")
    job = jobs[-1]
    check_eq(job["subject"], SUBJECT, "jobs.subject")
    check_eq(job["body"].replace("\r\n", "\n").rstrip("\n"), BODY.rstrip("\n"), "jobs.body")
    check_eq(job["state"], "queued", "jobs.state")
    ds = env.deliveries(job["id"])
    check_eq(sorted(d["address"] for d in ds), sorted(RCPTS), "deliveries of job %d" % job["id"])
    check(all(d["state"] == "queued" for d in ds), "deliveries not queued: %r", [d["state"] for d in ds])
    return job


def smtplib_send(target, env, data):
    if target.startswith("/"):
        c = smtplib.LMTP(target, timeout=30)
    else:
        c = smtplib.LMTP("127.0.0.1", env.lmtp_port, timeout=30)
    try:
        refused = c.sendmail(env.submitter, [env.submit_address], data)
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass
    check_eq(refused, {}, "recipients smtplib reports as refused")


def swaks(env, data, *where):
    exe = shutil.which("swaks") or "/usr/bin/swaks"
    path = os.path.join(env.dir, "submission.eml")
    with open(path, "wb") as f:
        f.write(data)
    args = [exe, "--protocol", "LMTP", *where, "--from", env.submitter, "--to", env.submit_address,
            "--helo", "swaks.hatotest", "--data", "@" + path, "--timeout", "20", "--suppress-data"]
    r = H.run(args, check_rc=False, timeout=40)
    check(r.returncode == 0, "swaks exited %d:\n%s%s", r.returncode, r.stdout, r.stderr)
    check(" 250" in r.stdout, "swaks saw no 250:\n%s", r.stdout)
    return r


def test_smtplib_tcp():
    env = socket_env("smtplib_tcp")
    data = env.submission(RCPTS, SUBJECT, BODY)
    smtplib_send("tcp", env, data)
    check_one_job(env)
    env.stop_clean()


def test_smtplib_unix_socket():
    env = socket_env("smtplib_unix")
    data = env.submission(RCPTS, SUBJECT, BODY, charset="iso-2022-jp")
    smtplib_send(env.lmtp_socket, env, data)
    check_one_job(env)
    smtplib_send(env.lmtp_socket, env, env.submission(RCPTS, SUBJECT, BODY, encoding="quoted-printable"))
    check_one_job(env, 2)
    env.stop_clean()


def test_swaks_tcp_and_unix():
    env = socket_env("swaks")
    swaks(env, env.submission(RCPTS, SUBJECT, BODY), "--server", "127.0.0.1", "--port", str(env.lmtp_port))
    check_one_job(env)
    swaks(env, env.submission(RCPTS, SUBJECT, BODY, alternative=True), "--socket", env.lmtp_socket)
    check_one_job(env, 2)
    env.stop_clean()


def test_rcpt_other_than_submit_address():
    env = socket_env("rcpt")
    data = env.submission(RCPTS, SUBJECT, BODY)
    sub = env.submit(data, rcpts=["someone@hato.test", env.submit_address])
    check_eq(sub.rcpt[0].code, 550, "RCPT someone@hato.test: %r" % sub.rcpt[0])
    check_eq(sub.rcpt[0].status, "5.1.1", "enhanced status of RCPT someone@hato.test")
    check(sub.rcpt[1].ok, "RCPT %s: %r", env.submit_address, sub.rcpt[1])
    check_eq(len(sub.data), 1, "replies after DATA")
    check_eq(sub.data[0].code, 250, "reply after DATA: %r" % sub.data[0])
    check_one_job(env)

    # smtplib.LMTP reports the refused recipient and delivers to the rest.
    # (Another mail: the same one again would be taken for the MTA's retry
    # of a mail already stored, and name the first job.)
    data = env.submission(RCPTS, SUBJECT, BODY)
    c = smtplib.LMTP("127.0.0.1", env.lmtp_port, timeout=30)
    try:
        refused = c.sendmail(env.submitter, ["nobody@hato.test", env.submit_address], data)
    finally:
        c.quit()
    check_eq(list(refused), ["nobody@hato.test"], "recipients smtplib reports as refused")
    check_eq(refused["nobody@hato.test"][0], 550, "code for nobody@hato.test")
    check_one_job(env, 2)
    env.stop_clean()


if __name__ == "__main__":
    H.main(globals())
