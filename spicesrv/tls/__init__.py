"""
TLS for spicesrv, one job a module, all about what a SPICE client accepts
from a TLS port:

- L{spicesrv.tls.subjects}: the C{cert-subject} strings of
  C{client_migrate_info} and spice-gtk, formatted, parsed, validated and
  compared exactly as the client does;
- L{spicesrv.tls.context}: loading the server's certificate, key, CA, DH
  parameters and ciphers the way QEMU's C{x509-dir} does (L{ServerTLS},
  L{load_server_tls}), and the one OpenSSL error text;
- L{spicesrv.tls.endpoint}: the TLS port's listening endpoint, one TLS
  record per SPICE message (L{TLSServerEndpoint});
- L{spicesrv.tls.probe}: checking a migration target's TLS port as the
  client will (L{check_target_identity});
- L{spicesrv.tls.devcerts}: a development CA and server certificate
  (L{write_dev_certs}).

The public names of those modules are re-exported here for embedders;
spicesrv's own modules import them from where they are defined.
"""

from spicesrv.tls.subjects import (
    format_subject, name_from_subject, parse_subject, subject_matches,
    validate_subject)
from spicesrv.tls.context import (
    CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, ServerTLS,
    TLSConfigError, load_server_tls, ssl_error_text)
from spicesrv.tls.endpoint import TLSServerEndpoint
from spicesrv.tls.probe import check_target_identity
from spicesrv.tls.devcerts import DevCertificates, write_dev_certs

__all__ = [
    "TLSConfigError", "ServerTLS", "TLSServerEndpoint", "load_server_tls", "ssl_error_text",
    "format_subject", "parse_subject", "validate_subject", "subject_matches",
    "name_from_subject", "check_target_identity", "write_dev_certs",
    "DevCertificates", "CA_CERT_FILE", "SERVER_CERT_FILE", "SERVER_KEY_FILE",
    "CA_KEY_FILE",
]
