"""``python -m iqa_lab.bench`` (``make bench``): speed ratios of one model on one database,
measured in one run so they hold on any machine, each with its goal and verdict
(``conf/bench.yaml``). ``steps`` times training, ``memory`` samples resident memory,
``classical`` times the classical metrics against piq, ``report`` prints and writes the JSON."""
