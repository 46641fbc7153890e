"""The worker runtime: consume, batch, retry, commit, dead-letter, drain, observe."""
