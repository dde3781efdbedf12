"""Bridges to other continual-learning toolkits. Each module imports its toolkit, which is an optional extra."""
