"""cmake --install: binaries, man pages, the example configuration (never
over an operator's), the route table, systemd units and the sysusers.d
snippet in the usual places; the units pass systemd-analyze verify (when
systemd is installed) with their man pages found; the man pages render
without warnings; the installed hatoctl and daemons accept the installed
example configuration."""

import os
import shutil
import stat
import subprocess

import hatotest as H
from hatotest import check, check_eq

UNITS = ("hato-intake.service", "hato-gateway.service")
MANS = ("hatoctl.8", "hato-intake.8", "hato-gateway.8")


def install(prefix, destdir=None):
    env = dict(os.environ)
    if destdir:
        env["DESTDIR"] = destdir
    else:
        env.pop("DESTDIR", None)
    return H.run(["cmake", "--install", H.BUILD, "--prefix", prefix], env=env, timeout=120)


def unit_keys(path):
    keys = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, _, v = line.partition("=")
            keys.setdefault(k, []).append(v)
    return keys


@H.timeout(180)
def test_install_tree():
    dest = H.tempdir("install-dest")
    r = install("/usr", dest)
    root = lambda p: os.path.join(dest, p.lstrip("/"))
    for p in ("/usr/sbin/hato-intake", "/usr/sbin/hato-gateway", "/usr/bin/hatoctl"):
        check(os.access(root(p), os.X_OK), "%s installed and executable:\n%s", p, r.stdout)
    for m in MANS:
        check(os.path.isfile(root("/usr/share/man/man8/" + m)), "man page %s", m)
    for f in ("/etc/hato/hato.ini", "/etc/hato/carriers.routes", "/usr/share/doc/hato/examples/hato.ini",
              "/usr/share/doc/hato/examples/carriers.routes", "/usr/lib/sysusers.d/hato.conf"):
        check(os.path.isfile(root(f)), "%s installed:\n%s", f, r.stdout)
    check("u hato " in open(root("/usr/lib/sysusers.d/hato.conf")).read(), "sysusers.d makes the user hato")

    for u in UNITS:
        path = root("/usr/lib/systemd/system/" + u)
        check(os.path.isfile(path), "unit %s", u)
        k = unit_keys(path)
        daemon = u.replace(".service", "")
        check_eq(k["ExecStart"], ["/usr/sbin/%s --config /etc/hato/hato.ini" % daemon], "%s ExecStart" % u)
        check_eq(k["User"], ["hato"], "%s User" % u)
        check_eq(k["Restart"], ["on-failure"], "%s Restart" % u)
        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("CapabilityBoundingSet", ""),
                          ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")):
            check_eq(k.get(key), [want], "%s %s" % (u, key))
        check(int(k["LimitNOFILE"][0]) >= 4096, "%s LimitNOFILE", u)
    gw = unit_keys(root("/usr/lib/systemd/system/hato-gateway.service"))
    check_eq(gw["ExecReload"], ["/bin/kill -HUP $MAINPID"], "gateway reload")

    # The operator's configuration is never overwritten; the example is.
    conf = root("/etc/hato/hato.ini")
    with open(conf, "a") as f:
        f.write("\n; edited by the operator\n")
    r = install("/usr", dest)
    check("; edited by the operator" in open(conf).read(), "reinstall overwrote /etc/hato/hato.ini")
    check("Keeping:" in r.stdout, "reinstall says it keeps the configuration: %s", r.stdout)
    check("; edited by the operator" not in open(root("/usr/share/doc/hato/examples/hato.ini")).read(),
          "the example stays the shipped one")

    # Man pages render without warnings.
    groff = shutil.which("groff")
    for m in MANS:
        page = root("/usr/share/man/man8/" + m)
        if groff:
            g = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
            check(g.returncode == 0 and g.stderr == "", "groff on %s: %s", m, g.stderr)
        if shutil.which("man"):
            g = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                               env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
            check(g.returncode == 0 and g.stderr.strip() == "", "man -l %s: %s", m, g.stderr)
            check("EXIT STATUS" in g.stdout or "SYNOPSIS" in g.stdout, "man -l %s output", m)
    text = subprocess.run(["man", "-l", root("/usr/share/man/man8/hatoctl.8")], capture_output=True, text=True,
                          env=dict(os.environ, MANWIDTH="100", MANPAGER="cat")).stdout
    for word in ("log", "trace", "doctor", "--json", "69", "78"):
        check(word in text.replace("\u2010", "-"), "hatoctl(8) mentions %r", word)


@H.timeout(180)
def test_units_verify_and_binaries_run():
    prefix = H.tempdir("install-prefix")
    install(prefix)
    units = [os.path.join(prefix, "lib/systemd/system", u) for u in UNITS]
    for u in units:
        k = unit_keys(u)
        check(k["ExecStart"][0].startswith(os.path.join(prefix, "sbin") + "/"), "units follow the prefix: %r",
              k["ExecStart"])
    sa = shutil.which("systemd-analyze")
    if sa:
        r = subprocess.run([sa, "verify"] + units, capture_output=True, text=True,
                           env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man"), SYSTEMD_LOG_COLOR="0"))
        check(r.returncode == 0 and r.stderr.strip() == "", "systemd-analyze verify: %s%s", r.stdout, r.stderr)
    else:
        print("  (systemd-analyze not installed: units not verified)")
    # The installed example configuration loads with the installed route
    # table once the relays and pace it names are defined, as its comments
    # ask an operator to do.
    conf = os.path.join(prefix, "etc/hato/hato.ini")
    text = open(conf).read().replace("/etc/hato/carriers.routes", os.path.join(prefix, "etc/hato/carriers.routes"))
    text += ("\n[relay docomo]\nhost = 192.0.2.10\n\n[relay softbank]\nhost = 192.0.2.11\n\n"
             "[pace au]\nmx_domain = ezweb.ne.jp\nmessages = 20\ninterval = 60s\n")
    with open(conf, "w") as f:
        f.write(text)
    for daemon in ("hato-intake", "hato-gateway"):
        r = H.run([os.path.join(prefix, "sbin", daemon), "--check-config", "--config", conf], check_rc=False)
        check_eq(r.returncode, 0, "%s --check-config on the example (%s)" % (daemon, r.stderr))
    r = H.run([os.path.join(prefix, "bin/hatoctl"), "--config", conf, "routes", "check"], check_rc=False)
    check_eq(r.returncode, 0, "installed hatoctl routes check (%s)" % r.stderr)
    check(os.path.join(prefix, "etc/hato/carriers.routes") in r.stdout, "routes check output %r", r.stdout)


if __name__ == "__main__":
    H.main(globals())
