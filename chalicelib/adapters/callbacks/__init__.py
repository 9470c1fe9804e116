"""The callback side of two-way destinations: one module per vendor, named by its connector
(`Connector.callbacks`), on the port in `base.py`."""
