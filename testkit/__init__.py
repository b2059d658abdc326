"""What tests/ and bench/ both run against, so that neither imports the other: a loopback
Kubernetes API server (k8s_apiserver, k8s_pods) and in-process fnlb peers (peers)."""
