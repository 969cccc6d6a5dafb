"""Delegated Admin Monitor: the domain (settings, clients, stores, rules, policy, command line)."""
