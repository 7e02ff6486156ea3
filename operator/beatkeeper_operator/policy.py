"""The tenancy policy, as the operator and its webhook see it: the core's one loader."""

from beatkeeper.policy import ALLOW_ALL, Policy, PolicyError, Rule, load_policy, parse_policy

__all__ = ["ALLOW_ALL", "Policy", "PolicyError", "Rule", "load_policy", "parse_policy"]
