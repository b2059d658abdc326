"""A harness that runs fnlb as operators do: separate hosts, real sockets, faults on purpose.

Every fnlb peer, Fn node emulator, toxiproxy and load client runs in its own Linux network
namespace with its own address on a private /24 that exists only inside those namespaces;
the namespaces hang off one bridge that lives in a "switch" namespace of its own, so nothing
of a test run is visible in the root namespace. Faults are nftables rules and tc qdiscs
inside the namespaces, signals to processes, and toxics on TCP paths through toxiproxy
(the real `toxiproxy-server` when it is on PATH, else our own implementation of its API).

Modules, one concern each:
    nsexec      run Python code (a thread) inside a named network namespace
    netns       Network (switch + bridge) and Host (a namespace with one address)
    procs       Process: a child started inside a Host, with its log file and signals
    faults      nftables rulesets and tc commands for partitions, loss, black holes, bandwidth
    load        the bounded load client (a subprocess) and the results it writes
    services    start fnsim, fnlb and toxiproxy in Hosts; wait for them; fnlb's API answers
    topologies  ready-made clusters: Fn nodes behind one fnlb, or behind gossiping peers
    nodechanges node-list changes made through the API and the list they must lead to
    toxics      toxiproxy's toxic descriptions (JSON shapes, defaults, validation)
    toxiproxy   our asyncio implementation of toxiproxy's HTTP API and its toxics
    toxiproxy_client  a client that speaks only that HTTP API (works against the real one)
"""
