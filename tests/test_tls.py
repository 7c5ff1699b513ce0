"""
Tests for L{spicesrv.tls} (its subjects, context, probe and devcerts
modules) and C{python -m spicesrv.scripts.certs}: subject strings as SPICE
clients parse and compare them (checked against the system's libcrypto, the
one spice-gtk uses), the server's TLS settings and
their one-line errors, a real handshake on loopback (TLS 1.1 refused by the
server), target checks, development certificates and the operator commands.
"""

import ctypes
import ctypes.util
import datetime
import io
import os
import random
import socket
import ssl
import stat
import struct
import sys
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from zope.interface import implementer

from twisted.internet import defer, endpoints, protocol, reactor, threads
from twisted.internet import utils
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.trial import unittest

from spicesrv.tls import devcerts, subjects
from spicesrv.tls.context import ServerTLS, TLSConfigError, load_server_tls
from spicesrv.tls.devcerts import write_dev_certs
from spicesrv.tls.probe import check_target_identity
from spicesrv.tls.subjects import (
    format_subject, name_from_subject, parse_subject, subject_matches, validate_subject)
from spicesrv.scripts import certs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)

#: RFC 7919's ffdhe2048 group (openssl genpkey -genparam -algorithm DH
#: -pkeyopt dh_param:ffdhe2048).
FFDHE2048 = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""

#: Too small for OpenSSL's default security level.
DH512 = b"""-----BEGIN DH PARAMETERS-----
MEYCQQDuQOP2zSRRCTrNrcUon8nw8ngaB0Df67RxPBwUFi9mnkKML0JvHGjmJdEX
/rhxD87b/s5Vns2sEppF0O3bzQ/XAgEC
-----END DH PARAMETERS-----
"""


# ---------------------------------------------------------------------------
# Helpers: hand-made certificates
# ---------------------------------------------------------------------------

def attr(oid, value, kind=None):
    """A NameAttribute without cryptography's own checks (awkward values)."""
    if kind is None:
        return x509.NameAttribute(oid, value, _validate=False)
    return x509.NameAttribute(oid, value, kind, _validate=False)


def name(*attributes):
    return x509.Name(list(attributes))


def newKey():
    return ec.generate_private_key(ec.SECP256R1())


def makeCA(subject="CN=test CA", key=None):
    key = key or newKey()
    caName = name_from_subject(subject)
    cert = (x509.CertificateBuilder()
            .subject_name(caName).issuer_name(caName)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(subject, caCert, caKey, key=None, sans=(), isCA=False,
          notBefore=None, notAfter=None):
    """A certificate for C{subject} (a Name) signed by the CA."""
    key = key or newKey()
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(caCert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(notBefore or NOW - datetime.timedelta(days=1))
               .not_valid_after(notAfter or NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=isCA,
                                                    path_length=None),
                              critical=True))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([devcerts._parseSAN(s) for s in sans]),
            critical=False)
    return builder.sign(caKey, hashes.SHA256()), key


def pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def keyPEM(key, password=None):
    encryption = (serialization.BestAvailableEncryption(password)
                  if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, encryption)


def writeBytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def writeDir(directory, subject, sans=("DNS:localhost", "IP:127.0.0.1")):
    """An x509 dir with a server certificate for the Name C{subject}."""
    os.makedirs(directory, exist_ok=True)
    caCert, caKey = makeCA()
    cert, key = issue(subject, caCert, caKey, sans=sans)
    writeBytes(os.path.join(directory, "ca-cert.pem"), pem(caCert))
    writeBytes(os.path.join(directory, "server-cert.pem"), pem(cert))
    writeBytes(os.path.join(directory, "server-key.pem"), keyPEM(key))
    return cert


AWKWARD = {
    "comma": name(attr(NameOID.COUNTRY_NAME, "XX"),
                  attr(NameOID.ORGANIZATION_NAME, "Org, Inc."),
                  attr(NameOID.COMMON_NAME, "localhost")),
    "backslash": name(attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "a\\b"),
                      attr(NameOID.COMMON_NAME, "c\\,d\\")),
    "multipleOU": name(attr(NameOID.ORGANIZATION_NAME, "Org"),
                       attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "one"),
                       attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "two"),
                       attr(NameOID.COMMON_NAME, "h")),
    "email": name(attr(NameOID.COMMON_NAME, "h"),
                  attr(NameOID.EMAIL_ADDRESS, "admin@example.com")),
    "unicode": name(attr(NameOID.LOCALITY_NAME, "Zürich"),
                    attr(NameOID.COMMON_NAME, "Überserver ñ 😀")),
    "spacesAndEquals": name(attr(NameOID.COMMON_NAME, "  spaced = value  ")),
}

EXPECTED = {
    "comma": "C=XX,O=Org\\, Inc.,CN=localhost",
    "backslash": "OU=a\\\\b,CN=c\\\\\\,d\\\\",
    "multipleOU": "O=Org,OU=one,OU=two,CN=h",
    "email": "CN=h,emailAddress=admin@example.com",
    "unicode": "L=Zürich,CN=Überserver ñ 😀",
    "spacesAndEquals": "CN=  spaced = value  ",
}


# ---------------------------------------------------------------------------
# parse_subject
# ---------------------------------------------------------------------------

class ParseSubjectTests(unittest.TestCase):
    def test_plain(self):
        self.assertEqual(parse_subject("C=XX,L=city,O=org,CN=name"),
                         [("C", "XX"), ("L", "city"), ("O", "org"),
                      ("CN", "name")])

    def test_spacesBeforeKeysSkippedInValuesKept(self):
        self.assertEqual(parse_subject("  CN= a b ,  O=x "),
                         [("CN", " a b "), ("O", "x ")])

    def test_spaceAfterKeyIsPartOfTheKey(self):
        self.assertEqual(parse_subject("CN =a"), [("CN ", "a")])

    def test_escapes(self):
        self.assertEqual(parse_subject("O=a\\,b,OU=c\\\\d\\\\"),
                         [("O", "a,b"), ("OU", "c\\d\\")])

    def test_equalsInValue(self):
        self.assertEqual(parse_subject("CN=a=b="), [("CN", "a=b=")])

    def test_trailingCommaAndEmpty(self):
        self.assertEqual(parse_subject("CN=a,"), [("CN", "a")])
        self.assertEqual(parse_subject("CN=a,  "), [("CN", "a")])
        self.assertEqual(parse_subject(""), [])
        self.assertEqual(parse_subject("   "), [])

    def test_endsAtNUL(self):
        self.assertEqual(parse_subject("CN=a\0,O=b"), [("CN", "a")])

    def test_invalid(self):
        for text in ["CN", "CN=", "CN=a,,O=b", ",CN=a", "CN=a,O",
                     "CN=a\\b", "CN=a\\", "CN=\\=x", "CN=a, ,O=b"]:
            self.assertRaises(ValueError, parse_subject, text)


# ---------------------------------------------------------------------------
# format_subject and subject_matches
# ---------------------------------------------------------------------------

class FormatSubjectTests(unittest.TestCase):
    def test_awkward(self):
        for label, subject in AWKWARD.items():
            text = format_subject(subject)
            self.assertEqual(text, EXPECTED[label], label)
            # Round trip: the client reads back the certificate's entries.
            self.assertEqual(
                parse_subject(text),
                [(subjects._keyName(a.oid.dotted_string), a.value)
                 for a in subject], label)
            self.assertTrue(subject_matches(text, subject), label)

    def test_certificateNameAndDER(self):
        caCert, caKey = makeCA()
        cert, _ = issue(AWKWARD["comma"], caCert, caKey)
        self.assertEqual(format_subject(cert), EXPECTED["comma"])
        self.assertEqual(format_subject(cert.subject), EXPECTED["comma"])
        self.assertEqual(format_subject(cert.subject.public_bytes()),
                         EXPECTED["comma"])

    def test_devCertificates(self):
        made = write_dev_certs(self.mktemp(),
                               subject="C=XX,L=city,O=org,CN=name")
        self.assertEqual(made.subject, "C=XX,L=city,O=org,CN=name")
        with open(made.server_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(format_subject(cert), made.subject)

    def test_shortNames(self):
        subject = name(
            attr(NameOID.COUNTRY_NAME, "XX"),
            attr(NameOID.STATE_OR_PROVINCE_NAME, "st"),
            attr(NameOID.STREET_ADDRESS, "street"),
            attr(NameOID.DOMAIN_COMPONENT, "example"),
            attr(NameOID.USER_ID, "uid"),
            attr(NameOID.SERIAL_NUMBER, "1234"),
            attr(NameOID.GIVEN_NAME, "g"), attr(NameOID.SURNAME, "s"),
            attr(x509.ObjectIdentifier("1.2.3.4"), "private"))
        self.assertEqual(format_subject(subject),
                         "C=XX,ST=st,street=street,DC=example,UID=uid,"
                         "serialNumber=1234,GN=g,SN=s,1.2.3.4=private")

    def test_emptyValueBecomesSpaces(self):
        subject = name(attr(NameOID.ORGANIZATION_NAME, "o"),
                       attr(NameOID.COMMON_NAME, ""))
        text = format_subject(subject)
        self.assertEqual(text, "O=o,CN= ")
        self.assertTrue(subject_matches(text, subject))

    def test_t61IsLatin1(self):
        # OpenSSL reads T61String bytes as Latin-1: the subject must too.
        subject = name(attr(NameOID.COMMON_NAME, "caf\xe9",
                            _ASN1Type.T61String))
        text = format_subject(subject)
        self.assertEqual(text, "CN=caf\xc3\xa9")
        self.assertTrue(subject_matches(text, subject))
        self.assertFalse(subject_matches("CN=caf\xe9", subject))

    def test_bmpString(self):
        subject = name(attr(NameOID.COMMON_NAME, "bmp ü",
                            _ASN1Type.BMPString))
        self.assertEqual(format_subject(subject), "CN=bmp ü")

    def assertUnmatchable(self, subject, *words):
        try:
            format_subject(subject)
        except ValueError as e:
            message = str(e)
        else:
            self.fail("format_subject accepted %r" % (subject,))
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)

    def test_multiValuedRDN(self):
        subject = x509.Name([x509.RelativeDistinguishedName(
            [attr(NameOID.COMMON_NAME, "a"),
             attr(NameOID.ORGANIZATION_NAME, "b")])])
        self.assertUnmatchable(subject, "multi-valued RDN", "+")
        self.assertFalse(subject_matches("CN=a,O=b", subject))
        self.assertFalse(subject_matches("O=b,CN=a", subject))

    def test_emptySubject(self):
        self.assertUnmatchable(x509.Name([]), "empty", "host name")

    def test_tooLong(self):
        self.assertUnmatchable(name(attr(NameOID.COMMON_NAME, "x" * 65)),
                               "CN", "65", "64")

    def test_notPrintable(self):
        self.assertUnmatchable(
            name(attr(NameOID.SERIAL_NUMBER, "abc_1", _ASN1Type.UTF8String)),
            "serialNumber", "'_'", "PrintableString")

    def test_emailNotASCII(self):
        self.assertUnmatchable(
            name(attr(NameOID.EMAIL_ADDRESS, "ü@example.com",
                      _ASN1Type.UTF8String)),
            "emailAddress", "IA5String")

    def test_typeNotCanonicalised(self):
        self.assertUnmatchable(
            name(attr(NameOID.COMMON_NAME, "123", _ASN1Type.NumericString)),
            "CN", "NumericString")

    def test_typeOpenSSLRefuses(self):
        self.assertUnmatchable(
            name(attr(NameOID.COMMON_NAME, "v", _ASN1Type.VisibleString)),
            "VisibleString", "refuses")

    def test_nul(self):
        self.assertUnmatchable(name(attr(NameOID.COMMON_NAME, "a\0b")),
                               "NUL")


class SubjectMatchesTests(unittest.TestCase):
    def setUp(self):
        self.subject = name(attr(NameOID.COUNTRY_NAME, "XX"),
                            attr(NameOID.ORGANIZATION_NAME, "My   Org"),
                            attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "one"),
                            attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "two"),
                            attr(NameOID.COMMON_NAME, "LocalHost"))

    def assertMatches(self, text):
        self.assertTrue(subject_matches(text, self.subject), text)

    def assertNoMatch(self, text):
        self.assertFalse(subject_matches(text, self.subject), text)

    def test_formatted(self):
        self.assertMatches(format_subject(self.subject))

    def test_orderCountAndEntries(self):
        self.assertNoMatch("C=XX,O=My   Org,OU=two,OU=one,CN=LocalHost")
        self.assertNoMatch("O=My   Org,C=XX,OU=one,OU=two,CN=LocalHost")
        self.assertNoMatch("C=XX,O=My   Org,OU=one,CN=LocalHost")
        self.assertNoMatch("C=XX,O=My   Org,OU=one,OU=two,OU=two,"
                           "CN=LocalHost")
        self.assertNoMatch("C=XX,O=My   Org,OU=one,OU=two,CN=LocalHost,"
                           "emailAddress=a@b")
        self.assertNoMatch("C=XX,O=My   Org,OU=one,OU=two,L=LocalHost")

    def test_caseAndWhitespaceAsX509NameCmp(self):
        # ASCII case and runs of ASCII whitespace do not matter ...
        self.assertMatches("C=xx,O=my org,OU=ONE,OU=Two,CN=localhost")
        self.assertMatches(" C=XX, O=  My\t\nOrg , OU=one,OU=two,"
                           "CN=LOCALHOST,")
        # ... but whitespace does not disappear inside a value,
        self.assertNoMatch("C=XX,O=MyOrg,OU=one,OU=two,CN=LocalHost")
        # and key names are case-sensitive OpenSSL names.
        self.assertNoMatch("c=XX,O=My Org,OU=one,OU=two,CN=LocalHost")
        self.assertMatches("countryName=XX,organizationName=My Org,"
                           "organizationalUnitName=one,OU=two,"
                           "2.5.4.3=LocalHost")

    def test_nonASCIICaseMatters(self):
        subject = name(attr(NameOID.COMMON_NAME, "Éa"))
        self.assertTrue(subject_matches("CN=ÉA", subject))
        self.assertFalse(subject_matches("CN=éa", subject))

    def test_invalidText(self):
        self.assertNoMatch("C=XX,O=My Org,OU=one,OU=two,CN")
        self.assertNoMatch("C=XX,O=My Org,OU=one,OU=two,CN=\\x")
        self.assertNoMatch("")

    def test_emptySubjectMatchesEmptyText(self):
        # What the client does (checked with spice-gtk): an empty
        # cert-subject accepts a certificate with an empty subject.
        self.assertTrue(subject_matches("", x509.Name([])))

    def test_validateSubject(self):
        self.assertEqual(validate_subject("C=XX,CN=a"),
                         [("C", "XX"), ("CN", "a")])
        for text, word in [("C=XXX,CN=a", "at most 2"),
                           ("cn=a", "not an attribute name"),
                           ("emailAddress=ü@x", "IA5String"),
                           ("CN=a\\x", "backslash")]:
            e = self.assertRaises(ValueError, validate_subject, text)
            self.assertIn(word, str(e))


class LibcryptoOracle(object):
    """
    The client's comparison run by the system's libcrypto (the library
    spice-gtk links): X509_NAME_add_entry_by_txt with MBSTRING_UTF8, entry
    count, X509_NAME_cmp.
    """

    MBSTRING_UTF8 = 0x1000

    def __init__(self):
        path = ctypes.util.find_library("crypto") or "libcrypto.so.3"
        lib = ctypes.CDLL(path)
        vp = ctypes.c_void_p
        lib.X509_NAME_new.restype = vp
        lib.X509_NAME_free.argtypes = [vp]
        lib.X509_NAME_add_entry_by_txt.argtypes = [
            vp, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
            ctypes.c_int, ctypes.c_int]
        lib.d2i_X509_NAME.restype = vp
        lib.d2i_X509_NAME.argtypes = [vp, ctypes.POINTER(vp), ctypes.c_long]
        lib.X509_NAME_entry_count.argtypes = [vp]
        lib.X509_NAME_cmp.argtypes = [vp, vp]
        self.lib = lib

    def matches(self, text, der):
        """True/False as the client decides; None if the name won't load."""
        lib = self.lib
        buf = ctypes.create_string_buffer(der, len(der))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        theirs = lib.d2i_X509_NAME(None, ctypes.byref(ptr), len(der))
        if not theirs:
            lib.ERR_clear_error()
            return None
        ours = lib.X509_NAME_new()
        try:
            try:
                entries = parse_subject(text)
            except ValueError:
                return False
            for key, value in entries:
                if not lib.X509_NAME_add_entry_by_txt(
                        ours, key.encode("utf-8"), self.MBSTRING_UTF8,
                        value.encode("utf-8"), -1, -1, 0):
                    lib.ERR_clear_error()
                    return False
            if lib.X509_NAME_entry_count(theirs) != len(entries):
                return False
            return lib.X509_NAME_cmp(theirs, ours) == 0
        finally:
            lib.X509_NAME_free(ours)
            lib.X509_NAME_free(theirs)


class OracleTests(unittest.TestCase):
    """
    subject_matches and format_subject agree with the client's own OpenSSL
    on many random awkward subjects.
    """

    CHARS = list("aAzZ09 \t\n\x0b\r,\\=+*_@.'éÉ€😀ſ\u00a0")
    KEYS = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME,
            NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COUNTRY_NAME,
            NameOID.EMAIL_ADDRESS, NameOID.SERIAL_NUMBER,
            NameOID.DOMAIN_COMPONENT, NameOID.LOCALITY_NAME, NameOID.USER_ID,
            NameOID.TITLE, NameOID.DN_QUALIFIER,
            x509.ObjectIdentifier("1.2.643.3.131.1.1"),       # INN
            x509.ObjectIdentifier("1.2.840.113549.1.9.20"),   # friendlyName
            x509.ObjectIdentifier("1.2.3.4")]
    TYPES = [None, _ASN1Type.UTF8String, _ASN1Type.PrintableString,
             _ASN1Type.IA5String, _ASN1Type.BMPString,
             _ASN1Type.UniversalString, _ASN1Type.T61String,
             _ASN1Type.NumericString, _ASN1Type.VisibleString]

    def setUp(self):
        try:
            self.oracle = LibcryptoOracle()
        except (OSError, AttributeError) as e:
            msg = "the system libcrypto is not usable: %s" % (e,)
            if os.environ.get("CI") == "true":
                self.fail(msg)
            raise unittest.SkipTest(msg)

    def randomName(self, rnd):
        attributes = []
        for _ in range(rnd.randint(1, 4)):
            value = "".join(rnd.choice(self.CHARS)
                            for _ in range(rnd.choice([0, 1, 2, 3, 5, 70])))
            kind = rnd.choice(self.TYPES)
            try:
                attributes.append(attr(rnd.choice(self.KEYS), value, kind))
            except (ValueError, TypeError):
                continue
        if len(attributes) >= 2 and rnd.random() < 0.1:
            rdns = [x509.RelativeDistinguishedName(attributes[:2])]
            rdns += [x509.RelativeDistinguishedName([a])
                     for a in attributes[2:]]
            return x509.Name(rdns), attributes
        return x509.Name(attributes), attributes

    def test_agreesWithLibcrypto(self):
        rnd = random.Random(20240611)
        compared = formatted = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(800):
                subject, attributes = self.randomName(rnd)
                try:
                    der = subject.public_bytes()
                except ValueError:
                    continue
                texts = []
                try:
                    text = format_subject(der)
                except ValueError:
                    text = None
                if text is not None:
                    formatted += 1
                    self.assertIs(self.oracle.matches(text, der), True,
                                  (text, der.hex()))
                naive = ",".join(
                    "%s=%s" % (subjects._keyName(a.oid.dotted_string),
                               subjects._escape(a.value or " "))
                    for a in attributes)
                if text is None:
                    # Refused: the client cannot match it either.
                    self.assertNotEqual(self.oracle.matches(naive, der), True,
                                        (naive, der.hex()))
                texts.append(naive)
                for _ in range(3):
                    chars = list(naive)
                    i = rnd.randrange(len(chars))
                    op = rnd.random()
                    if op < 0.4:
                        chars[i] = chars[i].swapcase()
                    elif op < 0.7:
                        chars.insert(i, rnd.choice(" \t,\\="))
                    else:
                        del chars[i]
                    texts.append("".join(chars))
                for text in texts:
                    expected = self.oracle.matches(text, der)
                    if expected is None:
                        expected = False    # the client cannot load it
                    compared += 1
                    self.assertEqual(subject_matches(text, der), expected,
                                     (text, der.hex()))
        self.assertGreater(compared, 2000)
        self.assertGreater(formatted, 100)

    def test_keysAsOpenSSLReadsThem(self):
        subject = name(attr(x509.ObjectIdentifier("1.2.3.4"), "v"))
        der = subject.public_bytes()
        for key in ["1.2.3.4", "1.2.3.4 ", "1.2.3.4.", "1 .2.3.4", "1.2.3.4x",
                    "1.2.3", "01.2.3.4", "1.2.3.04"]:
            text = "%s=v" % (key,)
            self.assertEqual(subject_matches(text, der),
                             self.oracle.matches(text, der), key)


# ---------------------------------------------------------------------------
# load_server_tls
# ---------------------------------------------------------------------------

class LoadServerTLSTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        self.made = write_dev_certs(self.dir, subject="O=Org,CN=localhost")

    def assertConfigError(self, path, *words, **kwargs):
        try:
            load_server_tls(**kwargs)
        except TLSConfigError as e:
            message = str(e)
        else:
            self.fail("no TLSConfigError for %r" % (kwargs,))
        self.assertNotIn("\n", message)
        if path is not None:
            self.assertIn(path, message)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_loads(self):
        loaded = load_server_tls(x509_dir=self.dir)
        self.assertIsInstance(loaded.certificate, x509.Certificate)
        self.assertEqual(loaded.subject, "O=Org,CN=localhost")
        self.assertIsNone(loaded.subject_error)
        self.assertEqual(loaded.chain, [])
        self.assertEqual(len(loaded.ca_certificates), 1)
        self.assertEqual(loaded.cert_file, self.made.server_cert)

    def test_contextSettings(self):
        ctx = load_server_tls(x509_dir=self.dir).getContext()
        options = ctx.set_options(0)
        for flag in (SSL.OP_NO_COMPRESSION, SSL.OP_NO_RENEGOTIATION,
                     SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1, SSL.OP_NO_TICKET):
            self.assertTrue(options & flag, hex(flag))
        self.assertEqual(ctx.get_verify_mode(), SSL.VERIFY_NONE)
        # spice-gtk never resumes a session: no tickets, no cache
        self.assertEqual(ctx.get_session_cache_mode(), SSL.SESS_CACHE_OFF)

    def test_explicitFilesOverrideDir(self):
        other = write_dev_certs(self.mktemp(), subject="CN=other")
        loaded = load_server_tls(
            x509_dir=self.dir, cert_file=other.server_cert,
            key_file=other.server_key)
        self.assertEqual(loaded.subject, "CN=other")
        self.assertEqual(loaded.cacert_file, self.made.ca_cert)

    def test_withoutDirTheCAIsOptional(self):
        loaded = load_server_tls(cert_file=self.made.server_cert,
                                 key_file=self.made.server_key)
        self.assertEqual(loaded.ca_certificates, [])

    def test_chain(self):
        rootCert, rootKey = makeCA("CN=root")
        midCert, midKey = issue(name(attr(NameOID.COMMON_NAME, "mid")),
                                rootCert, rootKey, isCA=True)
        cert, key = issue(name(attr(NameOID.COMMON_NAME, "leaf")),
                          midCert, midKey)
        certFile = writeBytes(self.mktemp(), pem(cert, midCert))
        keyFile = writeBytes(self.mktemp(), keyPEM(key))
        loaded = load_server_tls(cert_file=certFile, key_file=keyFile)
        self.assertEqual(loaded.subject, "CN=leaf")
        self.assertEqual([c.subject for c in loaded.chain], [midCert.subject])

    def test_unmatchableSubjectStillLoads(self):
        subject = x509.Name([x509.RelativeDistinguishedName(
            [attr(NameOID.COMMON_NAME, "a"),
             attr(NameOID.ORGANIZATION_NAME, "b")])])
        directory = self.mktemp()
        writeDir(directory, subject)
        loaded = load_server_tls(x509_dir=directory)
        self.assertIsNone(loaded.subject)
        self.assertIn("multi-valued", loaded.subject_error)

    def test_missingDir(self):
        self.assertConfigError("nowhere", "no such directory",
                               x509_dir="nowhere")

    def test_nothingGiven(self):
        self.assertConfigError(None, "x509-dir")

    def test_missingFiles(self):
        for fileName in ("server-cert.pem", "server-key.pem", "ca-cert.pem"):
            directory = self.mktemp()
            write_dev_certs(directory)
            path = os.path.join(directory, fileName)
            os.remove(path)
            self.assertConfigError(path, "no such file", x509_dir=directory)

    def test_unreadable(self):
        if os.getuid() == 0:
            # root reads anything: a directory stands in for a bad file.
            path = self.mktemp()
            os.mkdir(path)
            self.assertConfigError(path, "directory", x509_dir=self.dir,
                                   cert_file=path)
        else:
            os.chmod(self.made.server_key, 0)
            self.assertConfigError(self.made.server_key, "cannot read",
                                   x509_dir=self.dir)

    def test_garbage(self):
        garbage = writeBytes(self.mktemp(), b"\x00garbage\n")
        self.assertConfigError(garbage, "not a PEM certificate",
                               x509_dir=self.dir, cert_file=garbage)
        self.assertConfigError(garbage, "not a PEM private key",
                               x509_dir=self.dir, key_file=garbage)
        self.assertConfigError(garbage, "not a PEM certificate",
                               x509_dir=self.dir, cacert_file=garbage)
        # The key and the certificate swapped.
        self.assertConfigError(self.made.server_key, "not a PEM certificate",
                               cert_file=self.made.server_key,
                               key_file=self.made.server_cert)

    def test_mismatchedKey(self):
        other = write_dev_certs(self.mktemp())
        message = self.assertConfigError(
            other.server_key, "does not belong", x509_dir=self.dir,
            key_file=other.server_key)
        self.assertIn(self.made.server_cert, message)

    def test_expired(self):
        later = NOW + datetime.timedelta(days=400)
        self.assertConfigError(self.made.server_cert, "expired",
                               x509_dir=self.dir, now=later)

    def test_notYetValid(self):
        earlier = NOW - datetime.timedelta(days=2)
        self.assertConfigError(self.made.server_cert, "not valid before",
                               x509_dir=self.dir, now=earlier)

    def test_encryptedKey(self):
        with open(self.made.server_key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        encrypted = writeBytes(self.mktemp(), keyPEM(key, b"secret"))
        self.assertConfigError(encrypted, "encrypted", "x509-key-password",
                               x509_dir=self.dir, key_file=encrypted)
        self.assertConfigError(encrypted, "wrong password",
                               x509_dir=self.dir, key_file=encrypted,
                               key_password="nope")
        loaded = load_server_tls(x509_dir=self.dir, key_file=encrypted,
                                 key_password="secret")
        self.assertEqual(loaded.subject, "O=Org,CN=localhost")
        # A password for a key that is not encrypted is ignored.
        load_server_tls(x509_dir=self.dir, key_password=b"unused")

    def test_ciphers(self):
        load_server_tls(x509_dir=self.dir, ciphers="HIGH:!aNULL")
        self.assertConfigError(None, "tls-ciphers", "no-such-cipher",
                               x509_dir=self.dir, ciphers="no-such-cipher")

    def test_dhFile(self):
        good = writeBytes(self.mktemp(), FFDHE2048)
        self.assertEqual(load_server_tls(x509_dir=self.dir,
                                         dh_file=good).dh_file, good)
        small = writeBytes(self.mktemp(), DH512)
        self.assertConfigError(small, "DH parameters", "2048",
                               x509_dir=self.dir, dh_file=small)
        broken = writeBytes(self.mktemp(), FFDHE2048.replace(b"MIIB", b"AAAA"))
        self.assertConfigError(broken, "DH parameters",
                               x509_dir=self.dir, dh_file=broken)
        bad = writeBytes(self.mktemp(), b"not dh\n")
        self.assertConfigError(bad, "DH parameters", x509_dir=self.dir,
                               dh_file=bad)
        self.assertConfigError("missing-dh.pem", "no such file",
                               x509_dir=self.dir, dh_file="missing-dh.pem")


# ---------------------------------------------------------------------------
# A real handshake on loopback
# ---------------------------------------------------------------------------

def pythonTLSClient(port, version, cafile=None):
    """
    Handshake with Python's ssl (the system OpenSSL) pinned to one TLS
    version, at security level 0 so that the client itself allows TLS 1.1.
    Returns ("ok", version) or ("error", reason, message).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            with context.wrap_socket(sock) as wrapped:
                return ("ok", wrapped.version())
        except ssl.SSLError as e:
            return ("error", e.reason, str(e))


def tls13Cipher(port, suites=None):
    """
    Handshake over TLS 1.3 with a pyOpenSSL client offering C{suites} (an
    OpenSSL TLS 1.3 suite string; OpenSSL's default list, AES-256-GCM
    first, if L{None}); the suite the server chose.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_verify(SSL.VERIFY_NONE)
    if suites is not None:
        context.set_tls13_ciphersuites(suites)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # pyOpenSSL wants a blocking socket; a dead server still ends the
        # wait after 10 s.
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
        connection = SSL.Connection(context, sock)
        connection.set_connect_state()
        connection.do_handshake()
        return connection.get_cipher_name()


@defer.inlineCallbacks
def listenTLS(testcase, creator):
    factory = protocol.Factory.forProtocol(protocol.Protocol)
    endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, creator,
                                            interface="127.0.0.1")
    port = yield endpoint.listen(factory)
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


@implementer(IOpenSSLServerConnectionCreator)
class LegacyServer(object):
    """A pyOpenSSL server that still accepts TLS 1.0 and 1.1 (the control)."""

    def __init__(self, certFile, keyFile):
        self.ctx = SSL.Context(SSL.TLS_METHOD)
        self.ctx.set_min_proto_version(SSL.TLS1_VERSION)
        self.ctx.use_certificate_chain_file(certFile)
        self.ctx.use_privatekey_file(keyFile)
        self.ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self.ctx, None)


class HandshakeTests(unittest.TestCase):
    def setUp(self):
        self.made = write_dev_certs(self.mktemp())
        self.creator = load_server_tls(x509_dir=self.made.directory)

    @defer.inlineCallbacks
    def test_tls12and13(self):
        port = yield listenTLS(self, self.creator)
        for version, name_ in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                               (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]:
            result = yield threads.deferToThread(
                pythonTLSClient, port, version, self.made.ca_cert)
            self.assertEqual(result, ("ok", name_))

    @defer.inlineCallbacks
    def test_tls13PrefersAES128(self):
        """
        A TLS 1.3 client offering OpenSSL's default list, AES-256-GCM first,
        gets AES-128-GCM (the server's preference); one offering a single
        other suite still gets it.  The control, a server without that
        preference, gives the client's first choice.
        """
        control = LegacyServer(self.made.server_cert, self.made.server_key)
        controlPort = yield listenTLS(self, control)
        clientFirst = yield threads.deferToThread(tls13Cipher, controlPort)
        self.assertEqual(clientFirst, "TLS_AES_256_GCM_SHA384")
        port = yield listenTLS(self, self.creator)
        chosen = yield threads.deferToThread(tls13Cipher, port)
        self.assertEqual(chosen, "TLS_AES_128_GCM_SHA256")
        for only in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
            chosen = yield threads.deferToThread(tls13Cipher, port, only.encode("ascii"))
            self.assertEqual(chosen, only)

    @defer.inlineCallbacks
    def test_tls11RefusedByTheServer(self):
        legacy = LegacyServer(self.made.server_cert, self.made.server_key)
        legacyPort = yield listenTLS(self, legacy)
        control = yield threads.deferToThread(
            pythonTLSClient, legacyPort, ssl.TLSVersion.TLSv1_1)
        if control != ("ok", "TLSv1.1"):
            raise unittest.SkipTest("this OpenSSL cannot speak TLS 1.1 any "
                                    "more: %r" % (control,))
        port = yield listenTLS(self, self.creator)
        result = yield threads.deferToThread(
            pythonTLSClient, port, ssl.TLSVersion.TLSv1_1)
        # The client offered TLS 1.1 and the *server* answered with a
        # protocol_version alert.
        self.assertEqual(result[:2], ("error", "TLSV1_ALERT_PROTOCOL_VERSION"))

    @defer.inlineCallbacks
    def test_chainIsSent(self):
        rootCert, rootKey = makeCA("CN=root")
        midCert, midKey = issue(name(attr(NameOID.COMMON_NAME, "mid")),
                                rootCert, rootKey, isCA=True)
        cert, key = issue(name(attr(NameOID.COMMON_NAME, "localhost")),
                          midCert, midKey, sans=["IP:127.0.0.1"])
        certFile = writeBytes(self.mktemp(), pem(cert, midCert))
        keyFile = writeBytes(self.mktemp(), keyPEM(key))
        rootFile = writeBytes(self.mktemp(), pem(rootCert))
        creator = load_server_tls(cert_file=certFile, key_file=keyFile)
        port = yield listenTLS(self, creator)
        # The client knows only the root: the intermediate must come from
        # the server.
        result = yield threads.deferToThread(
            pythonTLSClient, port, ssl.TLSVersion.TLSv1_3, rootFile)
        self.assertEqual(result, ("ok", "TLSv1.3"))
        ok, reason = yield check_target_identity(
            reactor, "127.0.0.1", port, rootFile, cert_subject="CN=localhost")
        self.assertTrue(ok, reason)


# ---------------------------------------------------------------------------
# check_target_identity
# ---------------------------------------------------------------------------

def closedPort():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class CheckTargetIdentityTests(unittest.TestCase):
    def setUp(self):
        self.made = write_dev_certs(self.mktemp(),
                                    subject="C=XX,O=Org,CN=a")
        self.where = None

    @defer.inlineCallbacks
    def serve(self, directory=None):
        creator = load_server_tls(x509_dir=directory or
                                  self.made.directory)
        port = yield listenTLS(self, creator)
        self.where = "127.0.0.1:%d" % (port,)
        return port

    def check(self, port, caFile=None, **kwargs):
        return check_target_identity(
            reactor, "127.0.0.1", port, caFile or self.made.ca_cert, **kwargs)

    @defer.inlineCallbacks
    def test_rightSubject(self):
        port = yield self.serve()
        ok, reason = yield self.check(port, cert_subject="C=XX,O=Org,CN=a")
        self.assertTrue(ok, reason)
        self.assertIn("C=XX,O=Org,CN=a", reason)

    @defer.inlineCallbacks
    def test_wrongSubject(self):
        port = yield self.serve()
        ok, reason = yield self.check(port, cert_subject="C=XX,O=Org,CN=b")
        self.assertFalse(ok)
        self.assertEqual(reason, "the certificate of %s has subject "
                         "C=XX,O=Org,CN=a, not the expected C=XX,O=Org,CN=b"
                         % (self.where,))

    @defer.inlineCallbacks
    def test_unusableSubject(self):
        port = yield self.serve()
        ok, reason = yield self.check(port, cert_subject="C=XX,CN")
        self.assertFalse(ok)
        self.assertIn("expected subject", reason)

    @defer.inlineCallbacks
    def test_untrustedCA(self):
        port = yield self.serve()
        other = write_dev_certs(self.mktemp())
        ok, reason = yield self.check(port, caFile=other.ca_cert,
                                      cert_subject="C=XX,O=Org,CN=a")
        self.assertFalse(ok)
        self.assertIn("the certificate of %s is not signed by the CA in "
                      "ca-cert.pem" % (self.where,), reason)
        self.assertIn("self-signed", reason)

    @defer.inlineCallbacks
    def test_hostname(self):
        port = yield self.serve()
        ok, reason = yield self.check(port)         # 127.0.0.1, an IP SAN
        self.assertTrue(ok, reason)
        ok, reason = yield self.check(port, hostname="localhost")
        self.assertTrue(ok, reason)
        ok, reason = yield self.check(port, hostname="example.com")
        self.assertFalse(ok)
        self.assertEqual(reason, "the certificate of %s is for "
                         "DNS:localhost, IP:127.0.0.1, not for example.com"
                         % (self.where,))

    @defer.inlineCallbacks
    def test_laxWildcardsAsTheClient(self):
        directory = self.mktemp()
        writeDir(directory, name(attr(NameOID.COMMON_NAME, "x")),
                 sans=["DNS:h*.example.com"])
        port = yield self.serve(directory)
        ca = os.path.join(directory, "ca-cert.pem")
        ok, reason = yield self.check(port, caFile=ca,
                                      hostname="host.example.com")
        self.assertTrue(ok, reason)
        self.assertIn("SPICE clients", reason)
        ok, reason = yield self.check(port, caFile=ca,
                                      hostname="a.host.example.com")
        self.assertFalse(ok, reason)

    @defer.inlineCallbacks
    def test_commonNameOnlyWithoutSAN(self):
        directory = self.mktemp()
        writeDir(directory, name(attr(NameOID.COMMON_NAME, "*.example.com")),
                 sans=())
        port = yield self.serve(directory)
        ca = os.path.join(directory, "ca-cert.pem")
        ok, reason = yield self.check(port, caFile=ca,
                                      hostname="host.example.com")
        self.assertTrue(ok, reason)
        ok, reason = yield self.check(port, caFile=ca)
        self.assertFalse(ok)
        self.assertIn("no DNS or IP subjectAltName", reason)

    @defer.inlineCallbacks
    def test_expired(self):
        caCert, caKey = makeCA()
        cert, key = issue(name(attr(NameOID.COMMON_NAME, "old")), caCert,
                          caKey, notBefore=NOW - datetime.timedelta(days=10),
                          notAfter=NOW - datetime.timedelta(days=1))
        ca = writeBytes(self.mktemp(), pem(caCert))
        creator = ServerTLS(cert, [], key)     # load_server_tls refuses
        port = yield listenTLS(self, creator)
        ok, reason = yield self.check(port, caFile=ca, cert_subject="CN=old")
        self.assertFalse(ok)
        self.assertIn("expired", reason)

    @defer.inlineCallbacks
    def test_nothingListens(self):
        port = closedPort()
        ok, reason = yield self.check(port, cert_subject="CN=a")
        self.assertFalse(ok)
        self.assertEqual(reason, "nothing listens on 127.0.0.1:%d "
                         "(connection refused)" % (port,))

    @defer.inlineCallbacks
    def test_noTLSAnswer(self):
        factory = protocol.Factory.forProtocol(protocol.Protocol)
        listening = yield endpoints.TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        ok, reason = yield self.check(port, timeout=0.5)
        self.assertFalse(ok)
        self.assertIn("no TLS answer from 127.0.0.1:%d" % (port,), reason)

    @defer.inlineCallbacks
    def test_plainPortClosesTheConnection(self):
        class Closer(protocol.Protocol):
            def dataReceived(self, data):
                self.transport.loseConnection()
        listening = yield endpoints.TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1").listen(
                protocol.Factory.forProtocol(Closer))
        self.addCleanup(listening.stopListening)
        ok, reason = yield self.check(listening.getHost().port)
        self.assertFalse(ok)
        self.assertIn("TLS handshake", reason)
        self.assertIn("TLS port", reason)

    @defer.inlineCallbacks
    def test_missingCAFile(self):
        ok, reason = yield self.check(closedPort(), caFile="missing.pem")
        self.assertFalse(ok)
        self.assertIn("cannot read the CA file missing.pem", reason)


# ---------------------------------------------------------------------------
# write_dev_certs
# ---------------------------------------------------------------------------

class WriteDevCertsTests(unittest.TestCase):
    def test_layoutAndModes(self):
        made = write_dev_certs(self.mktemp(), subject="C=XX,O=Org,CN=srv",
                               sans=["DNS:srv", "IP:::1"], days=7)
        self.assertEqual(sorted(os.listdir(made.directory)),
                         ["ca-cert.pem", "ca-key.pem", "server-cert.pem",
                          "server-key.pem"])
        for path in (made.ca_key, made.server_key):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(made.ca_cert, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        with open(made.server_cert, "rb") as f:
            server = x509.load_pem_x509_certificate(f.read())
        self.assertTrue(ca.extensions.get_extension_for_class(
            x509.BasicConstraints).value.ca)
        self.assertTrue(ca.extensions.get_extension_for_class(
            x509.KeyUsage).value.key_cert_sign)
        self.assertFalse(server.extensions.get_extension_for_class(
            x509.BasicConstraints).value.ca)
        self.assertEqual(list(server.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        san = server.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["srv"])
        self.assertEqual([str(a) for a in
                          san.get_values_for_type(x509.IPAddress)], ["::1"])
        self.assertEqual(server.issuer, ca.subject)
        self.assertEqual(made.subject, "C=XX,O=Org,CN=srv")
        self.assertEqual([a.oid for a in server.subject],
                         [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME,
                          NameOID.COMMON_NAME])
        self.assertLess(server.not_valid_after_utc - NOW,
                        datetime.timedelta(days=8))
        ca.public_key().verify(server.signature,
                               server.tbs_certificate_bytes,
                               ec.ECDSA(server.signature_hash_algorithm))

    def test_refusesToOverwrite(self):
        made = write_dev_certs(self.mktemp())
        self.assertRaises(FileExistsError, write_dev_certs,
                          made.directory)
        again = write_dev_certs(made.directory, subject="CN=new",
                                overwrite=True)
        self.assertEqual(again.subject, "CN=new")

    def test_badArguments(self):
        directory = self.mktemp()
        for kwargs in [dict(subject="CN"), dict(subject="cn=x"),
                       dict(subject=""), dict(sans=["URI:x"]),
                       dict(sans=["IP:not-an-ip"]), dict(days=0)]:
            self.assertRaises(ValueError, write_dev_certs, directory,
                              **kwargs)
        self.assertFalse(os.path.exists(directory))


# ---------------------------------------------------------------------------
# python -m spicesrv.scripts.certs
# ---------------------------------------------------------------------------

class CertsScriptTests(unittest.TestCase):
    def runCommand(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = certs.main(list(argv), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    def test_subject(self):
        directory = self.mktemp()
        writeDir(directory, AWKWARD["comma"])
        code, out, err = self.runCommand(
            "subject", os.path.join(directory, "server-cert.pem"))
        self.assertEqual((code, out, err), (0, EXPECTED["comma"] + "\n", ""))

    def test_subjectErrors(self):
        garbage = writeBytes(self.mktemp(), b"garbage")
        directory = self.mktemp()
        writeDir(directory, x509.Name([x509.RelativeDistinguishedName(
            [attr(NameOID.COMMON_NAME, "a"),
             attr(NameOID.ORGANIZATION_NAME, "b")])]))
        for path, word in [(garbage, "not a PEM or DER certificate"),
                           ("missing.pem", "No such file"),
                           (os.path.join(directory, "server-cert.pem"),
                            "multi-valued")]:
            code, out, err = self.runCommand("subject", path)
            self.assertEqual((code, out), (1, ""))
            self.assertEqual(err.count("\n"), 1, err)
            self.assertIn(path, err)
            self.assertIn(word, err)

    def test_dev(self):
        directory = self.mktemp()
        code, out, err = self.runCommand("dev", directory, "--subject",
                                  "O=Org,CN=host", "--san", "DNS:host",
                                  "--days", "3")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("subject: O=Org,CN=host\n", out)
        self.assertIn("--tls-port 5901 --x509-dir %s" % (directory,), out)
        self.assertIn("remote-viewer --spice-ca-file=%s "
                      "'spice://127.0.0.1?tls-port=5901'"
                      % (os.path.join(directory, "ca-cert.pem"),), out)
        loaded = load_server_tls(x509_dir=directory)
        self.assertEqual(loaded.subject, "O=Org,CN=host")
        code, out, err = self.runCommand("dev", directory)
        self.assertEqual(code, 1)
        self.assertIn("--force", err)
        self.assertEqual(self.runCommand("dev", directory, "--force")[0], 0)

    def test_usage(self):
        code, out, err = self.runCommand()
        self.assertEqual(code, 2)
        code, out, err = self.runCommand("check", "h", "1")
        self.assertEqual(code, 2)
        self.assertIn("--ca-file", err)

    @defer.inlineCallbacks
    def test_check(self):
        made = write_dev_certs(self.mktemp(), subject="CN=a")
        port = yield listenTLS(self, load_server_tls(
            x509_dir=made.directory))
        parser = certs._parser()
        out = io.StringIO()
        code = yield certs.check(reactor, parser.parse_args(
            ["check", "127.0.0.1", str(port), "--ca-file", made.ca_cert,
             "--cert-subject", "CN=a"]), out)
        self.assertEqual(code, 0)
        self.assertTrue(out.getvalue().startswith("ok: "))
        out = io.StringIO()
        code = yield certs.check(reactor, parser.parse_args(
            ["check", "127.0.0.1", str(port), "--ca-file", made.ca_cert,
             "--cert-subject", "CN=b"]), out)
        self.assertEqual(code, 1)
        self.assertIn("not the expected CN=b", out.getvalue())

    @defer.inlineCallbacks
    def test_checkAsAProcess(self):
        made = write_dev_certs(os.path.abspath(self.mktemp()))
        port = closedPort()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                      if p])
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "spicesrv.scripts.certs", "check",
                             "127.0.0.1", str(port), "--ca-file",
                             made.ca_cert], env=env, path=ROOT)
        self.assertEqual(code, 1, err)
        self.assertEqual(out.decode(), "not ok: nothing listens on "
                         "127.0.0.1:%d (connection refused)\n" % (port,))
