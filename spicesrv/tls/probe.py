"""
Checking a migration target as the client will: L{check_target_identity}
connects to a TLS port and says whether a SPICE client holding a given CA
file and subject (or host name) would accept its certificate.
"""

import ipaddress
import os

from zope.interface import implementer

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname, verify_certificate_ip_address)

from twisted.internet import defer, endpoints, error, protocol
from twisted.internet.interfaces import (
    IHandshakeListener, IOpenSSLClientConnectionCreator)
from twisted.logger import Logger

from spicesrv.tls.context import ssl_error_text
from spicesrv.tls.subjects import (
    format_subject, subject_matches, validate_subject)

__all__ = ["check_target_identity"]

log = Logger()


# X509_verify_cert_error_string for the errors a misconfigured target shows.
_VERIFY_ERRORS = {
    2: "the issuer's certificate is not in the CA file",
    7: "its signature does not verify",
    9: "it is not yet valid",
    10: "it has expired",
    18: "it is self-signed",
    19: "its chain ends in a self-signed certificate that is not in the CA "
        "file",
    20: "its issuer's certificate is not in the CA file",
    21: "its issuer's certificate is not in the CA file",
    24: "a certificate that is not a CA signed it",
    26: "it is not meant for TLS servers (extended key usage)",
    32: "its issuer may not sign certificates (key usage)",
}


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz",
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _hostnameCompare(pattern, hostname):
    """spice-common's _gnutls_hostname_compare (wildcards, ASCII case)."""
    pattern = pattern.translate(_ASCII_UPPER)
    hostname = hostname.translate(_ASCII_UPPER)
    i = 0
    while i < len(pattern) and i < len(hostname) and pattern[i] == hostname[i]:
        i += 1
    if i == len(pattern) and i == len(hostname):
        return True
    if i < len(pattern) and pattern[i] == "*":
        rest, j = pattern[i + 1:], i
        while True:
            if _hostnameCompare(rest, hostname[j:]):
                return True
            if j >= len(hostname) or hostname[j] == ".":
                return False
            j += 1
    return False


def _checkHostname(cert, hostname, where, caName):
    """(ok, reason) for the client's HOSTNAME verification."""
    try:
        san = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = san.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        ipaddress.ip_address(hostname)
        isIP = True
    except ValueError:
        isIP = False
    if dns or ips:
        try:
            if isIP:
                verify_certificate_ip_address(cert, hostname)
            else:
                verify_certificate_hostname(cert, hostname)
            return True, ("the certificate of %s is signed by the CA in %s "
                          "and valid for %s" % (where, caName, hostname))
        except (CertificateError, VerificationError):
            pass
        # spice-gtk is laxer than RFC 6125: any '*' in a DNS name, and an IP
        # address compared with DNS names as text.
        if any(_hostnameCompare(name, hostname) for name in dns):
            return True, ("the certificate of %s is signed by the CA in %s "
                          "and its DNS names match %s for SPICE clients (not "
                          "for stricter TLS clients)"
                          % (where, caName, hostname))
        names = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        return False, ("the certificate of %s is for %s, not for %s"
                       % (where, ", ".join(names), hostname))
    # No DNS or IP SAN: the client compares the CNs.
    cns = [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.COMMON_NAME) if isinstance(a.value, str)]
    if any(_hostnameCompare(cn, hostname) for cn in cns):
        return True, ("the certificate of %s is signed by the CA in %s and "
                      "its CN matches %s" % (where, caName, hostname))
    return False, ("the certificate of %s has no DNS or IP subjectAltName "
                   "and its CN %s is not %s"
                   % (where, "/".join(cns) or "(none)", hostname))


@implementer(IOpenSSLClientConnectionCreator)
class _ProbeCreator(object):
    def __init__(self, context):
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol):
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(tlsProtocol)
        return conn


@implementer(IHandshakeListener)
class _Probe(protocol.Protocol):
    def __init__(self, finished):
        self.finished = finished

    def handshakeCompleted(self):
        conn = self.transport.getHandle()
        cert = conn.get_peer_certificate(as_cryptography=True)
        self.finished(("handshake", cert))
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.finished(("lost", reason))


def check_target_identity(reactor, host, port, ca_file, cert_subject=None,
                          hostname=None, timeout=10):
    """
    Connect to the TLS port C{host}:C{port} and tell whether a SPICE client
    with C{ca_file} would accept its certificate: the chain must verify
    against the CA file, then the subject must match C{cert_subject} (the
    client's SUBJECT mode) or, without it, the certificate must be valid for
    C{hostname} (default C{host}): DNS or IP subjectAltNames, the CN only
    when there is none (HOSTNAME mode).

    @return: a Deferred firing with C{(ok, reason)}; C{reason} is a sentence.
        It never fails: connection errors and timeouts are reasons.
    """
    try:
        return _checkTarget(reactor, host, port, ca_file, cert_subject,
                            hostname, timeout)
    except Exception as e:
        log.failure("check_target_identity")
        return defer.succeed((False, "cannot check %s:%s: %s"
                              % (host, port, e)))


def _checkTarget(reactor, host, port, ca_file, cert_subject, hostname,
                 timeout):
    where = "%s:%s" % (host, port)
    caName = os.path.basename(ca_file)
    try:
        with open(ca_file, "rb") as f:
            # Only to report an unreadable CA file clearly; OpenSSL loads it.
            x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        return defer.succeed((False, "cannot read the CA file %s (%s)"
                              % (ca_file, e.strerror or e)))
    except ValueError:
        return defer.succeed((False, "the CA file %s holds no PEM certificate"
                              % (ca_file,)))
    if cert_subject is not None:
        try:
            validate_subject(cert_subject)
        except ValueError as e:
            return defer.succeed((False, "the expected subject cannot be used "
                                  "by a SPICE client: %s" % (e,)))
    if hostname is None:
        hostname = host

    errors = []

    def verify(conn, cert, errno, depth, ok):
        if not ok:
            errors.append((depth, errno))
        return True     # decide after the handshake, with a clear reason

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    try:
        # As spice-gtk: SSL_CTX_load_verify_locations(ca-file).
        ctx.load_verify_locations(ca_file)
    except SSL.Error as e:
        return defer.succeed((False, "OpenSSL cannot use the CA file %s (%s)"
                              % (ca_file, ssl_error_text(e))))
    ctx.set_verify(SSL.VERIFY_PEER, verify)

    result = defer.Deferred()
    state = {"connected": None, "done": False}

    def finish(ok, reason):
        if not state["done"]:
            state["done"] = True
            if timer.active():
                timer.cancel()
            result.callback((ok, reason))

    def probeFinished(event):
        kind, value = event
        if state["done"]:
            return
        if kind == "lost":
            if errors:
                finish(False, _chainReason(where, errors, caName))
            else:
                finish(False, "the TLS handshake with %s failed (%s); is it "
                       "the TLS port?" % (where, ssl_error_text(value)))
            return
        cert = value
        if cert is None:
            finish(False, "%s sent no certificate" % (where,))
        elif errors:
            finish(False, _chainReason(where, errors, caName))
        elif cert_subject is not None:
            if subject_matches(cert_subject, cert):
                finish(True, "the certificate of %s is signed by the CA in %s "
                       "and has the subject %s" % (where, caName,
                                                   cert_subject))
            else:
                finish(False, "the certificate of %s has subject %s, not the "
                       "expected %s" % (where, _describeSubject(cert),
                                        cert_subject))
        else:
            finish(*_checkHostname(cert, hostname, where, caName))

    def timedOut():
        finish(False, "no TLS answer from %s within %s s" % (where, timeout))
        if state["connected"] is not None:
            state["connected"].transport.abortConnection()
        else:
            connecting.cancel()

    timer = reactor.callLater(timeout, timedOut)
    endpoint = endpoints.SSL4ClientEndpoint(
        reactor, host, port, _ProbeCreator(ctx), timeout=timeout)
    connecting = endpoint.connect(
        protocol.Factory.forProtocol(lambda: _Probe(probeFinished)))

    def connected(proto):
        state["connected"] = proto

    def failed(failure):
        if failure.check(error.ConnectionRefusedError):
            finish(False, "nothing listens on %s (connection refused)"
                   % (where,))
        elif failure.check(error.DNSLookupError):
            finish(False, "cannot resolve the host name %s" % (host,))
        elif failure.check(error.TimeoutError, defer.CancelledError):
            finish(False, "no TLS answer from %s within %s s"
                   % (where, timeout))
        else:
            finish(False, "cannot connect to %s (%s)"
                   % (where, failure.getErrorMessage()))
    connecting.addCallbacks(connected, failed)
    return result


def _chainReason(where, errors, caName):
    depth, errno = errors[0]
    why = _VERIFY_ERRORS.get(errno, "verification error %d" % (errno,))
    if errno in (18, 19, 20, 21, 2):
        return ("the certificate of %s is not signed by the CA in %s (%s)"
                % (where, caName, why))
    what = "certificate of %s" % (where,) if depth == 0 else (
        "certificate chain of %s (at depth %d)" % (where, depth))
    return "the %s does not verify against %s: %s" % (what, caName, why)



def _describeSubject(certificate):
    try:
        return format_subject(certificate)
    except ValueError:
        return certificate.subject.rfc4514_string()

