"""Simulated subtomograms: density maps (PDB/mmCIF/MRC, built-in phantoms), CTF and missing wedge,
random poses and noise (maps, phantoms, ctf, simulate)."""
