"""Patches of aiokafka internals for speed, each checking the aiokafka it patches (see each module)."""
