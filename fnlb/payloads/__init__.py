"""fnlb.payloads: fnlb's own gossip payloads, one module per payload, each naming its schema
version. `envelope` frames them all (`[kind, ...]`); the cluster layer (fnlb.cluster.state)
decides what they mean."""
