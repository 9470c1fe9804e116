"""Routing: pure, explainable decisions about priority, queue, skills, tags and destinations."""
