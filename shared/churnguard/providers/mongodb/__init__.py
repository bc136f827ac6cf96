"""MongoDB. See README.md in this folder."""
