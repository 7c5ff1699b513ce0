"""
Migration: moving a connected SPICE client, and the state of the devices it
uses, from one server to another, as QEMU and libspice-server do
(protocol.md section 5).

One module per job:

 - L{spicesrv.migration.source}: the source server's client migration
   (MIGRATE_BEGIN, the clients' answers, MIGRATE_END, SWITCH_HOST or
   CANCEL, the wait for them to leave).
 - L{spicesrv.migration.arrival}: the target server's side, one arriving
   client from its main link to the moment it works here.
 - L{spicesrv.migration.seamless}: the MIGRATE_DATA a channel carries in a
   seamless migration.
 - L{spicesrv.migration.command}: the source's C{migrate} command, which
   moves the device state and then ends the client migration.
 - The device-state transfer: L{spicesrv.migration.statewire} (the AMP
   conversation and its rules), L{spicesrv.migration.outgoing} (the
   source's half), L{spicesrv.migration.incoming} (the target's half, as
   QEMU's C{-incoming}) and L{spicesrv.migration.uri} (migration URIs).

This package imports nothing itself, so that its modules can be imported
from the layers they serve without cycles.
"""
