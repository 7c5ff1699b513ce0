"""
Run QMP steps with QEMU's own client library, ``qemu.qmp``, and print what
happened as one JSON object.  The interop tests drive spicesrv's monitors
with it, as an operator's tooling would.

    python qmpsteps.py STEPS_JSON

STEPS_JSON is a list of steps, each one of:

- C{{"monitor": PATH, "execute": NAME, "arguments": {...}}}: the reply's
  C{return}, or C{{"error": {"class": ..., "desc": ...}}};
- C{{"monitor": PATH, "event": NAME, "match": {...}, "timeout": S}}: wait for
  an event (one seen since the monitor was connected counts) whose data
  contains C{match}; the event, or C{{"error": "timeout"}}.

Each monitor is connected once, at its first step, and kept for the rest.
"""

import asyncio
import json
import sys

from qemu.qmp import ExecuteError, QMPClient


async def run(steps):
    clients, seen, results = {}, {}, []

    async def client(path):
        if path not in clients:
            qmp = QMPClient("spicesrv-test")
            await asyncio.wait_for(qmp.connect(path), 20)
            clients[path] = qmp
            seen[path] = []
            async def collect(q=qmp, events=seen[path]):
                with q.listener() as events_listener:
                    async for event in events_listener:
                        events.append(dict(event))
            clients[path + "#task"] = asyncio.ensure_future(collect())
            await asyncio.sleep(0)
        return clients[path]

    for step in steps:
        qmp = await client(step["monitor"])
        if "execute" in step:
            try:
                results.append(await qmp.execute(step["execute"], step.get("arguments")))
            except ExecuteError as e:
                results.append({"error": {"class": e.error_class, "desc": e.error.error.desc}})
            continue
        deadline = asyncio.get_event_loop().time() + step.get("timeout", 30)
        found = None
        while found is None:
            for event in seen[step["monitor"]]:
                data = event.get("data", {})
                if event["event"] == step["event"] and all(
                        data.get(k) == v for k, v in step.get("match", {}).items()):
                    found = event
                    break
            if found is None:
                if asyncio.get_event_loop().time() > deadline:
                    found = {"error": "timeout", "events": seen[step["monitor"]]}
                    break
                await asyncio.sleep(0.05)
        results.append(found)
    for name, value in list(clients.items()):
        if name.endswith("#task"):
            value.cancel()
        else:
            await value.disconnect()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
