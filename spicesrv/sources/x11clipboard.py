"""
The X source's clipboard bridge: the X server's CLIPBOARD and PRIMARY
selections on one side, the SPICE clients' clipboards (spicesrv's agent,
L{spicesrv.interfaces.IAgentClients}) on the other, as spice-vdagent does
inside a guest.

 - A client copies: L{X11Clipboard.clientGrabbed} makes the bridge's
   InputOnly window the selection's owner (SetSelectionOwner).  An X client
   that pastes sends a SelectionRequest; the bridge answers TARGETS
   itself, and for text (UTF8_STRING, TEXT, STRING,
   text/plain;charset=utf-8) or image/png asks the client for its data
   (C{clipboard_request}) and writes it into the requestor's property once
   it arrives, then sends the SelectionNotify.
 - An X client copies: XFIXES reports the new owner; the bridge asks it for
   its TARGETS and offers the types it can carry to the clients
   (C{clipboard_grab}).  A client that pastes gets the bytes of a
   ConvertSelection (L{X11Clipboard.request}).

Data goes to and from X in one property: up to what one X request carries
(the X server's maximum request length, 16 MiB at most); larger data is
refused with a log line (the incremental INCR transfer is not done).
"""

import struct

from twisted.internet import defer
from twisted.logger import Logger

import xcffib
import xcffib.xfixes
import xcffib.xproto as xp

from spicesrv.agent import ClipboardUnavailable
from spicesrv.wire.vdagent import ClipboardType, Selection

#: The selections bridged, by X name.
SELECTIONS = {Selection.CLIPBOARD: "CLIPBOARD", Selection.PRIMARY: "PRIMARY"}
#: The X targets each agent type is offered as, the preferred one first
#: (the one asked for from an X owner).
TARGETS = {
    ClipboardType.UTF8_TEXT: ("UTF8_STRING", "text/plain;charset=utf-8", "TEXT", "STRING"),
    ClipboardType.IMAGE_PNG: ("image/png",),
}
#: Seconds an X owner has to answer a ConvertSelection.
CONVERT_TIMEOUT = 10.0
#: The most clipboard bytes carried in either direction.
MAX_SIZE = 16 * 1024 * 1024

ATOM_NAMES = ("TARGETS", "INCR", "ATOM") + tuple(SELECTIONS.values()) \
    + tuple(name for names in TARGETS.values() for name in names)


class X11Clipboard:
    """
    The bridge, on the X source's connection; the source hands it the
    selection events (L{handle}).

    @ivar clients: the L{spicesrv.interfaces.IAgentClients}, once attached.
    @ivar window: the InputOnly window that owns selections for clients.
    @ivar owned: selection -> the types the client that copied offers,
        while the bridge owns that X selection for it.
    @ivar offered: selection -> the types offered to clients for an X
        owner.
    """

    log = Logger()

    def __init__(self, conn, root, reactor, display, afterRoundTrip=lambda: None):
        self._conn = conn
        self._reactor = reactor
        self._afterRoundTrip = afterRoundTrip
        self.display = display
        self.clients = None
        self.owned = {}
        self.offered = {}
        self._xTargets = {}
        self._generation = dict.fromkeys(SELECTIONS, 0)
        self._conversions = {}
        core = conn.core
        cookies = {name: core.InternAtom(False, len(name), name) for name in ATOM_NAMES}
        properties = {(selection, target): "SPICESRV_%s_%s" % (name, target.replace("/", "_"))
                      for selection, name in SELECTIONS.items()
                      for target in ("TARGETS",) + TARGETS[ClipboardType.UTF8_TEXT]
                      + TARGETS[ClipboardType.IMAGE_PNG]}
        propertyCookies = {key: core.InternAtom(False, len(name), name)
                           for key, name in properties.items()}
        self.atoms = {name: cookie.reply().atom for name, cookie in cookies.items()}
        self._properties = {key: cookie.reply().atom
                            for key, cookie in propertyCookies.items()}
        self._names = {atom: name for name, atom in self.atoms.items()}
        self._selections = {self.atoms[name]: selection for selection, name in SELECTIONS.items()}
        limit = conn.get_maximum_request_length() * 4 - 64
        self.maxSize = min(MAX_SIZE, limit)
        self.window = conn.generate_id()
        core.CreateWindow(0, self.window, root, -1, -1, 1, 1, 0, xp.WindowClass.InputOnly, 0,
                          0, [])
        self._xfixes = conn(xcffib.xfixes.key)
        mask = (xcffib.xfixes.SelectionEventMask.SetSelectionOwner
                | xcffib.xfixes.SelectionEventMask.SelectionWindowDestroy
                | xcffib.xfixes.SelectionEventMask.SelectionClientClose)
        for name in SELECTIONS.values():
            self._xfixes.SelectSelectionInput(self.window, self.atoms[name], mask)
        conn.flush()

    def attach(self, clients):
        """
        The agent is registered: offer what X clients own now.
        """
        self.clients = clients
        for selection, name in SELECTIONS.items():
            owner = self._conn.core.GetSelectionOwner(self.atoms[name]).reply().owner
            if owner not in (0, self.window):
                self._xOwnerChanged(selection)
        self._afterRoundTrip()

    def close(self):
        self._conn = None
        conversions, self._conversions = self._conversions, {}
        for waiters, call in conversions.values():
            call.cancel()
            for d in waiters:
                d.errback(ClipboardUnavailable("the X connection closed"))

    # -- X events ------------------------------------------------------------------

    def handle(self, event):
        """
        Take C{event} if it is about selections; returns whether it was.
        """
        if isinstance(event, xcffib.xfixes.SelectionNotifyEvent):
            selection = self._selections.get(event.selection)
            if selection is not None and event.owner != self.window:
                self.owned.pop(selection, None)
                if event.owner:
                    self._xOwnerChanged(selection)
                else:
                    self._xOwnerGone(selection)
            return True
        if isinstance(event, xp.SelectionClearEvent):
            selection = self._selections.get(event.selection)
            if selection is not None:
                self.owned.pop(selection, None)
            return True
        if isinstance(event, xp.SelectionRequestEvent):
            self._answer(event)
            return True
        if isinstance(event, xp.SelectionNotifyEvent):
            self._converted(event)
            return True
        return False

    # -- X owners, offered to clients ------------------------------------------------

    def _xOwnerChanged(self, selection):
        self._generation[selection] += 1
        generation = self._generation[selection]

        def offer(data):
            if generation != self._generation[selection]:
                return
            count = len(data) // 4
            names = {self._names.get(atom)
                     for atom in struct.unpack("=%dI" % count, data[:count * 4])}
            types = [t for t, targets in TARGETS.items() if names & set(targets)]
            if types:
                self.offered[selection] = types
                self._xTargets[selection] = names
                if self.clients is not None:
                    self.clients.clipboard_grab(selection, types)
            else:
                self._xOwnerGone(selection)

        def failed(failure):
            failure.trap(ClipboardUnavailable)
            if generation == self._generation[selection]:
                self.log.info("the owner of {selection} on X display {display} gave no "
                              "TARGETS: {why}", selection=SELECTIONS[selection],
                              display=self.display, why=failure.getErrorMessage())
                self._xOwnerGone(selection)
        self._convert(selection, "TARGETS").addCallbacks(offer, failed)

    def _xOwnerGone(self, selection):
        if self.offered.pop(selection, None) is not None and self.clients is not None:
            self.clients.clipboard_release(selection)

    def request(self, selection, type):
        """
        A client pastes C{selection}, which an X client owns: a Deferred
        firing with its bytes in C{type}, or L{None} when it has none.
        """
        types = self.offered.get(selection)
        if types is None or type not in types or self._conn is None:
            return defer.succeed(None)
        # The first target of that type the owner offered, in the order of
        # TARGETS: text as UTF8_STRING if it can.
        offered = self._xTargets.get(selection, set())
        target = next((t for t in TARGETS[type] if t in offered), TARGETS[type][0])

        def failed(failure):
            failure.trap(ClipboardUnavailable)
            self.log.info("could not paste {selection} of X display {display}: {why}",
                          selection=SELECTIONS[selection], display=self.display,
                          why=failure.getErrorMessage())
            return None
        return self._convert(selection, target).addErrback(failed)

    def _convert(self, selection, target):
        """
        ConvertSelection into our window's property: a Deferred firing with
        the property's bytes.  Requests for the same selection and target
        while one runs share its answer.
        """
        if self._conn is None:
            return defer.fail(ClipboardUnavailable("the X connection is closed"))
        key = (self.atoms[SELECTIONS[selection]], self.atoms[target])
        d = defer.Deferred()
        if key in self._conversions:
            self._conversions[key][0].append(d)
            return d
        self._conn.core.ConvertSelection(self.window, key[0], key[1],
                                         self._properties[(selection, target)],
                                         xp.Time.CurrentTime)
        self._conn.flush()
        call = self._reactor.callLater(CONVERT_TIMEOUT, self._finish, key, None,
                                       "the X owner did not answer within %s s"
                                       % (CONVERT_TIMEOUT,))
        self._conversions[key] = ([d], call)
        return d

    def _finish(self, key, data, why=None):
        waiters, call = self._conversions.pop(key, ([], None))
        if call is not None and call.active():
            call.cancel()
        for d in waiters:
            if data is None:
                d.errback(ClipboardUnavailable(why))
            else:
                d.callback(data)

    def _converted(self, event):
        key = (event.selection, event.target)
        if key not in self._conversions or event.requestor != self.window:
            return
        if not event.property:
            self._finish(key, None, "the X owner cannot give %s"
                         % (self._names.get(event.target),))
            return
        try:
            reply = self._conn.core.GetProperty(True, self.window, event.property, 0, 0,
                                                self.maxSize // 4 + 1).reply()
        except xcffib.XcffibException as e:
            self._finish(key, None, "reading the selection failed: %r" % (e,))
            return
        self._afterRoundTrip()
        if reply.type == self.atoms["INCR"]:
            self.log.warn("the owner of a selection on X display {display} sends it "
                          "incrementally (INCR, more than it sends at once); spicesrv "
                          "does not read that: nothing is pasted", display=self.display)
            self._conn.core.DeleteProperty(self.window, event.property)
            self._conn.flush()
            self._finish(key, None, "incremental transfers are not read")
            return
        data = reply.value.buf()
        if reply.bytes_after or len(data) > self.maxSize:
            self.log.warn("a selection on X display {display} is more than {limit} bytes: "
                          "nothing is pasted", display=self.display, limit=self.maxSize)
            self._finish(key, None, "more than %d bytes" % (self.maxSize,))
            return
        if self._names.get(reply.type) == "STRING":
            data = data.decode("latin-1").encode("utf-8")
        self._finish(key, bytes(data))

    # -- clients' clipboards, owned in X --------------------------------------------

    def clientGrabbed(self, selection, types):
        """
        A client copied: own the X selection if it offers a type X clients
        can take.
        """
        if selection not in SELECTIONS or self._conn is None:
            return
        self._generation[selection] += 1
        self.offered.pop(selection, None)
        types = [t for t in types if t in TARGETS]
        if not types:
            self._release(selection)
            return
        self.owned[selection] = types
        self._conn.core.SetSelectionOwner(self.window, self.atoms[SELECTIONS[selection]],
                                          xp.Time.CurrentTime)
        self._conn.flush()

    def clientReleased(self, selection):
        """
        The client that copied offers nothing any more (or went away).
        """
        if selection in SELECTIONS and self._conn is not None:
            self._release(selection)

    def _release(self, selection):
        """
        Give up the X selection, if this bridge still owns it (another
        owner, maybe another spicesrv server on the same display, may have
        taken it since).
        """
        self.owned.pop(selection, None)
        atom = self.atoms[SELECTIONS[selection]]
        if self._conn.core.GetSelectionOwner(atom).reply().owner == self.window:
            self._conn.core.SetSelectionOwner(0, atom, xp.Time.CurrentTime)
            self._conn.flush()
        self._afterRoundTrip()

    def _answer(self, event):
        selection = self._selections.get(event.selection)
        types = self.owned.get(selection) if event.owner == self.window else None
        prop = event.property or event.target
        target = self._names.get(event.target)

        def notify(prop):
            if self._conn is None:
                return
            self._conn.core.SendEvent(False, event.requestor, 0, xp.SelectionNotifyEvent.synthetic(
                event.time, event.requestor, event.selection, event.target, prop).pack())
            self._conn.flush()

        if types is None:
            notify(0)
            return
        if target == "TARGETS":
            atoms = [self.atoms["TARGETS"]] + [
                self.atoms[name] for t in types for name in TARGETS[t]]
            self._conn.core.ChangeProperty(xp.PropMode.Replace, event.requestor, prop,
                                           self.atoms["ATOM"], 32, len(atoms),
                                           struct.pack("=%dI" % len(atoms), *atoms))
            notify(prop)
            return
        wanted = [t for t in types if target in TARGETS[t]]
        if not wanted or self.clients is None:
            notify(0)
            return
        type = wanted[0]

        def write(data):
            if data is None or self._conn is None:
                notify(0)
                return
            if target == "STRING":
                data = bytes(data).decode("utf-8", "replace").encode("latin-1", "replace")
            if len(data) > self.maxSize:
                self.log.warn("a client's clipboard of {size} bytes is more than X display "
                              "{display} takes at once ({limit}): not pasted (INCR is not "
                              "done)", size=len(data), display=self.display,
                              limit=self.maxSize)
                notify(0)
                return
            kind = self.atoms["UTF8_STRING" if target == "TEXT" else target]
            self._conn.core.ChangeProperty(xp.PropMode.Replace, event.requestor, prop, kind,
                                           8, len(data), bytes(data))
            notify(prop)

        def failed(failure):
            failure.trap(ClipboardUnavailable)
            self.log.info("an X client pasted {selection} on {display}, but the client that "
                          "copied did not give it: {why}", selection=SELECTIONS[selection],
                          display=self.display, why=failure.getErrorMessage())
            notify(0)
        d = self.clients.clipboard_request(selection, type)
        d.addCallbacks(write, failed)
        d.addErrback(lambda f: self.log.failure("answering a SelectionRequest failed", f))
