"""The closed catalogue of layer types: one declaration per type, grouped by family. No torch.

A declaration (netcfg.catalogue.base) is the type's argument model and its rules: output
shape and dtype, parameter count, FLOPs. netcfg.catalogue.registry lists them.
"""
