"""
The server's TLS settings: L{load_server_tls} reads a server certificate,
its key and the CA the way QEMU's C{-spice tls-port=...,x509-dir=...} does,
checks them at load time (each problem is one L{TLSConfigError} line naming
the file) and returns a L{ServerTLS}, a Twisted connection creator for
L{twisted.internet.endpoints.SSL4ServerEndpoint}.  L{ssl_error_text} is the
one way spicesrv turns an OpenSSL error into words.
"""

import datetime
import os

from zope.interface import implementer

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

from spicesrv.tls.subjects import format_subject

__all__ = [
    "TLSConfigError", "ServerTLS", "load_server_tls", "ssl_error_text",
    "CA_CERT_FILE", "SERVER_CERT_FILE", "SERVER_KEY_FILE", "CA_KEY_FILE",
    "TLS13_CIPHERSUITES",
]

#: OpenSSL's SSL_MODE_ENABLE_PARTIAL_WRITE (pyOpenSSL sets it on every
#: context and does not name it).
SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1

#: The TLS 1.3 suites the server takes, in the order it prefers them: the
#: order of Mozilla's recommended server configurations (OpenSSL's own puts
#: AES-256-GCM first).  AES-128-GCM is the suite every TLS 1.3 peer must
#: have (RFC 8446, 9.1) and costs both ends less per byte: a full-HD picture
#: changing every frame came 5-7 % faster over it than over AES-256-GCM
#: with spice-gtk on the same machine (benchmarks/README.md, issue 14's
#: eighth pass).
TLS13_CIPHERSUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#: QEMU's x509-dir file names (ui/qemu-x509.h); the CA key is ours.
CA_CERT_FILE = "ca-cert.pem"
SERVER_CERT_FILE = "server-cert.pem"
SERVER_KEY_FILE = "server-key.pem"
CA_KEY_FILE = "ca-key.pem"


class TLSConfigError(ValueError):
    """
    A TLS configuration mistake.  The message is one line naming the file (or
    the option) and what to change.
    """


def _readFile(path, what, option):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSConfigError("%s: no such file (the %s); %s"
                             % (path, what, option))
    except IsADirectoryError:
        raise TLSConfigError("%s: is a directory, not the %s; %s"
                             % (path, what, option))
    except OSError as e:
        raise TLSConfigError("%s: cannot read the %s (%s); make it readable "
                             "by this user" % (path, what, e.strerror or e))


def _loadCertificates(path, what, option):
    data = _readFile(path, what, option)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TLSConfigError(
            "%s: not a PEM certificate (no valid '-----BEGIN CERTIFICATE-----'"
            " block); give the %s in PEM form" % (path, what))
    return certs


def _checkDates(path, cert, now, what):
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > after:
        raise TLSConfigError(
            "%s: the %s expired on %s UTC; renew it (for development: "
            "python -m spicesrv.scripts.certs dev DIR)"
            % (path, what, after.strftime("%Y-%m-%d %H:%M:%S")))
    if now < before:
        raise TLSConfigError(
            "%s: the %s is not valid before %s UTC (now %s UTC); check the "
            "clock or the certificate's dates"
            % (path, what, before.strftime("%Y-%m-%d %H:%M:%S"),
               now.strftime("%Y-%m-%d %H:%M:%S")))


def _loadKey(path, password):
    data = _readFile(path, "server private key",
                     "put server-key.pem in the x509 dir or name the file "
                     "with x509-key-file")
    if isinstance(password, str):
        password = password.encode("utf-8")
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise TLSConfigError("%s: not a PEM private key (no '-----BEGIN ... "
                             "PRIVATE KEY-----' block); give the server's "
                             "private key in PEM form" % (path,))
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise TLSConfigError("%s: the private key is encrypted; give its "
                                 "password (x509-key-password)" % (path,))
        # A password for a key that is not encrypted: ignored, as OpenSSL
        # does.
        try:
            return serialization.load_pem_private_key(data, None)
        except (TypeError, ValueError):
            raise TLSConfigError("%s: cannot load the private key; give the "
                                 "server's private key in PEM form" % (path,))
    except ValueError:
        if password is not None and b"ENCRYPTED" in data:
            raise TLSConfigError("%s: wrong password for the encrypted private "
                                 "key; check x509-key-password" % (path,))
        raise TLSConfigError("%s: not a usable PEM private key; give the "
                             "server's private key in PEM form" % (path,))
    except Exception as e:  # unsupported algorithms and the like
        raise TLSConfigError("%s: cannot use this private key (%s); give an "
                             "RSA or EC key in PEM form" % (path, e))


def _publicBytes(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# OpenSSL's X509_V_ERR_INVALID_PURPOSE.
_INVALID_PURPOSE = 26


def _verifyPeerServer(connection, certificate, errno, depth, ok):
    """
    Accept a peer whose chain verifies against our CA.  The peer is another
    server (the migration source), whose certificate may be issued for
    serverAuth only: that purpose mismatch on the leaf is not a reason to
    refuse it.
    """
    return bool(ok) or (errno == _INVALID_PURPOSE and depth == 0)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS(object):
    """
    The server's TLS settings, as loaded by L{load_server_tls}: a connection
    creator for L{twisted.internet.endpoints.SSL4ServerEndpoint} (and, with
    L{getContext}, an old-style context factory).

    Like libspice-server: TLS 1.2 or newer (the reference still allows 1.1),
    no compression, no renegotiation, no client certificate requested, the
    CA file loaded as the verify store, an optional cipher list (TLS 1.2 and
    older; TLS 1.3 suites are OpenSSL's) and DH parameters file.

    @ivar certificate: the server certificate (L{cryptography.x509.Certificate}).
    @ivar chain: the further certificates of the certificate file
        (intermediates), sent after it.
    @ivar ca_certificates: the certificates of the CA file (may be empty).
    @ivar subject: the C{cert-subject} string for this certificate
        (L{format_subject}), or C{None} when clients cannot match it; then
        C{subject_error} says why.
    @ivar cert_file, key_file, cacert_file, dh_file, ciphers: what was loaded.
    """

    def __init__(self, certificate, chain, private_key, ca_certificates=(),
                 cert_file=None, key_file=None, cacert_file=None,
                 dh_file=None, ciphers=None):
        self.certificate = certificate
        self.chain = list(chain)
        self.ca_certificates = list(ca_certificates)
        self.cert_file = cert_file
        self.key_file = key_file
        self.cacert_file = cacert_file
        self.dh_file = dh_file
        self.ciphers = ciphers
        try:
            self.subject = format_subject(certificate)
            self.subject_error = None
        except ValueError as e:
            self.subject = None
            self.subject_error = str(e)
        self._privateKey = private_key
        self._context = self._makeContext(private_key)

    def requiringClientCertificates(self):
        """
        The same server settings, but a peer must present a certificate
        signed by the CA (for the migration state transfer, where the peer
        is the source server, not a SPICE client).

        @raise TLSConfigError: there is no CA file to check peers against.
        """
        if self.cacert_file is None:
            raise TLSConfigError("checking the migration source needs a CA certificate "
                                 "(ca-cert.pem in the x509 dir, or x509-cacert-file)")
        other = object.__new__(ServerTLS)
        other.__dict__.update(self.__dict__)
        other._context = self._makeContext(self._privateKey, verifyClients=True)
        return other

    def clientOptions(self, hostname):
        """
        Client TLS options for connecting to another server of this CA (the
        migration target): its certificate must chain to our CA and match
        C{hostname}, and we present our own certificate.
        """
        from twisted.internet import ssl
        from OpenSSL import crypto
        if self.cacert_file is None:
            raise TLSConfigError("checking the migration target needs a CA certificate "
                                 "(ca-cert.pem in the x509 dir, or x509-cacert-file)")
        authority = ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(ca))
             for ca in self.ca_certificates])
        mine = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            ssl.Certificate(crypto.X509.from_cryptography(self.certificate)),
            ssl.KeyPair(crypto.PKey.from_cryptography_key(self._privateKey)))
        return ssl.optionsForClientTLS(hostname, trustRoot=authority,
                                       clientCertificate=mine)

    def _makeContext(self, private_key, verifyClients=False):
        ctx = SSL.Context(SSL.TLS_METHOD)
        # pyOpenSSL lets SSL_write stop after one record; connections write
        # through memory BIOs, which never block, so one call may encrypt a
        # whole picture (spicesrv.tls.endpoint).
        ctx.clear_mode(SSL_MODE_ENABLE_PARTIAL_WRITE)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1
                        | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_COMPRESSION
                        | getattr(SSL, "OP_NO_RENEGOTIATION", 0)
                        | SSL.OP_CIPHER_SERVER_PREFERENCE)

        def step(what, action, *args):
            try:
                action(*args)
            except SSL.Error as e:
                raise TLSConfigError(what % (ssl_error_text(e),))
        certName = self.cert_file or "the certificate"
        step("%s: OpenSSL refuses the certificate (%%s); use an RSA or EC "
             "certificate in PEM form" % (certName,),
             ctx.use_certificate, self.certificate)
        for cert in self.chain:
            step("%s: OpenSSL refuses a chain certificate (%%s); keep only "
                 "the server certificate and its intermediates in it"
                 % (certName,), ctx.add_extra_chain_cert, cert)
        keyName = self.key_file or "the key"
        step("%s: OpenSSL refuses the private key (%%s); use the key of %s"
             % (keyName, certName), ctx.use_privatekey, private_key)
        step("%s: the private key does not belong to %s (%%s); use the key "
             "the certificate was issued for" % (keyName, certName),
             ctx.check_privatekey)
        if self.cacert_file is not None:
            # As libspice-server: the CA file is the verify store (it also
            # completes the chain sent when the certificate file lacks it).
            step("%s: OpenSSL cannot load the CA certificates (%%s); give "
                 "the CA certificate in PEM form" % (self.cacert_file,),
                 ctx.load_verify_locations, self.cacert_file)
        if self.dh_file is not None:
            step("%s: OpenSSL refuses these DH parameters (%%s); generate "
                 "2048-bit ones with 'openssl dhparam -out %s 2048'"
                 % (self.dh_file, self.dh_file), ctx.load_tmp_dh,
                 self.dh_file)
        # TLS 1.3's suites (tls-ciphers, as QEMU's, governs TLS 1.2 only):
        # all three still offered, AES-128-GCM preferred.
        ctx.set_tls13_ciphersuites(TLS13_CIPHERSUITES)
        ctx.set_session_id(b"SPICE")
        # No session resumption: spice-gtk 0.42 makes a fresh TLS context
        # for each channel and never offers a session back (checked: every
        # handshake of a client's four channels is a full one), so the two
        # TLS 1.3 session tickets OpenSSL would issue after each handshake,
        # and the server-side cache behind them, were pure cost: about 750
        # bytes after every handshake and some 7 % of its server CPU.
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if verifyClients:
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                           _verifyPeerServer)
        else:
            ctx.set_verify(SSL.VERIFY_NONE)
        if self.ciphers is not None:
            # Last: pyOpenSSL checks the list with a throw-away Connection,
            # after which the context can no longer be changed.
            step("tls-ciphers %r: OpenSSL refuses it (%%s); give an OpenSSL "
                 "cipher string" % (self.ciphers,), ctx.set_cipher_list,
                 self.ciphers.encode("ascii"))
        return ctx

    def getContext(self):
        """The pyOpenSSL context (old-style context factory API)."""
        return self._context

    def serverConnectionForTLS(self, tlsProtocol):
        """A server-side connection for one accepted socket."""
        return SSL.Connection(self._context, None)

    def __repr__(self):
        return "<ServerTLS %s (%s)>" % (self.cert_file, self.subject or "?")


def _checkCiphers(ciphers):
    try:
        encoded = ciphers.encode("ascii")
    except UnicodeEncodeError:
        encoded = None
    if encoded:
        try:
            SSL.Context(SSL.TLS_METHOD).set_cipher_list(encoded)
            return
        except SSL.Error:
            pass
    raise TLSConfigError(
        "tls-ciphers %r: no cipher OpenSSL knows matches it; give an OpenSSL "
        "cipher string (see 'openssl ciphers -v', e.g. HIGH:!aNULL)"
        % (ciphers,))


def _checkDH(path):
    data = _readFile(path, "DH parameters file", "name an existing file "
                     "with x509-dh-key-file")
    # OpenSSL itself reads them when the context is made.
    if (b"-----BEGIN DH PARAMETERS-----" not in data
            and b"-----BEGIN X9.42 DH PARAMETERS-----" not in data):
        raise TLSConfigError("%s: not PEM DH parameters; generate them with "
                             "'openssl dhparam -out %s 2048'" % (path, path))


def load_server_tls(x509_dir=None, cert_file=None, key_file=None,
                    cacert_file=None, key_password=None, dh_file=None,
                    ciphers=None, now=None):
    """
    Load the server's certificate, key and CA and return a L{ServerTLS} (a
    connection creator for
    C{endpoints.SSL4ServerEndpoint(reactor, port, result, interface=addr)}).

    Files follow QEMU's C{-spice} options: C{x509_dir} gives C{ca-cert.pem},
    C{server-cert.pem} and C{server-key.pem}; C{cert_file}, C{key_file} and
    C{cacert_file} override single files.  Without C{x509_dir} the CA file is
    optional.  DH parameters are used only when C{dh_file} is given (QEMU's
    C{x509-dh-key-file}); none is taken from the directory.  The certificate
    file may hold the chain (server certificate first, then intermediates);
    all of it is sent.

    @param key_password: the password of an encrypted key (str or bytes).
    @param ciphers: an OpenSSL cipher string (QEMU's C{tls-ciphers}).
    @param now: an aware datetime to check the validity period against
        (default: the current time).
    @raise TLSConfigError: one line naming the file and what to change.
    """
    if x509_dir is not None:
        if not os.path.isdir(x509_dir):
            raise TLSConfigError(
                "%s: no such directory (x509-dir); create it with "
                "'python -m spicesrv.scripts.certs dev %s' or name the right "
                "directory" % (x509_dir, x509_dir))
        if cert_file is None:
            cert_file = os.path.join(x509_dir, SERVER_CERT_FILE)
        if key_file is None:
            key_file = os.path.join(x509_dir, SERVER_KEY_FILE)
        if cacert_file is None:
            cacert_file = os.path.join(x509_dir, CA_CERT_FILE)
    if cert_file is None or key_file is None:
        raise TLSConfigError(
            "no server certificate and key: give x509-dir (with %s and %s) "
            "or both x509-cert-file and x509-key-file"
            % (SERVER_CERT_FILE, SERVER_KEY_FILE))
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)

    certs = _loadCertificates(
        cert_file, "server certificate",
        "put server-cert.pem in the x509 dir or name the file with "
        "x509-cert-file")
    certificate, chain = certs[0], certs[1:]
    _checkDates(cert_file, certificate, now, "server certificate")
    key = _loadKey(key_file, key_password)
    if _publicBytes(key.public_key()) != _publicBytes(
            certificate.public_key()):
        raise TLSConfigError(
            "%s: this private key does not belong to the certificate in %s; "
            "use the key the certificate was issued for" % (key_file,
                                                            cert_file))
    cas = []
    if cacert_file is not None:
        cas = _loadCertificates(
            cacert_file, "CA certificate",
            "put ca-cert.pem in the x509 dir or name the file with "
            "x509-cacert-file")
    if dh_file is not None:
        _checkDH(dh_file)
    if ciphers is not None:
        _checkCiphers(ciphers)
    return ServerTLS(certificate, chain, key, cas, cert_file=cert_file,
                     key_file=key_file, cacert_file=cacert_file,
                     dh_file=dh_file, ciphers=ciphers)


def ssl_error_text(failure_or_error):
    """
    The reasons OpenSSL gives for an error, as one line for an operator:
    the reason strings of an L{OpenSSL.SSL.Error}'s queue joined by commas,
    or else the exception's text or class name.

    @param failure_or_error: an exception or a
        L{twisted.python.failure.Failure} of one.
    @rtype: L{str}
    """
    err = failure_or_error
    if hasattr(err, "value"):
        err = err.value
    try:
        parts = [str(item[2]) for item in err.args[0] if item[2]]
    except (IndexError, TypeError):
        parts = []
    return ", ".join(parts) or str(err) or err.__class__.__name__

