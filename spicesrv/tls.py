"""
TLS configuration and certificate identity.

Three jobs, one theme (what a SPICE client will accept from our TLS port):

- L{load_server_tls} reads a server certificate, its key and the CA the way
  QEMU's C{-spice tls-port=...,x509-dir=...} does, checks them at load time
  (each problem is one L{TLSConfigError} line naming the file), and returns a
  Twisted connection creator for L{spicesrv.tlsport.TLSServerEndpoint}.
- L{format_subject}, L{parse_subject}, L{validate_subject} and
  L{subject_matches} speak the C{cert-subject} strings of
  C{client_migrate_info} and spice-gtk's C{cert-subject} property, exactly as
  the client (spice-common C{ssl_verify.c}) parses and compares them.
- L{check_target_identity} connects to a TLS port and says whether a client
  holding a given CA file and subject (or host name) would accept it;
  L{write_dev_certs} makes a development CA and server certificate.

How the client matches a subject (spice-common C{subject_to_x509_name} and
C{verify_subject}, OpenSSL 3.0 C{x_name.c}, C{a_strnid.c}, C{a_mbstr.c}):

1. The string is split into C{key=value} entries at unescaped commas.
   Spaces before a key are skipped; everything else is kept (a value may
   start or end with spaces, and may contain C{=}).  C{\\,} and C{\\\\} are the
   only escapes (any other character after a backslash makes the subject
   invalid); an entry without C{=} or with an empty value makes it invalid;
   a trailing comma is accepted.  The client reads the subject as a C
   string, so nothing after a NUL exists.
2. Each key is turned into an object with C{OBJ_txt2obj}: an OpenSSL short
   or long name (case-sensitive: C{CN} or C{commonName}, not C{cn}) or a
   dotted OID.  No name starts with a space, so skipping spaces before keys
   loses nothing; a space after a name is part of the key (C{CN =x} fails,
   although OpenSSL reads C{2.5.4.3 } as C{2.5.4.3}).  Each entry becomes its
   own single-valued RDN, in string order.
   The value goes through C{ASN1_STRING_set_by_NID} (UTF-8 input): C{C} must
   be 2 PrintableString characters, C{CN} and C{O}/C{OU} 1..64 characters,
   C{L}/C{ST} 1..128, C{emailAddress} and C{DC} ASCII only, C{serialNumber}
   PrintableString (letters, digits, space and C{'()+,-./:=?}) of at most 64
   characters, and so on (L{_STRING_RULES}).  One entry that cannot be built
   fails the whole subject.
3. The certificate's subject must have as many entries and compare equal
   with C{X509_NAME_cmp}, which compares canonical encodings: every RDN, in
   order, as a DER SET; string values of the types UTF8String,
   PrintableString, T61String (read as Latin-1), IA5String, UniversalString
   and BMPString are converted to UTF-8, stripped of leading
   and trailing ASCII whitespace, runs of inner ASCII whitespace become one
   space, and ASCII letters are lowercased (non-ASCII characters are kept
   as they are: C{É} and C{é} differ).  Values of other types (NumericString
   for instance) are compared byte for byte with their tag.

What this means for a certificate's subject (L{format_subject} refuses, with
a C{ValueError} saying why, every subject the client could never match):

- a multi-valued RDN (C{CN=a+O=b}) never matches: the client puts each entry
  in its own RDN;
- an empty subject cannot be expressed: spice-gtk falls back to checking the
  host name when the migration subject is empty;
- a value with a NUL, or one the client's OpenSSL refuses to build (too long,
  characters outside the attribute's string type), never matches;
- a value whose type is not canonicalised matches only if the client would
  build the same type and bytes (NumericString for INN, OGRN, SNILS, n3);
  a VisibleString, GeneralString or GraphicString value makes OpenSSL 3.0
  refuse the certificate altogether;
- a T61String is read as Latin-1, so UTF-8 bytes stored in one must be
  written as their Latin-1 reading (C{Ã©} for the bytes of C{é});
- an empty value is written as spaces, which canonicalise to the same empty
  string (the parser forbids empty values);
- case and inner whitespace in values do not matter to the client, so
  L{subject_matches} ignores them as well.

All of this was checked against spice-gtk 0.42 (OpenSSL 3.0) connecting to
QEMU's reference server, and L{subject_matches} is tested against the
system libcrypto's own X509_NAME_cmp.
"""

import datetime
import ipaddress
import os
import re
from collections import namedtuple

from zope.interface import implementer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname, verify_certificate_ip_address)

from twisted.internet import defer, endpoints, error, protocol
from twisted.internet.interfaces import (
    IHandshakeListener, IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator)
from twisted.logger import Logger

__all__ = [
    "TLSConfigError", "ServerTLS", "load_server_tls",
    "format_subject", "parse_subject", "validate_subject", "subject_matches",
    "check_target_identity", "write_dev_certs", "DevCertificates",
    "CA_CERT_FILE", "SERVER_CERT_FILE", "SERVER_KEY_FILE", "CA_KEY_FILE",
]

log = Logger()

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


# ---------------------------------------------------------------------------
# Attribute names as OpenSSL knows them
# ---------------------------------------------------------------------------

# OID, OpenSSL short name, OpenSSL long name, read from OpenSSL 3.0's object
# table (OBJ_nid2sn / OBJ_nid2ln) for the attribute types a distinguished
# name can hold.  OBJ_txt2obj matches either name, case-sensitively; any
# other OID can still be written in dotted form.
_NAME_TABLE = """
0.9.2342.19200300.100.1.1 UID userId
0.9.2342.19200300.100.1.2 textEncodedORAddress textEncodedORAddress
0.9.2342.19200300.100.1.3 mail rfc822Mailbox
0.9.2342.19200300.100.1.4 info info
0.9.2342.19200300.100.1.5 favouriteDrink favouriteDrink
0.9.2342.19200300.100.1.6 roomNumber roomNumber
0.9.2342.19200300.100.1.7 photo photo
0.9.2342.19200300.100.1.8 userClass userClass
0.9.2342.19200300.100.1.9 host host
0.9.2342.19200300.100.1.10 manager manager
0.9.2342.19200300.100.1.11 documentIdentifier documentIdentifier
0.9.2342.19200300.100.1.12 documentTitle documentTitle
0.9.2342.19200300.100.1.13 documentVersion documentVersion
0.9.2342.19200300.100.1.14 documentAuthor documentAuthor
0.9.2342.19200300.100.1.15 documentLocation documentLocation
0.9.2342.19200300.100.1.20 homeTelephoneNumber homeTelephoneNumber
0.9.2342.19200300.100.1.21 secretary secretary
0.9.2342.19200300.100.1.22 otherMailbox otherMailbox
0.9.2342.19200300.100.1.23 lastModifiedTime lastModifiedTime
0.9.2342.19200300.100.1.24 lastModifiedBy lastModifiedBy
0.9.2342.19200300.100.1.25 DC domainComponent
0.9.2342.19200300.100.1.26 aRecord aRecord
0.9.2342.19200300.100.1.27 pilotAttributeType27 pilotAttributeType27
0.9.2342.19200300.100.1.28 mXRecord mXRecord
0.9.2342.19200300.100.1.29 nSRecord nSRecord
0.9.2342.19200300.100.1.30 sOARecord sOARecord
0.9.2342.19200300.100.1.31 cNAMERecord cNAMERecord
0.9.2342.19200300.100.1.37 associatedDomain associatedDomain
0.9.2342.19200300.100.1.38 associatedName associatedName
0.9.2342.19200300.100.1.39 homePostalAddress homePostalAddress
0.9.2342.19200300.100.1.40 personalTitle personalTitle
0.9.2342.19200300.100.1.41 mobileTelephoneNumber mobileTelephoneNumber
0.9.2342.19200300.100.1.42 pagerTelephoneNumber pagerTelephoneNumber
0.9.2342.19200300.100.1.43 friendlyCountryName friendlyCountryName
0.9.2342.19200300.100.1.44 uid uniqueIdentifier
0.9.2342.19200300.100.1.45 organizationalStatus organizationalStatus
0.9.2342.19200300.100.1.46 janetMailbox janetMailbox
0.9.2342.19200300.100.1.47 mailPreferenceOption mailPreferenceOption
0.9.2342.19200300.100.1.48 buildingName buildingName
0.9.2342.19200300.100.1.49 dSAQuality dSAQuality
0.9.2342.19200300.100.1.50 singleLevelQuality singleLevelQuality
0.9.2342.19200300.100.1.51 subtreeMinimumQuality subtreeMinimumQuality
0.9.2342.19200300.100.1.52 subtreeMaximumQuality subtreeMaximumQuality
0.9.2342.19200300.100.1.53 personalSignature personalSignature
0.9.2342.19200300.100.1.54 dITRedirect dITRedirect
0.9.2342.19200300.100.1.55 audio audio
0.9.2342.19200300.100.1.56 documentPublisher documentPublisher
1.2.643.3.131.1.1 INN INN
1.2.643.100.1 OGRN OGRN
1.2.643.100.3 SNILS SNILS
1.2.840.113549.1.9.1 emailAddress emailAddress
1.2.840.113549.1.9.2 unstructuredName unstructuredName
1.2.840.113549.1.9.8 unstructuredAddress unstructuredAddress
1.2.840.113549.1.9.20 friendlyName friendlyName
1.3.6.1.4.1.311.17.1 CSPName Microsoft CSP Name
1.3.6.1.4.1.311.60.2.1.1 jurisdictionL jurisdictionLocalityName
1.3.6.1.4.1.311.60.2.1.2 jurisdictionST jurisdictionStateOrProvinceName
1.3.6.1.4.1.311.60.2.1.3 jurisdictionC jurisdictionCountryName
2.5.4.0 objectClass objectClass
2.5.4.1 aliasedEntryName aliasedEntryName
2.5.4.2 knowledgeInformation knowledgeInformation
2.5.4.3 CN commonName
2.5.4.4 SN surname
2.5.4.5 serialNumber serialNumber
2.5.4.6 C countryName
2.5.4.7 L localityName
2.5.4.8 ST stateOrProvinceName
2.5.4.9 street streetAddress
2.5.4.10 O organizationName
2.5.4.11 OU organizationalUnitName
2.5.4.12 title title
2.5.4.13 description description
2.5.4.14 searchGuide searchGuide
2.5.4.15 businessCategory businessCategory
2.5.4.16 postalAddress postalAddress
2.5.4.17 postalCode postalCode
2.5.4.18 postOfficeBox postOfficeBox
2.5.4.19 physicalDeliveryOfficeName physicalDeliveryOfficeName
2.5.4.20 telephoneNumber telephoneNumber
2.5.4.21 telexNumber telexNumber
2.5.4.22 teletexTerminalIdentifier teletexTerminalIdentifier
2.5.4.23 facsimileTelephoneNumber facsimileTelephoneNumber
2.5.4.24 x121Address x121Address
2.5.4.25 internationaliSDNNumber internationaliSDNNumber
2.5.4.26 registeredAddress registeredAddress
2.5.4.27 destinationIndicator destinationIndicator
2.5.4.28 preferredDeliveryMethod preferredDeliveryMethod
2.5.4.29 presentationAddress presentationAddress
2.5.4.30 supportedApplicationContext supportedApplicationContext
2.5.4.31 member member
2.5.4.32 owner owner
2.5.4.33 roleOccupant roleOccupant
2.5.4.34 seeAlso seeAlso
2.5.4.35 userPassword userPassword
2.5.4.36 userCertificate userCertificate
2.5.4.37 cACertificate cACertificate
2.5.4.38 authorityRevocationList authorityRevocationList
2.5.4.39 certificateRevocationList certificateRevocationList
2.5.4.40 crossCertificatePair crossCertificatePair
2.5.4.41 name name
2.5.4.42 GN givenName
2.5.4.43 initials initials
2.5.4.44 generationQualifier generationQualifier
2.5.4.45 x500UniqueIdentifier x500UniqueIdentifier
2.5.4.46 dnQualifier dnQualifier
2.5.4.47 enhancedSearchGuide enhancedSearchGuide
2.5.4.48 protocolInformation protocolInformation
2.5.4.49 distinguishedName distinguishedName
2.5.4.50 uniqueMember uniqueMember
2.5.4.51 houseIdentifier houseIdentifier
2.5.4.52 supportedAlgorithms supportedAlgorithms
2.5.4.53 deltaRevocationList deltaRevocationList
2.5.4.54 dmdName dmdName
2.5.4.65 pseudonym pseudonym
2.5.4.72 role role
2.5.4.97 organizationIdentifier organizationIdentifier
2.5.4.98 c3 countryCode3c
2.5.4.99 n3 countryCode3n
2.5.4.100 dnsName dnsName
"""


def _loadNames(table):
    shortNames, byName = {}, {}
    for line in table.strip().splitlines():
        oid, short, long_ = line.split(" ", 2)
        shortNames[oid] = short
        # OBJ_txt2obj tries the short names first, then the long names.
        byName.setdefault(long_, oid)
    for oid, short in shortNames.items():
        byName[short] = oid
    return shortNames, byName


_SHORT_NAMES, _OID_BY_NAME = _loadNames(_NAME_TABLE)

# ASN.1 universal tags of the string types.
_UTF8, _NUMERIC, _PRINTABLE, _T61, _IA5, _VISIBLE, _UNIVERSAL, _BMP = (
    12, 18, 19, 20, 22, 26, 28, 30)
_TAG_NAMES = {
    _UTF8: "UTF8String", _NUMERIC: "NumericString",
    _PRINTABLE: "PrintableString", _T61: "T61String", _IA5: "IA5String",
    _VISIBLE: "VisibleString", _UNIVERSAL: "UniversalString",
    _BMP: "BMPString", 3: "BIT STRING", 4: "OCTET STRING",
    21: "VideotexString", 25: "GraphicString", 27: "GeneralString"}
#: The types X509_NAME_cmp canonicalises (ASN1_MASK_CANON in x_name.c).
_CANON_TAGS = frozenset(
    [_UTF8, _BMP, _UNIVERSAL, _PRINTABLE, _T61, _IA5, _VISIBLE])
#: The value tags OpenSSL 3.0 reads in a Name (ASN1_PRINTABLE; found by
#: decoding every tag): VisibleString, GraphicString, GeneralString,
#: VideotexString, OCTET STRING and the time types make it refuse the
#: whole certificate.
_LOADABLE_TAGS = frozenset(
    [7, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20, 22, 28, 29, 30, 0x30])

# B_ASN1_* mask bits (asn1.h).
_M_NUMERIC, _M_PRINTABLE, _M_T61, _M_IA5, _M_BMP, _M_UNIVERSAL, _M_UTF8 = (
    0x1, 0x2, 0x4, 0x10, 0x800, 0x100, 0x2000)
#: The default global string mask ("utf8only").
_GLOBAL_MASK = _M_UTF8
_DIRSTRING = _M_PRINTABLE | _M_T61 | _M_BMP | _M_UTF8
_PKCS9STRING = _DIRSTRING | _M_IA5

_Rule = namedtuple("_Rule", "minsize maxsize mask nomask")

#: OpenSSL 3.0's ASN1_STRING_TABLE (a_strnid.c), read with
#: ASN1_STRING_TABLE_get: what ASN1_STRING_set_by_NID accepts per attribute.
_STRING_RULES = {
    "2.5.4.3": _Rule(1, 64, _DIRSTRING, False),           # CN
    "2.5.4.6": _Rule(2, 2, _M_PRINTABLE, True),           # C
    "2.5.4.7": _Rule(1, 128, _DIRSTRING, False),          # L
    "2.5.4.8": _Rule(1, 128, _DIRSTRING, False),          # ST
    "2.5.4.10": _Rule(1, 64, _DIRSTRING, False),          # O
    "2.5.4.11": _Rule(1, 64, _DIRSTRING, False),          # OU
    "1.2.840.113549.1.9.1": _Rule(1, 128, _M_IA5, True),  # emailAddress
    "1.2.840.113549.1.9.2": _Rule(1, -1, _PKCS9STRING, False),
    "1.2.840.113549.1.9.7": _Rule(1, -1, _PKCS9STRING, False),
    "1.2.840.113549.1.9.8": _Rule(1, -1, _DIRSTRING, False),
    "2.5.4.42": _Rule(1, 32768, _DIRSTRING, False),       # GN
    "2.5.4.4": _Rule(1, 32768, _DIRSTRING, False),        # SN
    "2.5.4.43": _Rule(1, 32768, _DIRSTRING, False),       # initials
    "2.5.4.5": _Rule(1, 64, _M_PRINTABLE, True),          # serialNumber
    "1.2.840.113549.1.9.20": _Rule(-1, -1, _M_BMP, True),  # friendlyName
    "2.5.4.41": _Rule(1, 32768, _DIRSTRING, False),       # name
    "2.5.4.46": _Rule(-1, -1, _M_PRINTABLE, True),        # dnQualifier
    "0.9.2342.19200300.100.1.25": _Rule(1, -1, _M_IA5, True),   # DC
    "1.3.6.1.4.1.311.17.1": _Rule(-1, -1, _M_BMP, True),  # CSPName
    "0.9.2342.19200300.100.1.3": _Rule(1, 256, _M_IA5, True),   # mail
    "1.3.6.1.4.1.311.60.2.1.3": _Rule(2, 2, _M_PRINTABLE, True),
    "1.2.643.3.131.1.1": _Rule(1, 12, _M_NUMERIC, True),  # INN
    "1.2.643.100.1": _Rule(1, 13, _M_NUMERIC, True),      # OGRN
    "1.2.643.100.3": _Rule(1, 11, _M_NUMERIC, True),      # SNILS
    "2.5.4.98": _Rule(3, 3, _M_PRINTABLE, True),          # c3
    "2.5.4.99": _Rule(3, 3, _M_NUMERIC, True),            # n3
    "2.5.4.100": _Rule(0, -1, _M_UTF8, True),             # dnsName
    "1.3.6.1.5.5.7.8.9": _Rule(1, 128, _M_UTF8, True),    # SmtpUTF8Mailbox
}
#: Attributes without an entry: DIRSTRING_TYPE & global mask, no size limit.
_DEFAULT_RULE = _Rule(-1, -1, _DIRSTRING, False)

#: ossl_isasn1print: the PrintableString alphabet.
_ASN1_PRINTABLE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    " '()+,-./:=?")
#: ossl_isspace: the ASCII whitespace X509_NAME_cmp folds.
_ASCII_SPACE = b" \t\n\x0b\x0c\r"
_SPACE_RUN = re.compile(b"[ \t\n\x0b\x0c\r]+")


def _keyName(oid):
    """The key the client understands for C{oid} (short name or dotted)."""
    return _SHORT_NAMES.get(oid, oid)


def _oidForKey(key):
    """OBJ_txt2obj(key, 0) as a dotted OID string, or C{None}."""
    oid = _OID_BY_NAME.get(key)
    if oid is not None:
        return oid
    if not key[:1].isdigit():
        return None
    return _a2dObject(key)


def _a2dObject(text):
    """
    OpenSSL's a2d_ASN1_OBJECT reading of a numeric OID, quirks included (a
    space separates arcs like a dot, an empty arc is 0, the separator that
    ends the string is ignored), as a dotted string; C{None} where it fails.
    """
    if len(text) < 2 or text[0] not in "012":
        return None
    first, arcs = int(text[0]), []
    char, pos = text[1], 2
    while pos < len(text):
        if char not in ". ":
            return None
        value = 0
        while pos < len(text):
            char = text[pos]
            pos += 1
            if char in ". ":
                break
            if not "0" <= char <= "9":
                return None
            value = value * 10 + int(char)
        if not arcs and first < 2 and value >= 40:
            return None
        arcs.append(value)
    if not arcs:
        return None
    return ".".join(str(a) for a in [first] + arcs)


# ---------------------------------------------------------------------------
# Reading a subject from DER (exact tags and bytes, as OpenSSL sees them)
# ---------------------------------------------------------------------------

def _tlv(data, pos):
    """Read one DER element: (tag, start of content, end of content)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("unsupported DER tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data, start, end):
    pos = start
    while pos < end:
        tag, cstart, cend = _tlv(data, pos)
        yield tag, cstart, cend, pos
        pos = cend


def _decodeOID(raw):
    arcs, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def _subjectDER(subject):
    """The DER of a Name, from a certificate, a Name or DER bytes."""
    if isinstance(subject, x509.Certificate):
        tbs = subject.tbs_certificate_bytes
        _, start, end = _tlv(tbs, 0)
        fields = [(tag, pos, cend) for tag, _, cend, pos
                  in _children(tbs, start, end)]
        if fields and fields[0][0] == 0xA0:       # [0] version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject
        _, pos, cend = fields[4]
        return tbs[pos:cend]
    if isinstance(subject, x509.Name):
        return subject.public_bytes()
    if isinstance(subject, (bytes, bytearray)):
        return bytes(subject)
    raise TypeError("expected a certificate, a Name or DER bytes, not %r"
                    % (type(subject).__name__,))


def _rdns(subject):
    """
    The subject as a list of RDNs, each a list of (oid, tag, raw value
    bytes), in certificate (DER) order.
    """
    der = _subjectDER(subject)
    tag, start, end = _tlv(der, 0)
    if tag != 0x30:
        raise ValueError("a Name is not a SEQUENCE")
    rdns = []
    for settag, sstart, send, _ in _children(der, start, end):
        if settag != 0x31:
            raise ValueError("an RDN is not a SET")
        rdn = []
        for atag, astart, aend, _ in _children(der, sstart, send):
            parts = list(_children(der, astart, aend))
            if atag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("bad AttributeTypeAndValue")
            oid = _decodeOID(der[parts[0][1]:parts[0][2]])
            vtag, vstart, vend, _ = parts[1]
            rdn.append((oid, vtag, der[vstart:vend]))
        rdns.append(rdn)
    return rdns


# ---------------------------------------------------------------------------
# X509_NAME_cmp's canonical form
# ---------------------------------------------------------------------------

def _text(tag, raw):
    """
    ASN1_STRING_to_UTF8 as a Python string, or C{None} where OpenSSL fails
    (the certificate would not even load in the client).
    """
    if tag == _UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if tag in (_BMP, _UNIVERSAL):
        width = 2 if tag == _BMP else 4
        if len(raw) % width:
            return None
        chars = [int.from_bytes(raw[i:i + width], "big")
                 for i in range(0, len(raw), width)]
        if any(c > 0x10FFFF or 0xD800 <= c <= 0xDFFF for c in chars):
            return None
        return "".join(map(chr, chars))
    # PrintableString, T61String, IA5String, VisibleString, NumericString and
    # the rest: one byte per character.
    return raw.decode("latin-1")


def _canonUTF8(data):
    """asn1_string_canon on UTF-8 bytes."""
    data = data.strip(_ASCII_SPACE)
    return _SPACE_RUN.sub(b" ", data).lower()


def _canonical(tag, raw):
    """
    One entry value in X509_NAME_cmp's canonical form, or C{None} when
    OpenSSL cannot read it.
    """
    if tag not in _LOADABLE_TAGS:
        return None
    if tag not in _CANON_TAGS:
        return (tag, bytes(raw))
    text = _text(tag, raw)
    if text is None:
        return None
    return (_UTF8, _canonUTF8(text.encode("utf-8")))


def _certCanonical(rdns):
    """The canonical form of a certificate subject (list of sorted RDNs)."""
    result = []
    for rdn in rdns:
        entries = []
        for oid, tag, raw in rdn:
            canon = _canonical(tag, raw)
            if canon is None:
                return None
            entries.append((oid,) + canon)
        result.append(sorted(entries))
    return result


def _clientEntry(key, value):
    """
    What X509_NAME_add_entry_by_txt(name, key, MBSTRING_UTF8, value, -1, -1,
    0) builds, as (oid, tag, value bytes).  Raise C{ValueError} saying why
    the client's OpenSSL would refuse the entry.
    """
    oid = _oidForKey(key)
    if oid is None:
        raise ValueError(
            "%r is not an attribute name OpenSSL knows (names are "
            "case-sensitive: CN, O, OU, C, ST, L, emailAddress, ...)" % (key,))
    if "\0" in value:
        raise ValueError("the %s value contains a NUL character" % (key,))
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("the %s value is not valid Unicode" % (key,))
    rule = _STRING_RULES.get(oid, _DEFAULT_RULE)
    mask = rule.mask if rule.nomask else rule.mask & _GLOBAL_MASK
    if rule.minsize > 0 and len(value) < rule.minsize:
        raise ValueError("the %s value %r is shorter than the %d characters "
                         "OpenSSL requires" % (key, value, rule.minsize))
    if rule.maxsize > 0 and len(value) > rule.maxsize:
        raise ValueError("the %s value is %d characters long; OpenSSL allows "
                         "at most %d" % (key, len(value), rule.maxsize))
    for char in value:
        code = ord(char)
        if mask & _M_NUMERIC and not (char.isascii() and char.isdigit()
                                      or char == " "):
            mask &= ~_M_NUMERIC
        if mask & _M_PRINTABLE and char not in _ASN1_PRINTABLE:
            mask &= ~_M_PRINTABLE
        if mask & _M_IA5 and code > 0x7F:
            mask &= ~_M_IA5
        if mask & _M_T61 and code > 0xFF:
            mask &= ~_M_T61
        if mask & _M_BMP and code > 0xFFFF:
            mask &= ~_M_BMP
        if not mask:
            kinds = [name for bit, name in (
                (_M_NUMERIC, "NumericString (digits and spaces)"),
                (_M_PRINTABLE, "PrintableString (letters, digits, space and "
                               "'()+,-./:=?)"),
                (_M_IA5, "IA5String (ASCII)"), (_M_T61, "T61String"),
                (_M_BMP, "BMPString (no characters beyond U+FFFF)"),
                (_M_UTF8, "UTF8String"))
                if bit & rule.mask]
            raise ValueError("the %s value %r has the character %r, which an "
                             "OpenSSL %s cannot hold"
                             % (key, value, char, " or ".join(kinds)))
    if mask & _M_NUMERIC:
        return (oid, _NUMERIC, value.encode("ascii"))
    for bit, tag in ((_M_PRINTABLE, _PRINTABLE), (_M_IA5, _IA5),
                     (_M_T61, _T61), (_M_BMP, _BMP),
                     (_M_UNIVERSAL, _UNIVERSAL)):
        if mask & bit:
            return (oid, tag, _encodeAs(tag, value))
    return (oid, _UTF8, value.encode("utf-8"))


def _encodeAs(tag, value):
    if tag == _BMP:
        return value.encode("utf-16-be")
    if tag == _UNIVERSAL:
        return value.encode("utf-32-be")
    return value.encode("latin-1")


# ---------------------------------------------------------------------------
# Subject strings
# ---------------------------------------------------------------------------

def parse_subject(text):
    """
    Parse a C{cert-subject} string exactly as the client does
    (C{subject_to_x509_name}): a list of (key, value) pairs.

    Spaces before a key are skipped, spaces in values are kept, C{\\,} and
    C{\\\\} are the escapes, a trailing comma is allowed, and the string ends
    at a NUL.  An empty string is an empty list.

    @raise ValueError: a backslash before anything but C{\\} or C{,}, an
        entry without C{=}, or an empty value (the client then fails the
        verification).
    """
    text = text.split("\0", 1)[0]
    entries = []
    key, value = [], None
    pos, end = 0, len(text)
    while True:
        char = text[pos] if pos < end else None
        escaped = False
        if char == "\\":
            pos += 1
            char = text[pos] if pos < end else None
            if char not in ("\\", ","):
                raise ValueError(
                    "invalid subject %r: a backslash may only escape '\\' or "
                    "',' (at character %d)" % (text, pos))
            escaped = True
        if value is None:                       # reading a key
            if char == " " and not key:
                pos += 1
                continue
            if char is None:
                if not key:
                    return entries
                raise ValueError("invalid subject %r: %r has no '=value'"
                                 % (text, "".join(key)))
            if char == "," and not escaped:
                raise ValueError("invalid subject %r: an entry has no "
                                 "'key=value' (character %d)" % (text, pos))
            if char == "=" and not escaped:
                value = []
            else:
                key.append(char)
        else:                                   # reading a value
            if char is None or (char == "," and not escaped):
                if not value:
                    raise ValueError("invalid subject %r: %s has an empty "
                                     "value" % (text, "".join(key)))
                entries.append(("".join(key), "".join(value)))
                if char is None:
                    return entries
                key, value = [], None
            else:
                value.append(char)
        pos += 1


def _escape(value):
    return value.replace("\\", "\\\\").replace(",", "\\,")


def validate_subject(text):
    """
    Check that the client can use C{text} as a C{cert-subject}: it parses,
    and its OpenSSL can build every entry.  Return the (key, value) pairs.

    @raise ValueError: with a sentence saying what the client would reject.
    """
    entries = parse_subject(text)
    for key, value in entries:
        _clientEntry(key, value)
    return entries


def format_subject(subject):
    """
    The C{cert-subject} string a SPICE client needs to accept C{subject}: its
    entries in certificate order, as C{KEY=value} joined by commas, with
    OpenSSL short names (a dotted OID where OpenSSL has no name) and C{\\}
    and C{,} escaped.  For example C{C=XX,L=city,O=org,CN=name}.

    @param subject: a L{cryptography.x509.Certificate}, a
        L{cryptography.x509.Name}, or the DER of a Name.
    @raise ValueError: the client could never match this subject (see the
        module docstring); the message says why.
    """
    rdns = _rdns(subject)
    if not rdns:
        raise ValueError(
            "the certificate subject is empty; a SPICE client cannot be told "
            "to expect an empty subject (spice-gtk checks the host name "
            "instead), so issue the certificate with a subject")
    parts = []
    for rdn in rdns:
        if len(rdn) != 1:
            shown = "+".join("%s=%s" % (_keyName(oid), _text(tag, raw))
                             for oid, tag, raw in rdn)
            raise ValueError(
                "the certificate subject has the multi-valued RDN %s; SPICE "
                "clients put every key=value in an RDN of its own and can "
                "never match it, so issue the certificate without '+'"
                % (shown,))
        (oid, tag, raw), = rdn
        key = _keyName(oid)
        value = _text(tag, raw)
        if value is None or _canonical(tag, raw) is None:
            raise ValueError(
                "SPICE clients cannot read this certificate subject: its %s "
                "value is %s %s that OpenSSL refuses in a name"
                % (key, "an invalid" if tag in _LOADABLE_TAGS else "a",
                   _TAG_NAMES.get(tag, "tag %d value" % (tag,))))
        if value == "":
            # The parser forbids empty values; spaces canonicalise to "".
            rule = _STRING_RULES.get(oid, _DEFAULT_RULE)
            value = " " * max(1, rule.minsize)
        try:
            built = _clientEntry(key, value)
        except ValueError as e:
            raise ValueError("SPICE clients cannot match this certificate "
                             "subject: %s" % (e,))
        if _canonical(built[1], built[2]) != _canonical(tag, raw):
            raise ValueError(
                "SPICE clients cannot match this certificate subject: its %s "
                "value is a %s and the client's OpenSSL would build a %s, "
                "which never compares equal" % (
                    key, _TAG_NAMES.get(tag, "tag %d value" % tag),
                    _TAG_NAMES.get(built[1], "string")))
        parts.append("%s=%s" % (key, _escape(value)))
    text = ",".join(parts)
    if not subject_matches(text, subject):      # belt and braces
        raise ValueError("SPICE clients cannot match this certificate "
                         "subject (%s)" % (text,))
    return text


def subject_matches(text, certificate):
    """
    Whether a SPICE client verifying with C{cert-subject=text} accepts
    C{certificate}'s subject: the same entries, in the same order, each
    comparing equal under X509_NAME_cmp's canonical form (case of ASCII
    letters and runs of ASCII whitespace do not matter).

    @param certificate: a L{cryptography.x509.Certificate}, a
        L{cryptography.x509.Name}, or the DER of a Name.
    """
    try:
        entries = validate_subject(text)
        rdns = _rdns(certificate)
    except ValueError:
        return False
    if sum(len(rdn) for rdn in rdns) != len(entries):
        return False
    theirs = _certCanonical(rdns)
    if theirs is None:
        return False
    ours = []
    for key, value in entries:
        oid, tag, raw = _clientEntry(key, value)
        ours.append([(oid,) + _canonical(tag, raw)])
    return ours == theirs


def _describeSubject(certificate):
    try:
        return format_subject(certificate)
    except ValueError:
        return certificate.subject.rfc4514_string()


# ---------------------------------------------------------------------------
# The server side
# ---------------------------------------------------------------------------

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
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1
                        | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_COMPRESSION
                        | getattr(SSL, "OP_NO_RENEGOTIATION", 0)
                        | SSL.OP_CIPHER_SERVER_PREFERENCE)

        def step(what, action, *args):
            try:
                action(*args)
            except SSL.Error as e:
                raise TLSConfigError(what % (_sslErrorText(e),))
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
        ctx.set_session_id(b"SPICE")
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
    C{spicesrv.tlsport.TLSServerEndpoint(reactor, port, result, interface=addr)};
    not Twisted's C{SSL4ServerEndpoint}, whose buffered writes stall spice-gtk).

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


def _sslErrorText(failure_or_error):
    err = failure_or_error
    if hasattr(err, "value"):
        err = err.value
    try:
        parts = [str(item[2]) for item in err.args[0] if item[2]]
    except (IndexError, TypeError):
        parts = []
    return ", ".join(parts) or str(err) or err.__class__.__name__


# ---------------------------------------------------------------------------
# Checking a target as the client will
# ---------------------------------------------------------------------------

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
                              % (ca_file, _sslErrorText(e))))
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
                       "the TLS port?" % (where, _sslErrorText(value)))
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


# ---------------------------------------------------------------------------
# Development certificates
# ---------------------------------------------------------------------------

DevCertificates = namedtuple(
    "DevCertificates",
    "directory ca_cert ca_key server_cert server_key subject")


def _nameFromSubject(text):
    attributes = []
    for key, value in parse_subject(text):
        oid = _oidForKey(key)
        if oid is None:
            raise ValueError("unknown attribute %r in subject %r (use OpenSSL "
                             "names such as C, ST, L, O, OU, CN, emailAddress)"
                             % (key, text))
        attributes.append(x509.NameAttribute(x509.ObjectIdentifier(oid),
                                             value))
    if not attributes:
        raise ValueError("the subject %r is empty" % (text,))
    return x509.Name(attributes)


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
    name = _nameFromSubject(subject)
    caName = _nameFromSubject(ca_subject)
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

