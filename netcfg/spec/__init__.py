"""Text -> validated Spec: safe YAML, expressions, templates, overrides. No torch."""
