"""netcfg's version: one place, read by the package, checkpoints and the catalogue cache's stamp."""

__version__ = "0.1.0"
