"""Torch build functions for the built-in catalogue; importing this registers them."""

from netcfg.layers import attention, basic, composite, custom, learned, reshaping  # noqa: F401
