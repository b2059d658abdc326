"""fnlb.peer: one fnlb peer as one sans-I/O object (`fnlb.peer.core.Peer`) and the routing
control loop it ticks (`fnlb.peer.control_loop`)."""
