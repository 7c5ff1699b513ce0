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

Large data goes by X's incremental protocol (ICCCM's INCR) both ways: an
X owner's answer of type INCR is read chunk by chunk as the owner writes
them (L{_Receiving}), and a client's data larger than L{INCR_CHUNK} (or
than one X request carries) is written to the pasting X client in chunks,
each once it has deleted the one before (L{_Sending}).  Either way at most
L{MAX_SIZE} bytes go; larger data is refused with a log line, and a peer
that stops for L{INCR_TIMEOUT} seconds in the middle is given up.

The bridge owns a selection with a real server timestamp (ICCCM: never
CurrentTime), got from a property change on its own window; it answers
the TIMESTAMP target with it and releases with it, so that releasing
cannot undo another owner's newer grab (another spicesrv server taking
over a migrated client's copy).  MULTIPLE is answered too.
"""

import struct
from collections import deque

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
#: A client's data larger than this (or than one X request carries) goes to
#: X clients incrementally (INCR), in chunks of this size.
INCR_CHUNK = 256 * 1024
#: Seconds the other side of an incremental transfer has for each step.
INCR_TIMEOUT = 10.0
#: The targets the bridge answers itself, besides the data's.
OWN_TARGETS = ("TARGETS", "TIMESTAMP", "MULTIPLE")

ATOM_NAMES = ("INCR", "ATOM", "ATOM_PAIR", "INTEGER", "SPICESRV_TIMESTAMP") + OWN_TARGETS \
    + tuple(SELECTIONS.values()) + tuple(name for names in TARGETS.values() for name in names)


class _Receiving:
    """
    An X owner's INCR answer, read into C{data} chunk by chunk.
    """

    def __init__(self, key):
        self.key = key
        self.data = bytearray()
        self.type = None


class _Sending:
    """
    A client's data going to an X requestor's property incrementally.
    """

    def __init__(self, data, kind, call):
        self.data = data
        self.kind = kind
        self.offset = 0
        self.call = call


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
    @ivar acquired: selection -> the server time the bridge became its
        owner at.
    @ivar chunkSize: the size of the chunks of incremental transfers to X
        clients, and the most sent at once.
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
        self.acquired = {}
        self._grabs = deque()
        self._receiving = {}
        self._sending = {}
        self._watched = {}
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
        # What one ChangeProperty carries, less its header.
        limit = conn.get_maximum_request_length() * 4 - 64
        self.maxSize = MAX_SIZE
        self.chunkSize = min(INCR_CHUNK, limit)
        self.window = conn.generate_id()
        # Property changes on the window: server timestamps, and the chunks
        # of an X owner's incremental answers.
        core.CreateWindow(0, self.window, root, -1, -1, 1, 1, 0, xp.WindowClass.InputOnly, 0,
                          xp.CW.EventMask, [xp.EventMask.PropertyChange])
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
        self._receiving.clear()
        for waiters, call in conversions.values():
            call.cancel()
            for d in waiters:
                d.errback(ClipboardUnavailable("the X connection closed"))
        sending, self._sending = self._sending, {}
        for transfer in sending.values():
            if transfer.call.active():
                transfer.call.cancel()
        self._watched.clear()
        self._grabs.clear()

    # -- X events ------------------------------------------------------------------

    def handle(self, event):
        """
        Take C{event} if it is about selections; returns whether it was.
        """
        if isinstance(event, xcffib.xfixes.SelectionNotifyEvent):
            selection = self._selections.get(event.selection)
            if selection is not None and event.owner != self.window \
                    and not self._stale(selection, event.selection_timestamp):
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
                self.acquired.pop(selection, None)
            return True
        if isinstance(event, xp.PropertyNotifyEvent):
            return self._propertyChanged(event)
        if isinstance(event, xp.SelectionRequestEvent):
            self._answer(event)
            return True
        if isinstance(event, xp.SelectionNotifyEvent):
            self._converted(event)
            return True
        return False

    def _stale(self, selection, time):
        """
        Whether a change of C{selection} made at server time C{time} came
        before the bridge took it: news queued before the bridge's own
        grab (another server's bridge releasing the selection it held for
        a client that migrated here) says nothing about the owner now.
        """
        acquired = self.acquired.get(selection)
        return acquired is not None and 0 < (acquired - time) % 2 ** 32 < 2 ** 31

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
        for prop in [p for p, r in self._receiving.items() if r.key == key]:
            del self._receiving[prop]
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
            reply = self._conn.core.GetProperty(False, self.window, event.property, 0, 0,
                                                self.maxSize // 4 + 1).reply()
        except xcffib.XcffibException as e:
            self._finish(key, None, "reading the selection failed: %r" % (e,))
            return
        self._afterRoundTrip()
        if reply.type == self.atoms["INCR"]:
            value = reply.value.buf()
            size = struct.unpack("=I", value[:4])[0] if len(value) >= 4 else 0
            if size > self.maxSize:
                self._tooBig(key, "an X owner's")
                return
            # Deleting the INCR property asks the owner for the first chunk.
            self._receiving[event.property] = _Receiving(key)
            self._conversions[key][1].reset(INCR_TIMEOUT)
            self._conn.core.DeleteProperty(self.window, event.property)
            self._conn.flush()
            return
        self._conn.core.DeleteProperty(self.window, event.property)
        self._conn.flush()
        data = reply.value.buf()
        if reply.bytes_after or len(data) > self.maxSize:
            self._tooBig(key, "an X owner's")
            return
        self._finish(key, self._decoded(bytes(data), reply.type))

    def _decoded(self, data, kind):
        if self._names.get(kind) == "STRING":
            return data.decode("latin-1").encode("utf-8")
        return data

    def _tooBig(self, key, whose):
        self.log.warn("{whose} selection on X display {display} is more than {limit} "
                      "bytes: nothing is pasted", whose=whose, display=self.display,
                      limit=self.maxSize)
        self._finish(key, None, "more than %d bytes" % (self.maxSize,))

    def _propertyChanged(self, event):
        """
        A property of the bridge's window (a timestamp, an incremental
        answer's chunk) or of an X requestor it writes to incrementally
        changed.
        """
        if event.window == self.window:
            if event.atom == self.atoms["SPICESRV_TIMESTAMP"]:
                if event.state == xp.Property.NewValue:
                    self._timestamped(event.time)
                return True
            receiving = self._receiving.get(event.atom)
            if receiving is not None and event.state == xp.Property.NewValue:
                self._chunkArrived(event.atom, receiving)
            return True
        transfer = self._sending.get((event.window, event.atom))
        if transfer is not None and event.state == xp.Property.Delete:
            self._sendChunk((event.window, event.atom), transfer)
            return True
        return False

    def _chunkArrived(self, prop, receiving):
        key = receiving.key
        room = self.maxSize - len(receiving.data)
        try:
            reply = self._conn.core.GetProperty(True, self.window, prop, 0, 0,
                                                room // 4 + 1).reply()
        except xcffib.XcffibException as e:
            self._finish(key, None, "reading the selection failed: %r" % (e,))
            return
        self._afterRoundTrip()
        data = reply.value.buf()
        if reply.bytes_after or len(data) > room:
            # The owner waits for a deletion that does not come.
            self._tooBig(key, "an X owner's incremental")
            return
        if receiving.type is None:
            receiving.type = reply.type
        if not len(data):
            self._finish(key, self._decoded(bytes(receiving.data), receiving.type))
            return
        receiving.data += data
        self._conversions[key][1].reset(INCR_TIMEOUT)

    # -- clients' clipboards, owned in X --------------------------------------------

    def clientGrabbed(self, selection, types):
        """
        A client copied: own the X selection if it offers a type X clients
        can take.  The ownership takes a server timestamp first (ICCCM),
        got from a change of the bridge's own window's property; until it
        arrives, C{owned} does not have the selection.
        """
        if selection not in SELECTIONS or self._conn is None:
            return
        self._generation[selection] += 1
        self.offered.pop(selection, None)
        types = [t for t in types if t in TARGETS]
        if not types:
            self._release(selection)
            return
        self._grabs.append((selection, self._generation[selection], types))
        self._conn.core.ChangeProperty(xp.PropMode.Append, self.window,
                                       self.atoms["SPICESRV_TIMESTAMP"],
                                       self.atoms["INTEGER"], 32, 0, b"")
        self._conn.flush()

    def _timestamped(self, time):
        if not self._grabs or self._conn is None:
            return
        selection, generation, types = self._grabs.popleft()
        if generation != self._generation[selection]:
            return
        self.owned[selection] = types
        self.acquired[selection] = time
        self._conn.core.SetSelectionOwner(self.window, self.atoms[SELECTIONS[selection]], time)
        self._conn.flush()

    def clientReleased(self, selection):
        """
        The client that copied offers nothing any more (or went away).
        """
        if selection in SELECTIONS and self._conn is not None:
            self._generation[selection] += 1
            self._release(selection)

    def _release(self, selection):
        """
        Give up the X selection, if this bridge still owns it (another
        owner, maybe another spicesrv server on the same display, may have
        taken it since: the time it was taken at keeps the X server from
        undoing a newer owner's grab).
        """
        self.owned.pop(selection, None)
        time = self.acquired.pop(selection, None)
        atom = self.atoms[SELECTIONS[selection]]
        if time is not None and self._conn.core.GetSelectionOwner(atom).reply().owner \
                == self.window:
            self._conn.core.SetSelectionOwner(0, atom, time)
            self._conn.flush()
        self._afterRoundTrip()

    def _answer(self, event):
        """
        An X client pastes a selection the bridge owns (SelectionRequest):
        answer each target it asks for (several with MULTIPLE), then tell it
        (SelectionNotify).
        """
        selection = self._selections.get(event.selection)
        types = self.owned.get(selection) if event.owner == self.window else None
        # An obsolete requestor gives no property: the target names it.
        prop = event.property or event.target
        acquired = self.acquired.get(selection, 0)

        def notify(prop):
            if self._conn is None:
                return
            self._conn.core.SendEvent(False, event.requestor, 0, xp.SelectionNotifyEvent.synthetic(
                event.time, event.requestor, event.selection, event.target, prop).pack())
            self._conn.flush()

        if types is None or (event.time and event.time < acquired):
            notify(0)
            return
        if self._names.get(event.target) != "MULTIPLE":
            d = self._give(event.requestor, event.target, prop, selection, types)
        elif event.property:
            d = self._giveMultiple(event.requestor, prop, selection, types)
        else:
            d = defer.succeed(False)

        def failed(failure):
            self.log.failure("answering a SelectionRequest failed", failure)
            return False
        d.addErrback(failed)
        d.addCallback(lambda given: notify(prop if given else 0))

    def _giveMultiple(self, requestor, prop, selection, types):
        """
        MULTIPLE: C{prop} of C{requestor} lists (target, property) pairs;
        each is answered, and a pair whose target cannot be given gets
        None as its property (ICCCM 2.6.2).
        """
        try:
            reply = self._conn.core.GetProperty(False, requestor, prop, 0, 0, 1024).reply()
        except xcffib.XcffibException:
            return defer.succeed(False)
        finally:
            self._afterRoundTrip()
        value = reply.value.buf()
        if reply.format != 32 or len(value) % 8:
            return defer.succeed(False)
        atoms = list(struct.unpack("=%dI" % (len(value) // 4), value))
        pairs = list(zip(atoms[::2], atoms[1::2]))
        ds = [self._give(requestor, target, pairProp, selection, types) if pairProp
              else defer.succeed(False) for target, pairProp in pairs]

        def written(results):
            if self._conn is None:
                return False
            answer = []
            for (target, pairProp), given in zip(pairs, results):
                answer += [target, pairProp if given else 0]
            self._conn.core.ChangeProperty(xp.PropMode.Replace, requestor, prop,
                                           self.atoms["ATOM_PAIR"], 32, len(answer),
                                           struct.pack("=%dI" % len(answer), *answer))
            return True
        return defer.gatherResults(ds).addCallback(written)

    def _give(self, requestor, targetAtom, prop, selection, types):
        """
        Write the selection in target C{targetAtom} into C{prop} of
        C{requestor}: a Deferred firing with whether it was.
        """
        target = self._names.get(targetAtom)
        core = self._conn.core
        if target == "TARGETS":
            atoms = [self.atoms[name] for name in OWN_TARGETS] + [
                self.atoms[name] for t in types for name in TARGETS[t]]
            core.ChangeProperty(xp.PropMode.Replace, requestor, prop, self.atoms["ATOM"], 32,
                                len(atoms), struct.pack("=%dI" % len(atoms), *atoms))
            return defer.succeed(True)
        if target == "TIMESTAMP":
            core.ChangeProperty(xp.PropMode.Replace, requestor, prop, self.atoms["INTEGER"], 32,
                                1, struct.pack("=I", self.acquired.get(selection, 0)))
            return defer.succeed(True)
        wanted = [t for t in types if target in TARGETS[t]]
        if not wanted or self.clients is None:
            return defer.succeed(False)

        def write(data):
            if data is None or self._conn is None:
                return False
            if target == "STRING":
                data = bytes(data).decode("utf-8", "replace").encode("latin-1", "replace")
            if len(data) > self.maxSize:
                self.log.warn("a client's clipboard of {size} bytes is more than {limit}: "
                              "not pasted on X display {display}", size=len(data),
                              display=self.display, limit=self.maxSize)
                return False
            kind = self.atoms["UTF8_STRING" if target == "TEXT" else target]
            self._write(requestor, prop, kind, bytes(data))
            return True

        def failed(failure):
            failure.trap(ClipboardUnavailable)
            self.log.info("an X client pasted {selection} on {display}, but the client that "
                          "copied did not give it: {why}", selection=SELECTIONS[selection],
                          display=self.display, why=failure.getErrorMessage())
            return False
        return self.clients.clipboard_request(selection, wanted[0]).addCallbacks(write, failed)

    # -- incremental transfers to X clients ------------------------------------------

    def _write(self, requestor, prop, kind, data):
        """
        Put C{data} into C{prop} of C{requestor}: at once, or, when larger
        than L{chunkSize}, as an INCR transfer that the requestor drives by
        deleting the property.
        """
        core = self._conn.core
        if len(data) <= self.chunkSize:
            core.ChangeProperty(xp.PropMode.Replace, requestor, prop, kind, 8, len(data), data)
            return
        key = (requestor, prop)
        previous = self._sending.pop(key, None)
        if previous is not None:
            previous.call.cancel()
        else:
            self._watch(requestor, +1)
        call = self._reactor.callLater(INCR_TIMEOUT, self._sendingTimedOut, key)
        self._sending[key] = _Sending(data, kind, call)
        core.ChangeProperty(xp.PropMode.Replace, requestor, prop, self.atoms["INCR"], 32, 1,
                            struct.pack("=I", len(data)))

    def _watch(self, window, change):
        """
        Hear of (or stop hearing of) property changes of an X requestor's
        window while incremental transfers to it run.
        """
        count = self._watched.get(window, 0) + change
        if count > 0:
            if window not in self._watched:
                self._conn.core.ChangeWindowAttributes(window, xp.CW.EventMask,
                                                       [xp.EventMask.PropertyChange])
            self._watched[window] = count
        elif self._watched.pop(window, None) is not None and self._conn is not None:
            self._conn.core.ChangeWindowAttributes(window, xp.CW.EventMask, [0])

    def _sendChunk(self, key, transfer):
        """
        The requestor deleted the property: write the next chunk, or the
        empty one that ends the transfer.
        """
        requestor, prop = key
        chunk = transfer.data[transfer.offset:transfer.offset + self.chunkSize]
        transfer.offset += len(chunk)
        self._conn.core.ChangeProperty(xp.PropMode.Replace, requestor, prop, transfer.kind, 8,
                                       len(chunk), chunk)
        if chunk:
            transfer.call.reset(INCR_TIMEOUT)
        else:
            self._sending.pop(key, None)
            transfer.call.cancel()
            self._watch(requestor, -1)
        self._conn.flush()

    def _sendingTimedOut(self, key):
        transfer = self._sending.pop(key, None)
        if transfer is None or self._conn is None:
            return
        self.log.info("an X client stopped taking an incremental paste from X display "
                      "{display} after {sent} of {size} bytes", display=self.display,
                      sent=transfer.offset, size=len(transfer.data))
        self._watch(key[0], -1)
        self._conn.flush()
