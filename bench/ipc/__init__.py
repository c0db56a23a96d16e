"""IPC latency of every message type over its real path, beside a bare pyzmq + msgpack floor.

One real stack (launch.py in a subprocess, config {"version": 1, "unity_bridge": {"port": 0}}),
a TCP client of the Unity bridge, bus clients, and small relay processes that form the floor:
the same number of process hops and the same transports (ipc for the bus, length-prefixed TCP
for the Unity wire), each hop doing msgpack unpack + pack of a payload the size of the real
envelope. Real and floor samples are taken in alternating blocks (interleaved), after a
warm-up that is excluded. Writes bench/results/ipc.json, ipc.md and ipc_*.png.

    .venv/bin/python -m bench.ipc [--quick] [--footprint-s S] [--out DIR]

Modules: floors (the bare relay rings), probes (the Unity-wire client and the bus subscriber
that time receipt), baselines (codec and ancestor, no stack), sampling (real beside floor),
measurements (per-message paths), streaming (chat events, throughput), health (switch,
footprint, recovery), runner (the order of the run), report (targets, ipc.md, plots, ipc.json).
"""
