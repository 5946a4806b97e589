"""posthoc"""
