"""Databases, records, image decoding and transforms."""
