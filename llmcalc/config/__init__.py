"""The config: the preset schema (no torch), presets and config.json input, dtypes, hardware."""
