"""Device sessions: the records (models) and the policy that manages them (manager)."""
