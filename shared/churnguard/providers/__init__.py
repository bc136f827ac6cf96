"""One folder per provider. Each provider's `canonical.py` is the one mapping from its objects to
canonical entities (churnguard.canonical), called by the sync path and the webhook path alike."""
