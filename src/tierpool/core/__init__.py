"""The engine core: project loading, the graph, compile checks, the runner, build state.

It reaches warehouses only through :mod:`tierpool.adapters`."""
