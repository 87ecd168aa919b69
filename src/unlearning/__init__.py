"""Unlearning algorithms, one file each, behind the interface of base.py. src/catalogue.py
lists them in the registry (src/registry.py); this package imports none of them."""
