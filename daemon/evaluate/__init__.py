"""Measure how well faces are protected: coverage recall, WIDER AP, image damage, speed."""
