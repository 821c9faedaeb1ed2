"""Network dissection: the Face Dictionary of concept masks and unit-concept pairing (DESIGN.md section 7)."""
