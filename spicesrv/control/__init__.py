"""
The control plane: a QMP-compatible monitor, so operators and existing QMP
client libraries drive spicesrv as they drive QEMU.

L{spicesrv.control.qmp} is the connection and the factory (greeting,
capabilities negotiation, events, flow control) and where the monitor may
listen; L{spicesrv.control.commands} declares each command once, its
argument schema beside its handler; L{spicesrv.control.schema} checks
arguments as QEMU's QAPI does; L{spicesrv.control.jsonstream} splits the
byte stream into JSON values.  The commands drive one object providing
L{spicesrv.interfaces.IMonitorBackend};
L{spicesrv.control.backend.SpiceServerBackend} is that object for a
L{spicesrv.server.SpiceServer}.
"""
