"""The worker runtime: the loop, offsets, back-pressure, state, topology and rule reloads; the faust runtime."""
