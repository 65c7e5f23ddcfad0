"""Torch build functions for the built-in catalogue; importing this registers them."""

from netcfg.building.layers import attention, basic, composite, custom, learned, reshaping  # noqa: F401
