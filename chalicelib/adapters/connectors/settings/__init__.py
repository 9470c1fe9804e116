"""Each connector's configuration model, by vendor, in modules that import pydantic and nothing
of the delivery machinery (`connectors/base.py`, `connectors/http.py`).

The hub types every destination when it loads its configuration, on every function's cold
start; a webhook function never delivers, so it must not pay for the connectors. Each vendor is
still read in its own module (`connectors/<vendor>.py`), which imports its settings from here;
`registry.CONNECTOR_SETTINGS` names them for the configuration.
"""
