"""Reusable L3 constructs with the platform's secure defaults.

Named ``platform_constructs`` because a top-level ``constructs`` package would shadow the
``constructs`` library that every CDK module imports.
"""
