"""The dashboard's pages, one module each: what it reads, and its routes."""
