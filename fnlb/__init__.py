"""fnlb: a clustered load balancer for Fn Project function servers."""

__version__ = "0.1.0"

# Before any other fnlb module is imported: decide whether the modules mypyc compiled run, or
# their sources (a compiled module older than its source must not shadow it): fnlb/compiled.py.
from fnlb.compiled import install as _install_build

_install_build()
