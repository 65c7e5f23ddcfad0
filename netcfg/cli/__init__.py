"""The command line: thin typer commands over netcfg's Python API; the only place that prints."""
