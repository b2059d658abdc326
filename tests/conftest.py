"""Settings shared by every unit test."""

from hypothesis import settings

# No per-example deadline: Hypothesis' default (200 ms) is a timing assertion, and these
# shared, noisy machines can stall any example that long (a GC pass, a busy neighbour).
# Speed claims live in bench/; here an example is judged on its result only.
settings.register_profile("fnlb", deadline=None)
settings.load_profile("fnlb")
