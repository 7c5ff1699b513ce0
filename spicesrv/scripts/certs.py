"""
Certificates for spicesrv's TLS port.

    python -m spicesrv.scripts.certs subject CERTFILE
    python -m spicesrv.scripts.certs dev DIR [--subject S] [--san DNS:x|IP:y ...]
                                         [--days N] [--force]
    python -m spicesrv.scripts.certs check HOST PORT --ca-file F [--cert-subject S | --hostname H]

C{subject} prints the string to give C{client_migrate_info cert-subject=}
(and spice-gtk's C{cert-subject}); C{dev} writes a development CA and server
certificate in QEMU's x509-dir layout; C{check} connects to a TLS port and
says whether a SPICE client holding the CA file would accept it.
"""

import argparse
import contextlib
import sys

from spicesrv.tls.devcerts import write_dev_certs
from spicesrv.tls.probe import check_target_identity
from spicesrv.tls.subjects import format_subject

__all__ = ["main", "check"]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m spicesrv.scripts.certs",
        description="Certificates for spicesrv's TLS port.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("subject", help="print a certificate's cert-subject "
                       "string (for client_migrate_info cert-subject=)")
    s.add_argument("certfile", metavar="CERTFILE",
                   help="a PEM (or DER) certificate; the first of a chain")

    d = sub.add_parser("dev", help="write a development CA and server "
                       "certificate (ca-cert.pem, ca-key.pem, server-cert.pem,"
                       " server-key.pem)")
    d.add_argument("directory", metavar="DIR")
    d.add_argument("--subject", default="CN=localhost",
                   help="server subject, entries in certificate order "
                   "(default: %(default)s), e.g. C=XX,O=Org,CN=host")
    d.add_argument("--san", action="append", metavar="DNS:x|IP:y",
                   help="a subjectAltName; repeat for more (default: "
                   "DNS:localhost and IP:127.0.0.1)")
    d.add_argument("--days", type=int, default=365,
                   help="validity in days (default: %(default)s)")
    d.add_argument("--force", action="store_true",
                   help="overwrite existing files")

    c = sub.add_parser("check", help="check that a TLS port presents a "
                       "certificate a SPICE client would accept")
    c.add_argument("host", metavar="HOST")
    c.add_argument("port", metavar="PORT", type=int)
    c.add_argument("--ca-file", required=True, metavar="F",
                   help="the CA file the client uses")
    who = c.add_mutually_exclusive_group()
    who.add_argument("--cert-subject", metavar="S",
                     help="the subject the client expects (as given to "
                     "client_migrate_info)")
    who.add_argument("--hostname", metavar="H",
                     help="the host name the client verifies (default: "
                     "HOST)")
    c.add_argument("--timeout", type=float, default=10,
                   help="seconds (default: %(default)s)")
    return p


def _loadCertificate(path):
    from cryptography import x509
    with open(path, "rb") as f:
        data = f.read()
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        pass
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError("%s: not a PEM or DER certificate" % (path,))


def _subject(args, out, err):
    try:
        cert = _loadCertificate(args.certfile)
    except OSError as e:
        err.write("%s: %s\n" % (args.certfile, e.strerror or e))
        return 1
    except ValueError as e:
        err.write("%s\n" % (e,))
        return 1
    try:
        out.write(format_subject(cert) + "\n")
    except ValueError as e:
        err.write("%s: %s\n" % (args.certfile, e))
        return 1
    return 0


def _dev(args, out, err):
    sans = args.san if args.san else ("DNS:localhost", "IP:127.0.0.1")
    try:
        made = write_dev_certs(args.directory, subject=args.subject,
                               sans=sans, days=args.days,
                               overwrite=args.force)
    except FileExistsError as e:
        err.write("%s (or pass --force)\n" % (e,))
        return 1
    except (OSError, ValueError) as e:
        err.write("%s\n" % (e,))
        return 1
    ca = made.ca_cert
    out.write("wrote %s, %s, %s and %s\n" % (
        made.ca_cert, made.ca_key, made.server_cert, made.server_key))
    out.write("subject: %s\n" % (made.subject,))
    out.write("server: twistd -n spice --tls-port 5901 --x509-dir %s\n"
              % (_quote(args.directory),))
    out.write("client: remote-viewer --spice-ca-file=%s "
              "'spice://127.0.0.1?tls-port=5901'\n" % (_quote(ca),))
    return 0


def _quote(path):
    import shlex
    return shlex.quote(path)


def check(reactor, args, out):
    """
    Run the C{check} command on C{reactor}: a Deferred firing with the exit
    code once the reason is written to C{out}.
    """
    d = check_target_identity(
        reactor, args.host, args.port, args.ca_file,
        cert_subject=args.cert_subject, hostname=args.hostname,
        timeout=args.timeout)

    def report(result):
        ok, reason = result
        out.write(("ok: " if ok else "not ok: ") + reason + "\n")
        return 0 if ok else 1
    return d.addCallback(report)


def _runCheck(args, out):
    from twisted.internet import reactor
    codes = []

    def done(code):
        codes.append(code)
        reactor.stop()
    reactor.callWhenRunning(
        lambda: check(reactor, args, out).addCallback(done))
    reactor.run()
    return codes[0] if codes else 1


def main(argv=None, stdout=None, stderr=None):
    """
    Run one command; return the exit code (0 success, 1 failure, 2 usage).
    C{check} runs the global reactor, so call it once per process (tests use
    L{check} with their own reactor instead).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if args.command == "subject":
        return _subject(args, out, err)
    if args.command == "dev":
        return _dev(args, out, err)
    return _runCheck(args, out)


if __name__ == "__main__":
    sys.exit(main())
