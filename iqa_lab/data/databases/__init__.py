"""One parser per database: the files its authors publish -> the record schema (``data.records``).

A parser is ``parse_<name>(data_dir, *, mos_range, lower_better, db, **options)``; the database's
config names it (``parser:``) and holds its options.
"""
