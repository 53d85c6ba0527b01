"""Training-side tools that run outside fairseq-train (data for drafter training)."""
