"""Data: the synthetic generator and the one TOFU-format loader every stage reads through."""
