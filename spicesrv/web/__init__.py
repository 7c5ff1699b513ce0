"""
Browsers on SPICE's own ports.

Every SPICE listener (plain, TLS, C{--listen}) tells HTTP from native SPICE
by a connection's first four bytes (L{spicesrv.link}); HTTP goes to the
server's L{WebFrontend}, which upgrades WebSockets to SPICE links
(L{spicesrv.web.websocket}) and, with C{--web-client}, serves spice-html5
and a landing page (L{spicesrv.web.client}).
"""

from spicesrv.web.front import WebFrontend, frontendOf

__all__ = ["WebFrontend", "frontendOf"]
