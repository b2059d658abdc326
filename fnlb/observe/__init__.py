"""What fnlb does, made visible: call metrics, the access log, traces and the dashboard.

The request path (either data plane: fnlb.proxy.handler, fnlb.proxy.fast_server) calls one
`CallObserver` (fnlb.observe.calls) at the end of each attempt that did not answer the call
and once at the end of the call, with the attempt's record it hands the Peer; everything
else (Prometheus families, Zipkin batches, the dashboard's series) is built off the request
path, at scrape, flush or poll time.
"""
