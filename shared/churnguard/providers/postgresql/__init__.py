"""PostgreSQL. See README.md in this folder."""
