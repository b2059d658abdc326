"""fnlb: a clustered load balancer for Fn Project function servers."""

__version__ = "0.1.0"
