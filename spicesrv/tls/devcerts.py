"""
Development certificates: L{write_dev_certs} makes a CA and a server
certificate signed by it in QEMU's x509-dir layout (what
C{python -m spicesrv.scripts.certs dev DIR} writes).
"""

import datetime
import ipaddress
import os
from collections import namedtuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from spicesrv.tls.context import (
    CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)
from spicesrv.tls.subjects import format_subject, name_from_subject

__all__ = ["write_dev_certs", "DevCertificates"]


DevCertificates = namedtuple(
    "DevCertificates",
    "directory ca_cert ca_key server_cert server_key subject")


def _parseSAN(item):
    kind, sep, value = item.partition(":")
    if sep and kind.upper() == "DNS" and value:
        return x509.DNSName(value)
    if sep and kind.upper() == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            pass
    raise ValueError("bad subjectAltName %r: use DNS:name or IP:address"
                     % (item,))


def _writeFile(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_dev_certs(directory, subject="CN=localhost",
                    sans=("DNS:localhost", "IP:127.0.0.1"), days=365,
                    ca_subject="CN=spicesrv development CA", overwrite=False):
    """
    Write a development CA and a server certificate signed by it in QEMU's
    x509-dir layout: C{ca-cert.pem}, C{ca-key.pem} (mode 0600),
    C{server-cert.pem} and C{server-key.pem} (mode 0600).  Keys are EC P-256.

    @param subject: the server subject in C{cert-subject} syntax, entries in
        certificate order (C{C=XX,O=Org,CN=name}).
    @param sans: C{"DNS:name"} / C{"IP:address"} subjectAltNames.
    @param overwrite: replace existing files (otherwise C{FileExistsError}).
    @return: a L{DevCertificates} with the paths and the server's subject
        string (L{format_subject}).
    @raise ValueError: a bad subject or SAN, or a subject clients could not
        match.
    """
    name = name_from_subject(subject)
    caName = name_from_subject(ca_subject)
    altNames = [_parseSAN(s) for s in sans]
    if days < 1:
        raise ValueError("days must be at least 1")
    paths = DevCertificates(
        directory, os.path.join(directory, CA_CERT_FILE),
        os.path.join(directory, CA_KEY_FILE),
        os.path.join(directory, SERVER_CERT_FILE),
        os.path.join(directory, SERVER_KEY_FILE), None)
    if not overwrite:
        for path in paths[1:5]:
            if os.path.exists(path):
                raise FileExistsError("%s exists already; remove it or "
                                      "choose another directory" % (path,))

    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)
    end = now + datetime.timedelta(days=days)
    caKey = ec.generate_private_key(ec.SECP256R1())
    serverKey = ec.generate_private_key(ec.SECP256R1())
    caPublic = caKey.public_key()
    ca = (x509.CertificateBuilder()
          .subject_name(caName).issuer_name(caName)
          .public_key(caPublic)
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=False, content_commitment=False,
              key_encipherment=False, data_encipherment=False,
              key_agreement=False, key_cert_sign=True, crl_sign=True,
              encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(caPublic),
                         critical=False)
          .sign(caKey, hashes.SHA256()))
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(caName)
               .public_key(serverKey.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False,
                                                    path_length=None),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False,
                   key_encipherment=False, data_encipherment=False,
                   key_agreement=False, key_cert_sign=False, crl_sign=False,
                   encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   # clientAuth too: a server shows it to the target it
                   # migrates to (a tls: --incoming checks its source).
                   [ExtendedKeyUsageOID.SERVER_AUTH,
                    ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                   serverKey.public_key()), critical=False)
               .add_extension(
                   x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       caPublic), critical=False))
    if altNames:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(altNames), critical=False)
    server = builder.sign(caKey, hashes.SHA256())
    text = format_subject(server)     # refuse before writing anything

    os.makedirs(directory, exist_ok=True)

    def pemKey(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    _writeFile(paths.ca_key, pemKey(caKey), 0o600)
    _writeFile(paths.server_key, pemKey(serverKey), 0o600)
    _writeFile(paths.ca_cert, ca.public_bytes(serialization.Encoding.PEM),
               0o644)
    _writeFile(paths.server_cert,
               server.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths._replace(subject=text)

