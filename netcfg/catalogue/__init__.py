"""The closed registry of layer types: one declaration per type. No torch."""
