"""MySQL and MariaDB. See README.md in this folder."""
