"""Thin stacks: each composes constructs from ``platform_constructs``, wires grants, tags and outputs."""
