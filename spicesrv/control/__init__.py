"""
The control plane: a QMP-compatible monitor, so operators and existing QMP
client libraries drive spicesrv as they drive QEMU.

L{spicesrv.control.qmp} speaks the protocol (greeting, capabilities
negotiation, commands, events) against one object providing
L{spicesrv.control.qmp.IMonitorBackend};
L{spicesrv.control.backend.SpiceServerBackend} is that object for a
L{spicesrv.server.SpiceServer}.
"""
