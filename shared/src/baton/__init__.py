"""Baton's common library."""
