"""Installer and developer tools, and the `metrotrace` command line."""
