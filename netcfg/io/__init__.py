"""Files: safetensors headers, tensor files, atomic writes."""
