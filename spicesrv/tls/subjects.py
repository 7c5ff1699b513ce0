"""
Certificate subjects as SPICE clients speak them: the C{cert-subject}
strings of C{client_migrate_info} and spice-gtk's C{cert-subject} property,
parsed and compared exactly as the client (spice-common C{ssl_verify.c})
does.  L{format_subject} writes the string for a certificate,
L{parse_subject} and L{validate_subject} read one, L{subject_matches}
compares one with a certificate, and L{name_from_subject} builds the
L{cryptography.x509.Name} a string describes.

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

import re
from collections import namedtuple

from cryptography import x509

__all__ = ["format_subject", "parse_subject", "validate_subject",
           "subject_matches", "name_from_subject"]


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


def name_from_subject(text):
    """
    The L{cryptography.x509.Name} that the C{cert-subject} string C{text}
    describes, entries in string order (for issuing certificates).

    @raise ValueError: the string does not parse, names an attribute
        OpenSSL does not know, or is empty.
    """
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

