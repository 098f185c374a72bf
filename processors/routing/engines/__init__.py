"""The fast paths of a RuleSet: generated Python (indexed.py, bitmask.py) written with writer.py,
and the timing trial that picks one (trial.py). Nothing but ruleset.py imports this package;
the reference semantics they must agree with are checks.py and pattern.py."""
